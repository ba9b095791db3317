"""Face-ID network (TF.js dlib ResNet) and Darknet perceptual network against their real-weight goldens."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.errors import CheckpointError
from jaxinv.losses import darknet as K
from jaxinv.losses import identity as I
from jaxinv.parity.core import assert_parity, parity_tol

try:
    from tests.conftest import REALDATA, require
except ImportError:  # tests/ collected as rootdir-less modules
    from conftest import REALDATA, require

FACE = REALDATA / "weights/face_id_dlib_resnet_faceapi"
MANIFEST = "face_recognition_model-weights_manifest.json"
DARKNET = REALDATA / "weights/imagenet_darknet_tiny"


@pytest.fixture(scope="module")
def face_params():
    return I.load_face_id(require(FACE))


@pytest.fixture(scope="module")
def face_golden():
    return np.load(require(FACE / "golden.npz"))


_descr = jax.jit(lambda p, x, div: I.face_descriptor_from_image(p, x, drange=(0.0, 255.0), input_divisor=div),
                 static_argnums=2)


def test_face_id_dequantisation_independent_decode(face_params):
    # decode two tensors straight from the .bin by byte offsets (uint8: 1 byte/value, float32: 4)
    manifest = json.loads((FACE / MANIFEST).read_text())
    raw = (FACE / "face_recognition_model.bin").read_bytes()
    pos, found = 0, {}
    for w in manifest[0]["weights"]:
        n = int(np.prod(w["shape"]))
        q = w.get("quantization")
        if q:
            vals = np.frombuffer(raw, np.uint8, n, pos).astype(np.float64) * q["scale"] + q["min"]
            pos += n
        else:
            vals = np.frombuffer(raw, "<f4", n, pos).astype(np.float64)
            pos += 4 * n
        found[w["name"]] = vals.astype(np.float32).reshape(w["shape"])
    assert pos == len(raw)
    for name in ("conv32_down/conv/filters", "conv64_1/conv1/conv/filters", "conv256_down_out/conv2/scale/biases"):
        node = face_params
        for part in name.split("/"):
            node = node[part]
        np.testing.assert_array_equal(np.asarray(node), found[name])
    assert face_params["fc"].shape == (256, 128)


def test_face_descriptor_matches_golden(face_params, face_golden):
    x = face_golden["inputs_uint8_nhwc"].astype(np.float32)
    ref = face_golden["descriptors"]
    out = np.asarray(_descr(face_params, x, 255.0))
    assert_parity(out, ref, "face descriptors")
    tol = parity_tol(ref)
    # face-api.js itself divides by 256: a small, measurable difference from the golden's 255
    err256 = np.abs(np.asarray(_descr(face_params, x, 256.0)) - ref).max()
    assert tol < err256 < 1e-2, err256
    # same person (0, 1) closer than different people (0, 2), as dlib's 0.6 threshold says
    assert np.linalg.norm(out[0] - out[1]) < 0.6 < np.linalg.norm(out[0] - out[2])


def test_identity_loss_and_gradients(face_params, face_golden):
    x = jnp.asarray(face_golden["inputs_uint8_nhwc"][:2].astype(np.float32) / 127.5 - 1.0)
    # smaller images are resized to 150 inside; 1 - cos is 0 for the image itself
    small = jax.image.resize(x, (2, 64, 64, 3), "linear")

    @jax.jit
    def run(img):
        target = I.face_descriptor_from_image(face_params, img[:1])
        per_item = I.identity_loss(face_params, img, target)
        g = jax.grad(lambda v: I.identity_loss(face_params, v, target).sum())(img)
        return per_item, g

    per_item, g = run(small)
    per_item = np.asarray(per_item)
    assert per_item.shape == (2,)
    # images 0 and 1 are the same person: small but non-zero loss
    assert abs(per_item[0]) <= 1e-5 and 1e-3 < per_item[1] < 0.5, per_item
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g[1]).max()) > 0


def test_face_id_loader_errors(tmp_path):
    src = require(FACE)
    for name in (MANIFEST, "face_recognition_model.bin"):
        shutil.copy(src / name, tmp_path / name)
    raw = (tmp_path / "face_recognition_model.bin").read_bytes()
    (tmp_path / "face_recognition_model.bin").write_bytes(raw[:-100])
    with pytest.raises(CheckpointError, match="truncated"):
        I.load_face_id(tmp_path)
    (tmp_path / "face_recognition_model.bin").unlink()
    with pytest.raises(CheckpointError, match="face_recognition_model.bin"):
        I.load_face_id(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        I.load_face_id(tmp_path / "missing.json")


# ----------------------------------------------------------------------------------------------------
# Darknet (real ImageNet CNN) for perceptual features


@pytest.fixture(scope="module")
def darknet():
    return K.load_darknet(require(DARKNET))


def test_darknet_logits_match_golden(darknet):
    cfg, params = darknet
    g = np.load(DARKNET / "golden.npz")
    x = g["inputs_uint8_nhwc"].astype(np.float32)
    out = np.asarray(jax.jit(lambda p, v: K.darknet_forward(cfg, p, K.preprocess_darknet(v, drange=(0.0, 255.0)))[0])(
        params, x))
    assert_parity(out, g["logits"], "Darknet logits")
    labels = (DARKNET / "labels_in_output_order.txt").read_text().splitlines()
    assert [labels[i] for i in out.argmax(1)] == ["totem pole", "pop bottle"]  # the true classes (SOURCE.md)


def test_darknet_perceptual_distance(darknet):
    cfg, params = darknet
    rng = np.random.default_rng(0)
    img = jnp.asarray(rng.uniform(-1, 1, (3, 32, 32, 3)), jnp.float32)
    img = img.at[2].set(img[0])

    @jax.jit
    def run(v):
        f = K.darknet_perceptual_features(cfg, params, v, size=None)
        d = K.perceptual_distance(f, f[:1])
        g = jax.grad(lambda u: K.perceptual_distance(K.darknet_perceptual_features(cfg, params, u, size=None),
                                                     f[:1]).sum())(v)
        return f, d, g

    f, d, g = run(img)
    sizes = [32 * 32 * 16, 16 * 16 * 32, 8 * 8 * 128, 4 * 4 * 256, 2 * 2 * 512]
    assert f.shape == (3, sum(sizes))
    d = np.asarray(d)
    assert d[0] == 0.0 and d[2] == 0.0 and d[1] > 0.01
    # each tap contributes at most 4 (unit vectors), so the distance is bounded by 4 * number of taps
    assert d[1] <= 4 * len(K.DEFAULT_TAPS)
    assert np.all(np.isfinite(np.asarray(g)))


def test_darknet_loader_errors(tmp_path):
    src = require(DARKNET)
    for p in src.iterdir():
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "group19-shard1of1").unlink()
    with pytest.raises(CheckpointError, match="group19-shard1of1"):
        K.load_darknet(tmp_path)
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(CheckpointError, match="not a TF.js layers model"):
        K.load_darknet(tmp_path / "model.json")
