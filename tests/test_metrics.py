"""PSNR / SSIM against independent float64 numpy implementations; LPIPS / ID similarity wiring."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import metrics
from jaxinv.losses import identity as I
from jaxinv.losses import lpips as L
from jaxinv.losses import vgg16 as V

try:
    from tests.conftest import REALDATA, require
except ImportError:  # tests/ collected as rootdir-less modules
    from conftest import REALDATA, require


def np_psnr(a, b, max_val=1.0):
    mse = ((a.astype(np.float64) - b) ** 2).reshape(a.shape[0], -1).mean(1)
    return 10.0 * np.log10(max_val ** 2 / mse)


def np_ssim(a, b, max_val=1.0, size=11, sigma=1.5, k1=0.01, k2=0.03):
    """Wang et al. 2004 with a separable Gaussian window, 'valid' filtering, mean over map and channels."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()

    def blur(z):  # z [B, H, W, C]
        h, w = z.shape[1] - size + 1, z.shape[2] - size + 1
        t = sum(g[i] * z[:, i:i + h] for i in range(size))
        return sum(g[j] * t[:, :, j:j + w] for j in range(size))

    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = blur(a), blur(b)
    s_aa = blur(a * a) - mu_a ** 2
    s_bb = blur(b * b) - mu_b ** 2
    s_ab = blur(a * b) - mu_a * mu_b
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * s_ab + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (s_aa + s_bb + c2))
    return m.mean(axis=(1, 2, 3))


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    # smooth-ish images plus noise of several strengths
    base = rng.uniform(0, 1, (1, 8, 8, 3))
    base = np.asarray(jax.image.resize(base, (1, 40, 36, 3), "cubic")).clip(0, 1)
    a = np.repeat(base, 4, axis=0)
    b = (a + rng.normal(0, 1, a.shape) * np.array([0.01, 0.05, 0.2, 0.0])[:, None, None, None]).clip(0, 1)
    b[3] = 1.0 - a[3]
    return a.astype(np.float32), b.astype(np.float32)


def test_psnr_vs_numpy(images):
    a, b = images
    out = np.asarray(metrics.psnr(a, b))
    ref = np_psnr(a, b)
    assert out.shape == (4,) and np.abs(out - ref).max() <= 1e-3, (out, ref)
    # dynamic range 255
    out255 = np.asarray(metrics.psnr(a * 255, b * 255, max_val=255.0))
    assert np.abs(out255 - ref).max() <= 1e-3
    assert np.isinf(np.asarray(metrics.psnr(a[:1], a[:1]))).all()


def test_ssim_vs_numpy(images):
    a, b = images
    out = np.asarray(metrics.ssim(a, b))
    ref = np_ssim(a, b)
    err = np.abs(out - ref).max()
    assert out.shape == (4,) and err <= 1e-4, f"SSIM max abs err {err}: {out} vs {ref}"
    assert np.all(np.diff(ref[:3]) < 0)  # more noise, lower SSIM
    assert np.allclose(np.asarray(metrics.ssim(a, a)), 1.0, atol=1e-6)
    out255 = np.asarray(metrics.ssim(a * 255, b * 255, max_val=255.0))
    assert np.abs(out255 - ref).max() <= 1e-4


def test_lpips_metric_uses_projector_recipe():
    heads = require(REALDATA / "weights/lpips_linear_heads/vgg_v0.1.npz")
    params = L.lpips_params(V.procedural_vgg16(), L.load_lpips_heads(heads))
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)
    b = rng.uniform(0, 1, (2, 16, 16, 3)).astype(np.float32)

    @jax.jit
    def both(x, y):
        return metrics.lpips(params, x, y), L.lpips(params, x * 255, y * 255, drange=(0.0, 255.0))

    m, ref = map(np.asarray, both(a, b))
    assert m.shape == (2,) and np.abs(m - ref).max() <= 1e-5 * max(1.0, np.abs(ref).max()) and m.min() > 0


def test_id_similarity():
    params = I.load_face_id(require(REALDATA / "weights/face_id_dlib_resnet_faceapi"))
    g = np.load(REALDATA / "weights/face_id_dlib_resnet_faceapi/golden.npz")
    x = g["inputs_uint8_nhwc"][:3].astype(np.float32) / 255.0
    sim = np.asarray(jax.jit(lambda u, v: metrics.id_similarity(params, u, v))(x, x[[0, 0, 0]]))
    d = g["descriptors"].astype(np.float64)
    ref = d[:3] @ d[0] / (np.linalg.norm(d[:3], axis=1) * np.linalg.norm(d[0]))
    assert abs(sim[0] - 1.0) <= 1e-5
    assert np.abs(sim - ref).max() <= 1e-3, (sim, ref)
    assert sim[1] > sim[2]  # same person more similar than a different one
    assert math.isfinite(float(jnp.sum(sim)))
