"""FFHQ alignment (jaxinv.align, jaxinv.models.faceapi): the nets against a float64 numpy reference, the FFHQ quad
on already-aligned photos, known similarity transforms recovered, faces found in unaligned photos and LFW crops,
no-face and unreadable images listed in errors.csv by `jaxinv align`."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import REALDATA, require

from jaxinv import align as A

IMAGES = REALDATA / "images"
WEIGHTS = REALDATA / "weights" / "face_landmarks68_faceapi"
# FFHQ-aligned photos (the FFHQ recipe with dlib landmarks; mganprior's *_01 are its align script's outputs).
FFHQ_ALIGNED = ["e4e/input_img.jpg", "mganprior/21_01.png", "mganprior/c1_01.png", "mganprior/SCA_01.png",
                "hyperstyle/affleck.jpg", "hyperstyle/robbie.jpg", "sam/866.jpg", "psp/toonify_input_tile2.jpg"]
# Eye centres of the FFHQ crop as fractions of the side, from the recipe itself: c = eye_avg + 0.1 eye_to_mouth
# at the centre, |eye_to_eye| = side / 4 when it sets the scale (|eye_to_mouth| ~ 1.1 |eye_to_eye| on FFHQ).
CANONICAL_EYES = np.array([[0.375, 0.47], [0.625, 0.47]])


@pytest.fixture(scope="module")
def nets():
    return A.load_face_nets(require(WEIGHTS))


def _photo(rel: str, side: int | None = None) -> np.ndarray:
    img = A.read_photo(require(IMAGES / rel))
    if side is not None and img.shape[0] != side:
        img = A._resize(img, (side, side))
    return img


def _eyes(lm: np.ndarray) -> np.ndarray:
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])


def _identity_quad(n: int) -> np.ndarray:
    return np.array([[0, 0], [0, n], [n, n], [n, 0]], np.float64) - 0.5


# ----------------------------------------------------------------------------------------------------
# No shared data needed


def test_ffhq_quad_by_hand():
    """Upright face: eyes (40, 50), (60, 50), mouth corners (42, 80), (58, 80): eye_to_eye 20, eye_to_mouth 30
    -> x along +x, |x| = max(2 * 20, 1.8 * 30) = 54, c = (50, 53)."""
    lm = np.zeros((68, 2))
    lm[36:42], lm[42:48], lm[48], lm[54] = (40, 50), (60, 50), (42, 80), (58, 80)
    want = np.array([[-4, -1], [-4, 107], [104, 107], [104, -1]], np.float64)
    np.testing.assert_allclose(A.ffhq_quad(lm), want, atol=1e-9)


def test_warp_inverts_a_known_similarity_and_pastes_back():
    """warp_quad of a photo made by a known similarity returns the original (interior PSNR), and paste_back puts
    it back where it was."""
    rng = np.random.RandomState(0)
    base = A._resize(rng.uniform(0, 255, (16, 16, 3)).astype(np.float32), (96, 96))  # smooth content
    n, big = 96, 200
    theta, s, t = math.radians(17.0), 1.3, np.array([37.0, 21.0])
    rot = s * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    quad = (_identity_quad(n) + 0.5) @ rot.T + t - 0.5  # the original's corners (edge coords) in the big photo
    # Render the big photo by sampling the original at the inverse map (pixel centres).
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float64)
    src = (np.stack([xx, yy], -1) + 0.5 - t) @ np.linalg.inv(rot).T - 0.5
    photo = A.sample_bilinear(base, src[..., 0], src[..., 1], "zeros")
    back = A.warp_quad(photo, quad, n, mode="zeros").astype(np.float64)
    inner = (slice(4, -4), slice(4, -4))
    mse = np.mean((back[inner] - base[inner]) ** 2)
    assert 10 * np.log10(255.0**2 / mse) > 30.0
    pasted = A.paste_back(np.zeros_like(photo), back.astype(np.uint8), quad, feather=0.05)
    m = (src[..., 0] > 10) & (src[..., 0] < n - 10) & (src[..., 1] > 10) & (src[..., 1] < n - 10)
    assert np.abs(pasted[m].astype(np.float64) - photo[m]).mean() < 3.0
    assert pasted[~((src[..., 0] > -1) & (src[..., 0] < n) & (src[..., 1] > -1) & (src[..., 1] < n))].max() == 0


def test_paste_back_with_landmarks_pastes_the_face_only():
    """With landmarks, the mask is the face hull (jaw line + raised brows), feathered inside its border; without,
    the whole crop."""
    t = np.linspace(np.pi, 0, 17)
    lm = np.zeros((68, 2))
    lm[:17] = np.stack([100 + 40 * np.cos(t), 100 + 50 * np.sin(t)], 1)  # jaw: a U, chin at (100, 150)
    lm[17:27] = np.stack([np.linspace(65, 135, 10), np.full(10, 90.0)], 1)  # brows at y = 90
    hull = A.face_hull(lm)
    pts = np.concatenate([lm[:27], lm[17:27] + A.FOREHEAD * (lm[17:27].mean(0) - lm[8])])
    assert A._inside_distance(hull, pts[:, 0], pts[:, 1]).min() > -1e-9  # every point in the hull
    assert hull[:, 1].min() == pytest.approx(90 - A.FOREHEAD * 60)  # the forehead: brows raised by FOREHEAD x 60 px
    photo = np.zeros((200, 200, 3), np.uint8)
    crop = np.full((64, 64, 3), 255, np.uint8)
    quad = np.array([[20.0, 20.0], [20.0, 180.0], [180.0, 180.0], [180.0, 20.0]])  # TL, BL, BR, TR
    whole = A.paste_back(photo, crop, quad, feather=0.05)
    face = A.paste_back(photo, crop, quad, feather=0.05, landmarks=lm)
    assert whole[40, 40].min() == 255 and face[40, 40].max() == 0  # a quad corner: outside the face
    assert face[110, 100].min() == 255 and face[82, 100].min() == 255  # the cheeks, the forehead
    assert face[165, 100].max() == 0 and face[100, 55].max() == 0  # below the chin, beside the jaw
    assert 0 < face[100, 62].max() < 255  # the feathered border (8 px wide, inside the hull)
    assert (face <= whole).all()


# ----------------------------------------------------------------------------------------------------
# The nets against the numpy reference


def test_nets_match_numpy_reference(nets):
    import _faceapi_ref as ref

    from jaxinv.models import faceapi
    from weights_convert import tfjs

    def flat(model):
        f = WEIGHTS / f"{model}-weights_manifest.json"
        return tfjs.read_weights_manifest(tfjs.read_json(f), WEIGHTS, str(f))

    img = _photo("faces_unaligned/hyperstyle_face_image.jpg")
    x, _ = A.detector_input(img, 224)
    got = np.asarray(A._detector(nets.det_cfg, nets.det_params, x[None]))
    want = ref.detector(flat(faceapi.DETECTOR_MODEL), x[None])
    err, tol = np.abs(got - want).max(), 1e-4 * max(1.0, np.abs(want).max())
    print(f"detector head max|jax - numpy| = {err:.3g} (max|ref| {np.abs(want).max():.3g}, tol {tol:.3g})")
    assert got.shape == want.shape == (1, 7, 7, 25) and err <= tol

    face = A.find_face(nets, img)
    xl, _ = A.landmark_input(img, face.box)
    got = np.asarray(A._landmarks(nets.lm_cfg, nets.lm_params, xl[None]))
    want = ref.landmarks(flat(faceapi.LANDMARK_MODEL), xl[None])
    err, tol = np.abs(got - want).max(), 1e-4 * max(1.0, np.abs(want).max())
    print(f"landmarks max|jax - numpy| = {err:.3g} (max|ref| {np.abs(want).max():.3g}, tol {tol:.3g})")
    assert got.shape == want.shape == (1, 136) and err <= tol


# ----------------------------------------------------------------------------------------------------
# Ground truth on real photos


def test_ffhq_aligned_photos_realign_to_themselves(nets):
    errs, eye_errs = [], []
    for rel in FFHQ_ALIGNED:
        img = _photo(f"faces_aligned/{rel}", 512)
        face = A.find_face(nets, img, name=rel)
        quad = A.ffhq_quad(face.landmarks)
        err = np.abs(quad - _identity_quad(512)).max() / 512
        errs.append(err)
        eye_errs.append(np.abs(_eyes(face.landmarks) / 512 - CANONICAL_EYES).max())
        print(f"{rel}: score {face.score:.2f}, max quad corner error {err * 1024:.1f} px at 1024 "
              f"({100 * err:.1f}% of the side), eyes {np.round(_eyes(face.landmarks) / 512, 3).tolist()}")
    print(f"quad corner error at 1024: median {np.median(errs) * 1024:.1f} px, max {max(errs) * 1024:.1f} px; "
          f"eyes off the FFHQ positions by <= {max(eye_errs) * 1024:.1f} px")
    assert np.median(errs) < 0.04 and max(errs) < 0.06
    assert max(eye_errs) < 0.03


@pytest.mark.parametrize("rel,theta_deg,scale,shift", [
    ("mganprior/21_01.png", 25.0, 0.7, (90.0, 40.0)),
    ("sam/866.jpg", -15.0, 1.2, (-30.0, 60.0)),
])
def test_known_similarity_is_recovered(nets, rel, theta_deg, scale, shift):
    """A similarity T of an aligned face (rotation, scale, shift about the image centre, onto a larger canvas):
    the quad found on T(photo) must be T(quad found on the photo)."""
    n, big = 256, 480
    img = _photo(f"faces_aligned/{rel}", n)
    th = math.radians(theta_deg)
    rot = scale * np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
    t = np.array([big / 2, big / 2]) + np.array(shift) - rot @ np.array([n / 2, n / 2])

    def fwd(p):  # photo index coords -> canvas index coords
        return (p + 0.5) @ rot.T + t - 0.5

    yy, xx = np.mgrid[0:big, 0:big].astype(np.float64)
    src = (np.stack([xx, yy], -1) + 0.5 - t) @ np.linalg.inv(rot).T - 0.5
    canvas = A.sample_bilinear(img, src[..., 0], src[..., 1], "zeros")
    q0 = A.ffhq_quad(A.find_face(nets, img).landmarks)
    q1 = A.ffhq_quad(A.find_face(nets, canvas).landmarks)
    want = fwd(q0)
    side = np.hypot(*(want[3] - want[0]))
    err = np.abs(q1 - want).max()
    d0, d1 = q0[3] - q0[0], q1[3] - q1[0]
    ang = math.degrees(math.atan2(d1[1], d1[0]) - math.atan2(d0[1], d0[0]))
    sc = np.hypot(*d1) / np.hypot(*d0)
    print(f"{rel}: T = rot {theta_deg} deg, scale {scale}, shift {shift}: recovered rot {ang:.2f} deg, scale "
          f"{sc:.3f}; quad corners off T(quad) by <= {err:.1f} px ({100 * err / side:.1f}% of the quad side)")
    assert abs(ang - theta_deg) < 3.0 and abs(sc / scale - 1) < 0.05 and err / side < 0.05


def test_unaligned_photos_and_lfw_are_aligned(nets):
    """Unaligned photos: landmarks found afresh on the aligned crop put the eyes at the FFHQ positions. LFW's tight
    100 x 100 grey crops (found through `align.RETRIES`): a face is found and cropped (their FFHQ quad is about
    twice the photo, the rest is the FFHQ padding, so no re-detection there)."""
    for rel in ["faces_unaligned/hyperstyle_face_image.jpg", "misc_photos/skimage_astronaut.png",
                "misc_photos/matplotlib_grace_hopper.jpg"]:
        al = A.align_face(nets, _photo(rel), 256, name=rel)
        assert al.image.shape == (256, 256, 3)
        again = A.find_face(nets, al.image)
        eyes = _eyes(again.landmarks + 0.5) / 256
        print(f"{rel}: score {al.face.score:.2f}, eyes found in the aligned crop {np.round(eyes, 3).tolist()}")
        assert np.abs(eyes - CANONICAL_EYES).max() < 0.04
    for p in sorted(require(IMAGES / "faces_lfw_aligned_100pairs").glob("*/*.jpg"))[::40]:
        al = A.align_face(nets, A.read_photo(p), 64, name=str(p))
        print(f"{p.name}: score {al.face.score:.2f}, quad side {np.hypot(*(al.quad[3] - al.quad[0])):.0f} px")
        assert al.image.shape == (64, 64, 3)


def test_cli_align_writes_crops_json_and_errors(tmp_path):
    from jaxinv.cli import main

    face = require(IMAGES / "faces_unaligned" / "hyperstyle_face_image.jpg")
    scene = next(iter(sorted(require(IMAGES / "scenes_lsun_like").glob("*/*.jpg"))))
    car = require(IMAGES / "cars" / "e4e_car_img.jpg")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    out = tmp_path / "aligned"
    rc = main(["align", "--images", str(face), str(scene), str(car), str(bad), "--out", str(out), "--size", "64",
               "--weights", str(require(WEIGHTS))])
    assert rc == 3
    from PIL import Image

    assert Image.open(out / "hyperstyle_face_image.png").size == (64, 64)
    rec = json.loads((out / "hyperstyle_face_image.json").read_text())
    assert np.shape(rec["quad"]) == (4, 2) and np.shape(rec["landmarks"]) == (68, 2) and rec["score"] > 0.5
    assert rec["source"] == str(face)
    with open(out / "errors.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["image"] for r in rows} == {str(scene), str(car), str(bad)}
    assert all("Traceback" not in r["reason"] for r in rows)
