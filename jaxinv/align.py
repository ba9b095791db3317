"""FFHQ face alignment for real photos: detect a face, find its 68 landmarks, crop the FFHQ quad.

    nets = load_face_nets()                      # face-api.js tiny face detector + 68-point landmark net
    face = find_face(nets, img)                  # img [H, W, 3] 0..255 -> Face(box, score, landmarks [68, 2])
    quad = ffhq_quad(face.landmarks)             # [4, 2] corners TL, BL, BR, TR (pixel-index coordinates)
    out = warp_quad(img, quad, 1024)             # [1024, 1024, 3] uint8
    back = paste_back(img, out, quad, landmarks=face.landmarks)  # its face warped back into the photo

Steps (face-api.js src/tinyYolov2/TinyYolov2Base.ts, src/faceLandmarkNet/FaceLandmark68NetBase.ts):
1. Detector input: the photo scaled by S / max(H, W) (S = 416), top-left in a zero S x S square; boxes decoded
   per cell (row, col) and anchor a: centre ((col, row) + sigmoid(tx, ty)) / cells, size exp(tw, th) *
   anchor_a / cells, score sigmoid(t_score); score > 0.5, greedy NMS at IoU 0.4. The best-scoring face is used.
   Photos without a face are retried inside a zero border at smaller inputs (`RETRIES`: tight crops, e.g. LFW).
2. Landmark input: the detection box (clipped to the image), zero-padded to a centred square, resized to 112;
   the 136 outputs are (x, y) in units of that square, mapped back to photo pixels.
3. The FFHQ recipe (NVlabs/ffhq-dataset `recreate_aligned_images`): eye centres (points 36-41, 42-47), mouth
   corners (48, 54) -> eye_to_eye, eye_to_mouth -> x = eye_to_eye - rot90(eye_to_mouth), normalised, scaled to
   max(2 |eye_to_eye|, 1.8 |eye_to_mouth|); y = rot90(x); c = eye_avg + 0.1 eye_to_mouth;
   quad = (c - x - y, c - x + y, c + x + y, c + x - y).
4. Warp: output pixel (i, j) (centres at i + 0.5 of S) samples the photo at quad[0] + (i + 0.5) / S * (quad[3] -
   quad[0]) + (j + 0.5) / S * (quad[1] - quad[0]) (pillow's QUAD transform of the FFHQ tool, which takes
   quad + 0.5); bilinear, after an integer antialiased shrink as the FFHQ tool does and with supersampling
   (sampled at k x S, then Lanczos to S) when the quad is larger than S; outside the photo: the FFHQ tool's
   padding (reflection, blurred and faded to the median colour away from the photo).

Coordinates: pixel-index coordinates (pixel (0, 0) is centred on (0, 0)), as dlib's landmarks that the FFHQ tool
consumes. face-api.js outputs edge coordinates (the photo spans [0, W]); 0.5 is subtracted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxinv import console
from jaxinv.degrade import LUMA
from jaxinv.errors import ConfigError, ImageError
from jaxinv.images import list_images, read_image
from jaxinv.models import faceapi

DETECTOR_SIZE = 416  # TinyYolov2Options default inputSize
SCORE_THRESHOLD = 0.5  # TinyYolov2Options default scoreThreshold
IOU_THRESHOLD = 0.4  # tinyFaceDetector/const.ts
WEIGHTS_ENV = "JAXINV_FACE_WEIGHTS"


# ----------------------------------------------------------------------------------------------------
# Networks


@dataclass(frozen=True)
class FaceNets:
    det_cfg: faceapi.DetectorConfig
    det_params: Any = field(compare=False)
    lm_cfg: faceapi.LandmarkConfig = faceapi.LandmarkConfig()
    lm_params: Any = field(default=None, compare=False)
    source: str = ""


def default_weights_dir() -> Path:
    """$JAXINV_FACE_WEIGHTS, else the package's embedded copy (jaxinv/assets/faceapi_align), else
    $JAXINV_SHARED/realdata/weights/face_landmarks68_faceapi (or ../shared next to the repository)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    embedded = Path(__file__).resolve().parent / "assets" / "faceapi_align"
    if (embedded / f"{faceapi.DETECTOR_MODEL}-weights_manifest.json").is_file():
        return embedded
    shared = Path(os.environ.get("JAXINV_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    return shared / "realdata" / "weights" / "face_landmarks68_faceapi"


def load_face_nets(path: str | os.PathLike | None = None) -> FaceNets:
    """Both networks from a folder holding the two TF.js manifests + bins (default: `default_weights_dir`)."""
    d = Path(path) if path is not None else default_weights_dir()
    if not d.is_dir():
        raise ConfigError(f"face weights: {d} is not a folder (give the face-api.js model folder, or set "
                          f"{WEIGHTS_ENV})")
    dc, dp = faceapi.load_detector(d)
    lc, lp = faceapi.load_landmarks(d)
    return FaceNets(dc, jax.tree.map(jnp.asarray, dp), lc, jax.tree.map(jnp.asarray, lp), str(d))


@partial(jax.jit, static_argnums=0)
def _detector(cfg, params, x):
    return faceapi.detector_forward(cfg, params, x)


@partial(jax.jit, static_argnums=0)
def _landmarks(cfg, params, x):
    return faceapi.landmarks_forward(cfg, params, x)


# ----------------------------------------------------------------------------------------------------
# Detection


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in photo pixels (edge coordinates)
    score: float  # detector confidence (sigmoid)
    landmarks: np.ndarray | None = None  # [68, 2] pixel-index coordinates (x, y)
    faces_found: int = 1  # detections kept after NMS


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float [H, W, 3] 0..255 -> [size[1], size[0], 3], pillow bilinear per channel (antialiased when shrinking)."""
    if img.shape[1::-1] == tuple(size):
        return img.astype(np.float32)
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c], np.float32), mode="F")
                                .resize(size, Image.BILINEAR)) for c in range(3)], axis=2)


def detector_input(img: np.ndarray, size: int = DETECTOR_SIZE) -> tuple[np.ndarray, float]:
    """(input [size, size, 3] float32 0..255, scale): the photo scaled by `scale` into the top-left corner."""
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    x = np.zeros((size, size, 3), np.float32)
    x[:nh, :nw] = _resize(img, (nw, nh))
    return x, scale


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def decode_boxes(head: np.ndarray, size: int, score_threshold: float = SCORE_THRESHOLD
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Raw head [cells, cells, anchors * 5] -> (boxes [N, 4] x0, y0, x1, y1 in input pixels, scores [N])."""
    cells = head.shape[0]
    anchors = np.asarray(faceapi.BOX_ANCHORS, np.float64)
    t = head.reshape(cells, cells, len(anchors), 5).astype(np.float64)
    score = _sigmoid(t[..., 4])
    col = np.arange(cells)[None, :, None]
    row = np.arange(cells)[:, None, None]
    cx = (col + _sigmoid(t[..., 0])) / cells * size
    cy = (row + _sigmoid(t[..., 1])) / cells * size
    bw = np.exp(t[..., 2]) * anchors[:, 0] / cells * size
    bh = np.exp(t[..., 3]) * anchors[:, 1] / cells * size
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1).reshape(-1, 4)
    score = score.reshape(-1)
    keep = score > score_threshold
    return boxes[keep], score[keep]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    iw = np.maximum(0.0, np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]))
    ih = np.maximum(0.0, np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]))
    inter = iw * ih
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> list[int]:
    """Greedy non-maximum suppression (ops/nonMaxSuppression.ts): indices, best first."""
    order = list(np.argsort(-scores, kind="stable"))
    pick = []
    while order:
        i = order.pop(0)
        pick.append(int(i))
        if order:
            rest = np.asarray(order)
            order = [j for j, v in zip(order, _iou(boxes[i], boxes[rest]), strict=True) if v <= iou_threshold]
    return pick


def detect_faces(nets: FaceNets, img: np.ndarray, size: int = DETECTOR_SIZE,
                 score_threshold: float = SCORE_THRESHOLD) -> list[Face]:
    """Faces in a photo [H, W, 3] 0..255, best first (boxes in photo pixels, edge coordinates)."""
    x, scale = detector_input(img, size)
    head = np.asarray(_detector(nets.det_cfg, nets.det_params, x[None]))[0]
    boxes, scores = decode_boxes(head, size, score_threshold)
    keep = nms(boxes, scores)
    return [Face(tuple(float(v) for v in boxes[i] / scale), float(scores[i]), None, len(keep)) for i in keep]


def landmark_input(img: np.ndarray, box: tuple[float, float, float, float]
                   ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(input [112, 112, 3], (x0, y0, side)): the box clipped to the photo (extractFaceTensors), zero-padded to a
    centred square (padToSquare), resized to 112; a point u in [0, 1]^2 of the input is photo pixel
    (x0, y0) + u * side (edge coordinates)."""
    h, w = img.shape[:2]
    x0, y0 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x1, y1 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise ImageError(f"face box {box} lies outside the {w}x{h} photo")
    crop = img[y0:y1, x0:x1].astype(np.float32)
    ch, cw = crop.shape[:2]
    side = max(ch, cw)
    sq = np.zeros((side, side, 3), np.float32)
    py, px = (side - ch) // 2, (side - cw) // 2
    sq[py:py + ch, px:px + cw] = crop
    return _resize(sq, (faceapi.LANDMARK_INPUT,) * 2), (x0 - px, y0 - py, side)


def face_landmarks(nets: FaceNets, img: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """68 landmarks [68, 2] (x, y) in pixel-index coordinates of the photo, for the face in `box`."""
    x, (ox, oy, side) = landmark_input(img, box)
    out = np.asarray(_landmarks(nets.lm_cfg, nets.lm_params, x[None]))[0].astype(np.float64)
    return out.reshape(-1, 2) * side + np.array([ox, oy]) - 0.5


def as_float_rgb(img: Any) -> np.ndarray:
    """A pillow image or array [H, W] / [H, W, C] (uint8, or float, both 0..255) -> float32 [H, W, 3] 0..255."""
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"), np.float32)
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ConfigError(f"image: expected [H, W, 3], got shape {a.shape}")
    a = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]
    return np.clip(a.astype(np.float32), 0.0, 255.0)


# Retries for photos with no face at the default input (pad fraction of the side per border, detector input size):
# tight, small crops (LFW's 100 x 100 faces: 0% found at 416 px) are found inside a zero border at a small input
# (97% at (0.25, 160) on 40 LFW images; the other settings pick up most of the rest).
RETRIES = ((0.25, 160), (0.5, 224), (0.5, 160))


def find_face(nets: FaceNets, img: Any, size: int = DETECTOR_SIZE,
              score_threshold: float = SCORE_THRESHOLD, name: str = "image") -> Face:
    """The best-scoring face of a photo with its landmarks; ImageError when none is found. A photo without a face
    at `size` is retried inside a zero border at smaller inputs (`RETRIES`; tight crops that the face fills)."""
    img = as_float_rgb(img)
    h, w = img.shape[:2]
    for pad, sz in ((0.0, size), *RETRIES):
        ph, pw = int(h * pad), int(w * pad)
        padded = np.pad(img, ((ph, ph), (pw, pw), (0, 0))) if pad else img
        faces = detect_faces(nets, padded, sz, score_threshold)
        if faces:
            f = faces[0]
            lm = face_landmarks(nets, padded, f.box) - np.array([pw, ph])
            box = (f.box[0] - pw, f.box[1] - ph, f.box[2] - pw, f.box[3] - ph)
            return Face(box, f.score, lm, f.faces_found)
    raise ImageError(f"{name}: no face found (detector score <= {score_threshold})")


# ----------------------------------------------------------------------------------------------------
# The FFHQ quad and the warp


def _landmarks68(landmarks: Any) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2):
        raise ConfigError(f"landmarks: expected [68, 2], got {lm.shape}")
    return lm


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ crop quad [4, 2] (TL, BL, BR, TR; pixel-index coordinates) from 68 landmarks [68, 2]."""
    lm = _landmarks68(landmarks)
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_to_affine(quad: np.ndarray, size: int) -> np.ndarray:
    """A [2, 3] with photo (x, y) = A @ (i + 0.5, j + 0.5, 1) for output pixel (i, j) of a size x size crop."""
    q = np.asarray(quad, np.float64)
    return np.stack([(q[3] - q[0]) / size, (q[1] - q[0]) / size, q[0]], axis=1)


def _reflect(v: np.ndarray, n: int) -> np.ndarray:
    """Index coordinates folded into [0, n - 1] by mirror reflection about the border pixels' centres."""
    if n == 1:
        return np.zeros_like(v)
    period = 2.0 * (n - 1)
    v = np.mod(v, period)
    return np.where(v > n - 1, period - v, v)


def sample_bilinear(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, mode: str = "reflect") -> np.ndarray:
    """Bilinear samples of img [H, W, C] at index coordinates (xs, ys) (any equal shapes) -> [..., C] float32;
    outside: mirror reflection ('reflect') or 0 ('zeros')."""
    h, w = img.shape[:2]
    if mode == "reflect":
        xs, ys = _reflect(xs, w), _reflect(ys, h)
    x0, y0 = np.floor(xs), np.floor(ys)
    fx, fy = (xs - x0)[..., None], (ys - y0)[..., None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    out = 0.0
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            v = img[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)].astype(np.float32)
            out = out + v * (wx * wy * inside[..., None])
    return np.asarray(out, np.float32)


def _ffhq_crop_pad(img: np.ndarray, q: np.ndarray, qsize: float) -> tuple[np.ndarray, np.ndarray]:
    """The FFHQ tool's crop and padding: crop to the quad's bounds plus a border; where the quad leaves the photo,
    pad by reflection (at least 0.3 quad sides), blurred (sigma 0.02 quad sides) and faded to the median colour
    towards the outside. Returns (image, quad in its coordinates)."""
    h, w = img.shape[:2]
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo, hi = np.floor(q.min(0)).astype(int), np.ceil(q.max(0)).astype(int)
    x0, y0 = max(lo[0] - border, 0), max(lo[1] - border, 0)
    x1, y1 = min(hi[0] + border, w), min(hi[1] + border, h)
    if x1 - x0 < w or y1 - y0 < h:
        img, q, h, w = img[y0:y1, x0:x1], q - [x0, y0], y1 - y0, x1 - x0
        lo, hi = lo - [x0, y0], hi - [x0, y0]
    pad = np.array([max(-lo[0] + border, 0), max(-lo[1] + border, 0), max(hi[0] - w + border, 0),
                    max(hi[1] - h + border, 0)])
    if pad.max() <= border - 4:
        return img, q
    import scipy.ndimage

    pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
    img = np.pad(img.astype(np.float32), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w = img.shape[:2]
    y, x = np.ogrid[:h, :w]
    mask = np.maximum(1.0 - np.minimum(x / pad[0], (w - 1 - x) / pad[2]),
                      1.0 - np.minimum(y / pad[1], (h - 1 - y) / pad[3]))[..., None].astype(np.float32)
    blur = qsize * 0.02
    img = img + (scipy.ndimage.gaussian_filter(img, [blur, blur, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img = img + (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img, q + pad[:2]


def warp_quad(img: Any, quad: np.ndarray, size: int = 1024, mode: str = "ffhq") -> np.ndarray:
    """The size x size crop of the photo inside `quad` (see the module docstring) -> uint8 [size, size, 3].
    Outside the photo: `mode` 'ffhq' (the FFHQ tool's blurred, faded reflection), 'reflect' or 'zeros'."""
    if mode not in ("ffhq", "reflect", "zeros"):
        raise ConfigError(f"mode={mode!r}: expected 'ffhq', 'reflect' or 'zeros'")
    img = as_float_rgb(img)
    q = np.asarray(quad, np.float64)
    qsize = float(np.hypot(*(q[3] - q[0])))
    shrink = int(np.floor(qsize / size * 0.5))  # the FFHQ tool's first, antialiased, integer shrink
    if shrink > 1:
        h, w = img.shape[:2]
        nw, nh = int(round(w / shrink)), int(round(h / shrink))
        img = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c]), mode="F")
                                   .resize((nw, nh), Image.LANCZOS)) for c in range(3)], axis=2)
        q = (q + 0.5) * np.array([nw / w, nh / h]) - 0.5
        qsize /= shrink
    if mode == "ffhq":
        img, q = _ffhq_crop_pad(img, q, qsize)
    k = max(1, min(4, math.ceil(qsize / size - 1e-6)))  # supersampling when the quad is larger than the output
    t = size * k
    a = quad_to_affine(q, t)
    jj, ii = np.mgrid[0:t, 0:t].astype(np.float64) + 0.5
    xs = a[0, 0] * ii + a[0, 1] * jj + a[0, 2]
    ys = a[1, 0] * ii + a[1, 1] * jj + a[1, 2]
    out = np.clip(np.rint(sample_bilinear(img, xs, ys, "zeros" if mode == "zeros" else "reflect")), 0, 255)
    out = out.astype(np.uint8)
    if k > 1:
        out = np.asarray(Image.fromarray(out).resize((size, size), Image.LANCZOS))
    return out


# The face region of `paste_back`: the jaw line (landmarks 0-16) and the eyebrows (17-26) raised by this fraction
# of the brow-to-chin distance, for the forehead (brow to hairline is about half of brow to chin; less, so that
# bangs stay the photo's).
FOREHEAD = 0.3


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def face_hull(landmarks: np.ndarray) -> np.ndarray:
    """The face region of 68 landmarks [68, 2] as a convex polygon [K, 2] (vertices in the order of a positive
    shoelace area): the hull of the jaw line and the raised eyebrows (`FOREHEAD`)."""
    lm = _landmarks68(landmarks)
    brows = lm[17:27]
    up = brows.mean(0) - lm[8]  # chin -> brows
    pts = np.concatenate([lm[:17], brows + FOREHEAD * up])
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def chain(points: np.ndarray) -> list[np.ndarray]:  # Andrew's monotone chain, one half
        out: list[np.ndarray] = []
        for pt in points:
            while len(out) >= 2 and _cross(out[-1] - out[-2], pt - out[-2]) <= 0:
                out.pop()
            out.append(pt)
        return out[:-1]

    return np.array(chain(pts) + chain(pts[::-1]))


def _inside_distance(poly: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance of points (x, y) to the border of the convex polygon `poly` (`face_hull`'s orientation):
    positive inside (the smallest distance to an edge's line), negative outside."""
    d = np.full(x.shape, np.inf)
    for p, q in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        e = q - p
        d = np.minimum(d, (e[0] * (y - p[1]) - e[1] * (x - p[0])) / max(np.hypot(*e), 1e-12))
    return d


def paste_back(photo: Any, aligned: Any, quad: np.ndarray, feather: float = 0.05,
               landmarks: np.ndarray | None = None) -> np.ndarray:
    """The aligned crop (any size, e.g. a reconstruction) warped back into the photo at `quad`, blended with a
    mask that is 1 inside and falls to 0 over the outer `feather` fraction of the crop -> uint8 [H, W, 3]. With
    the face's `landmarks` [68, 2] only the face is pasted (`face_hull`; its border feathered over the same
    width), so the photo keeps its own hair and background."""
    photo = as_float_rgb(photo)
    crop = as_float_rgb(aligned)
    s = crop.shape[0]
    if crop.shape[1] != s:
        raise ConfigError(f"aligned: expected a square image, got {crop.shape[:2]}")
    a = quad_to_affine(quad, s)
    inv = np.linalg.inv(np.vstack([a, [0, 0, 1]]))[:2]  # photo (x, y, 1) -> crop edge coordinates (u, v)
    h, w = photo.shape[:2]
    q = np.asarray(quad)
    x0, y0 = [max(0, int(math.floor(v))) for v in q.min(0)]
    x1, y1 = min(w, int(math.ceil(q[:, 0].max())) + 1), min(h, int(math.ceil(q[:, 1].max())) + 1)
    out = photo.copy()
    if x1 <= x0 or y1 <= y0:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    v = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    ramp = max(feather * s, 1e-6)
    dist = np.minimum(np.minimum(u, s - u), np.minimum(v, s - v))  # to the crop's border, in crop pixels
    m = np.clip(dist / ramp, 0.0, 1.0)[..., None]
    if landmarks is not None:  # feather width in photo pixels: `feather` of the crop's side
        side = np.hypot(*(q[3] - q[0]))
        m = m * np.clip(_inside_distance(face_hull(landmarks), xx, yy) / max(feather * side, 1e-6), 0.0, 1.0)[
            ..., None]
    m = m * m * (3.0 - 2.0 * m)  # smoothstep
    vals = sample_bilinear(crop, u - 0.5, v - 0.5, "reflect")
    out[y0:y1, x0:x1] = m * vals + (1.0 - m) * out[y0:y1, x0:x1]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Aligned:
    image: np.ndarray  # uint8 [size, size, 3]
    quad: np.ndarray  # [4, 2] TL, BL, BR, TR in photo pixel-index coordinates
    face: Face


def align_face(nets: FaceNets, img: Any, size: int = 1024, name: str = "image", **detect: Any) -> Aligned:
    """Detect, landmark and FFHQ-crop the best face of a photo (ImageError when there is none)."""
    img = as_float_rgb(img)
    face = find_face(nets, img, name=name, **detect)
    quad = ffhq_quad(face.landmarks)
    return Aligned(warp_quad(img, quad, size), quad, face)


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """A photo file -> float32 [H, W, 3] 0..255 (the CLI's decoder, `jaxinv.images.read_image`)."""
    im, a = read_image(path, 3)
    return as_float_rgb(im) if im is not None else np.clip(a, 0.0, 1.0).astype(np.float32) * 255.0


def record(path: str | os.PathLike, al: Aligned, size: int) -> dict:
    """The JSON record written beside an aligned image."""
    f = al.face
    return {"source": str(Path(path).resolve()), "size": size, "quad": np.round(al.quad, 4).tolist(),
            "quad_order": "TL, BL, BR, TR (x, y), pixel-index coordinates of the source",
            "box": [round(v, 3) for v in f.box], "score": round(f.score, 6), "faces_found": f.faces_found,
            "landmarks": np.round(f.landmarks, 3).tolist(),
            "recipe": "ffhq-dataset recreate_aligned_images; face-api.js tiny face detector + 68 landmarks"}


def record_landmarks(rec: dict) -> np.ndarray | None:
    """The face's landmarks [68, 2] of a `record` (None in records without them: the whole crop is pasted)."""
    lm = rec.get("landmarks")
    return None if lm is None else np.asarray(lm, np.float64)


# ----------------------------------------------------------------------------------------------------
# `jaxinv align`


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--images", nargs="+", required=True, metavar="PATH",
                   help="image files and/or folders (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: DIR/<stem>.png (size x size), DIR/<stem>.json (quad, landmarks, score, "
                        "source), DIR/errors.csv (image, reason) for images without a face or unreadable")
    p.add_argument("--size", type=int, default=1024, help="output side in pixels (default 1024)")
    p.add_argument("--weights", default=None, metavar="DIR",
                   help=f"face-api.js model folder (tiny_face_detector_model + face_landmark_68_model manifests "
                        f"and bins; default: ${WEIGHTS_ENV}, else the embedded copy)")
    p.add_argument("--min-score", type=float, default=SCORE_THRESHOLD,
                   help=f"detector score threshold (default {SCORE_THRESHOLD})")
    return p


def run(args: argparse.Namespace) -> int:
    if args.size < 8:
        raise ConfigError(f"--size {args.size}: must be >= 8")
    if not 0.0 < args.min_score < 1.0:
        raise ConfigError(f"--min-score {args.min_score}: must be in (0, 1)")
    paths = list_images(args.images)
    if not paths:
        raise ConfigError(f"--images {' '.join(args.images)}: no image files found")
    stems = [p.stem for p in paths]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    nets = load_face_nets(args.weights)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    errors, done = [], 0
    used: set[str] = set()
    for p in paths:
        stem = p.stem
        if stem in dup:  # same stem in two folders: keep both, named after the parent folder too
            stem = f"{p.parent.name}_{p.stem}"
            while stem in used:
                stem += "_"
        used.add(stem)
        try:
            al = align_face(nets, read_photo(p), args.size, name=str(p), score_threshold=args.min_score)
        except ImageError as e:
            errors.append((str(p), str(e).removeprefix(f"{p}: ")))
            console.log(f"{p}: skipped ({str(e).removeprefix(str(p) + ': ')})")
            continue
        tmp = out / f".{stem}.png.tmp"
        Image.fromarray(al.image).save(tmp, format="PNG")
        os.replace(tmp, out / f"{stem}.png")
        tmpj = out / f".{stem}.json.tmp"
        tmpj.write_text(json.dumps(record(p, al, args.size), indent=1))
        os.replace(tmpj, out / f"{stem}.json")
        done += 1
    with open(out / "errors.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["image", "reason"])
        wr.writerows(errors)
    console.log(f"{done} aligned, {len(errors)} failed -> {out} ({time.perf_counter() - t0:.1f} s)")
    if errors:
        console.log(f"see {out / 'errors.csv'}")
        return 3
    return 0




# ----------------------------------------------------------------------------------------------------
# `jaxinv invert --align [--paste-back]`


def crop_aligned(al: Aligned, size: int, box: tuple[int, int, int, int], resolution: int) -> Aligned:
    """A model's crop of an FFHQ-aligned face (e.g. the dcgan-faces preset: box (x0, y0, x1, y1) of the aligned
    `size` x `size` image), resized to `resolution`, with the quad of that crop in the photo (for paste-back)."""
    a = quad_to_affine(al.quad, size)
    x0, y0, x1, y1 = box
    quad = np.stack([a @ np.array([u, v, 1.0]) for u, v in ((x0, y0), (x0, y1), (x1, y1), (x1, y0))])
    img = Image.fromarray(al.image).crop(box).resize((resolution, resolution), Image.LANCZOS)
    return Aligned(np.asarray(img), quad, al.face)


def job_loader(nets: FaceNets, resolution: int, channels: int, out_dir: str | os.PathLike, names: dict[str, str],
               crop: tuple[int, int, int, int] | None = None, crop_from: int | None = None):
    """A batch job's image loader (ref -> float32 [R, R, C] in [-1, 1]): each photo FFHQ-aligned to the model's
    resolution, or, for a model trained on a crop of aligned faces (`crop` box of the `crop_from`-pixel aligned
    image, e.g. the embedded DCGAN's dcgan-faces), aligned at `crop_from`, cropped and resized; its record (the
    quad of the final image, landmarks, score, source) goes to OUT/<name>/align.json. No face: ImageError (the
    job lists it in errors.csv)."""
    out_dir = Path(out_dir)

    def load(ref) -> np.ndarray:
        if crop is None:
            al = align_face(nets, read_photo(ref.path), resolution, name=str(ref.path))
        else:
            al = crop_aligned(align_face(nets, read_photo(ref.path), crop_from, name=str(ref.path)), crop_from, crop,
                              resolution)
        d = out_dir / names[ref.key]
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / ".align.json.tmp"
        tmp.write_text(json.dumps(record(ref.path, al, resolution), indent=1))
        os.replace(tmp, d / "align.json")
        x = al.image.astype(np.float32) / 127.5 - 1.0
        return (x @ np.asarray(LUMA, np.float32))[..., None] if channels == 1 else x  # as pillow's "L"

    return load


def paste_back_job(out_dir: str | os.PathLike, names: dict[str, str], recon: str = "proj.png",
                   feather: float = 0.05) -> int:
    """For every OUT/<name>/ holding `recon` and align.json: OUT/<name>/pasted.png, the reconstruction's face
    warped back into the source photo (`paste_back` with the record's landmarks). Returns how many were written."""
    n = 0
    for name in names.values():
        d = Path(out_dir) / name
        if not (d / recon).is_file() or not (d / "align.json").is_file():
            continue
        rec = json.loads((d / "align.json").read_text())
        img = np.asarray(Image.open(d / recon).convert("RGB"))
        out = paste_back(read_photo(rec["source"]), img, np.asarray(rec["quad"]), feather, record_landmarks(rec))
        tmp = d / ".pasted.png.tmp"
        Image.fromarray(out).save(tmp, format="PNG")
        os.replace(tmp, d / "pasted.png")
        n += 1
    return n
