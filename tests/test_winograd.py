"""`winograd.conv3x3_f43` (forward and its transposed-Winograd input gradient) against the direct oracle, the
Winograd LPIPS-VGG16 trunk against the direct one, and the StyleGAN2 generator's Winograd convs against float64."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinv
from jaxinv import ops, winograd
from jaxinv.losses import lpips as L
from jaxinv.losses import vgg16 as V
from jaxinv.models import stylegan2 as sg2
from tests.conftest import GOLDEN, require


def _max_rel(out, ref):
    return float(np.abs(np.asarray(out, np.float64) - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("shape", [(2, 9, 13, 5, 7), (1, 16, 16, 8, 4), (1, 7, 5, 3, 6), (1, 4, 4, 16, 16)])
def test_conv3x3_f43_forward_and_input_gradient_vs_direct(shape):
    b, h, w, ci, co = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((b, h, w, ci)).astype(np.float32)
    wt = rng.standard_normal((3, 3, ci, co)).astype(np.float32)
    dy = rng.standard_normal((b, h, w, co)).astype(np.float32)
    u = jnp.asarray(winograd.transform_weight(wt, winograd.F43))
    y, vjp = jax.vjp(lambda x: winograd.conv3x3_f43(x, u), jnp.asarray(x))
    dx = vjp(jnp.asarray(dy))[0]
    # float64 oracle (x64 on, else jax truncates to float32): forward and its exact input gradient
    with jax.enable_x64(True):
        y_ref, vjp_ref = jax.vjp(lambda x: winograd.conv3x3_reference(x, jnp.asarray(wt, jnp.float64)),
                                 jnp.asarray(x, jnp.float64))
        dx_ref = vjp_ref(jnp.asarray(dy, jnp.float64))[0]
        assert y_ref.dtype == dx_ref.dtype == jnp.float64
    assert y.shape == y_ref.shape and dx.shape == x.shape
    assert _max_rel(y, np.asarray(y_ref)) <= 1e-5
    assert _max_rel(dx, np.asarray(dx_ref)) <= 1e-5
    # the weight is fixed: no gradient flows to it
    assert not np.any(np.asarray(jax.grad(lambda u: winograd.conv3x3_f43(jnp.asarray(x), u).sum())(u)))


def test_conv3x3_f43_jit_grad_matches_vjp_of_reference():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 12, 10, 6)), jnp.float32)
    wt = rng.standard_normal((3, 3, 6, 5)).astype(np.float32)
    u = jnp.asarray(winograd.transform_weight(wt, winograd.F43))
    f = jax.jit(jax.grad(lambda x, u: jnp.sum(jnp.tanh(winograd.conv3x3_f43(x, u)))))
    g_ref = jax.grad(lambda x: jnp.sum(jnp.tanh(winograd.conv3x3_reference(x, jnp.asarray(wt)))))(x)
    assert _max_rel(f(x, u), np.asarray(g_ref, np.float64)) <= 1e-5


def _random_vgg(seed=0):
    rng = np.random.default_rng(seed)
    sd = {}
    for idx, (cin, cout) in zip(V.CONV_INDICES, V.CONV_CHANNELS, strict=True):
        w = rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2 / (9 * cin))
        sd[f"features.{idx}.weight"] = w.astype(np.float32)
        sd[f"features.{idx}.bias"] = (rng.standard_normal(cout) * 0.01).astype(np.float32)
    return V.load_vgg16(sd)


def test_winograd_params_and_flag():
    base = _random_vgg()
    p = V.winograd_params(base)
    for idx, (cin, cout) in zip(V.CONV_INDICES, V.CONV_CHANNELS, strict=True):
        conv = p["features"][str(idx)]
        assert ("wino" in conv) == (cin >= V.WINOGRAD_MIN_CIN)
        if "wino" in conv:
            assert conv["wino"].shape == (36, cin, cout) and conv["wino"].dtype == np.float32
        assert conv["weight"] is base["features"][str(idx)]["weight"]
    assert not any("wino" in c for c in V.winograd_params(p, None)["features"].values())
    heads = {f"lin{k}": np.ones(c, np.float32) for k, c in enumerate(V.TAP_CHANNELS)}
    # the first layer with enough input channels for the Winograd path
    pairs = zip(V.CONV_INDICES, V.CONV_CHANNELS, strict=True)
    first = str(next(i for i, (cin, _) in pairs if cin >= V.WINOGRAD_MIN_CIN))
    assert "wino" in L.lpips_params(base, heads, winograd=True)["vgg16"]["features"][first]
    assert "wino" not in L.lpips_params(p, heads, winograd=False)["vgg16"]["features"][first]


def test_lpips_winograd_vs_direct_value_and_image_gradient():
    heads = {f"lin{k}": np.linspace(0.1, 1, c).astype(np.float32) for k, c in enumerate(V.TAP_CHANNELS)}
    p = L.lpips_params(_random_vgg(1), heads, winograd=True)
    rng = np.random.default_rng(2)
    a = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    b = jnp.asarray(np.clip(np.asarray(a) + rng.normal(0, 0.3, a.shape), -1, 1), jnp.float32)

    @jax.jit
    def vg(p, a, b):  # both forms in one compile; params as arguments (nothing constant-folded)
        return [jax.value_and_grad(lambda x, d=d: L.lpips(p, x, b, direct=d).sum())(a) for d in (False, True)]

    (v_w, g_w), (v_d, g_d) = vg(p, a, b)
    assert abs(float(v_w) - float(v_d)) <= 1e-5 * float(v_d) and float(v_d) > 1e-3
    g_d = np.asarray(g_d, np.float64)
    assert np.linalg.norm(np.asarray(g_w) - g_d) <= 0.1 * np.linalg.norm(g_d)


def test_stylegan2_modulated_convs_winograd_vs_direct_and_float64(monkeypatch):
    """The generator's stride-1 and up-sampling 3x3 modulated convs run as F(4x4,3x3) where
    `ops.WINOGRAD_MIN_CIN` allows (CPU); image and d image / d ws against a float64 run, next to the direct
    convs' float32 error."""
    if jax.default_backend() != "cpu":
        pytest.skip("Winograd generator convs are a CPU path")
    base = jaxinv.load(require(GOLDEN / "sg2ada_r64_skip.weights.npz")).cfg
    cfg = dataclasses.replace(base, channel_base=16384, channel_max=512)  # b32 conv1: 512 ch, b64 conv1: 256 ch
    params = sg2.random_params(cfg, seed=0)
    ws = jax.random.normal(jax.random.PRNGKey(0), (1, cfg.num_ws, cfg.w_dim))
    dy = jax.random.normal(jax.random.PRNGKey(1), (1, 64, 64, 3))

    monkeypatch.setattr(ops, "WINOGRAD_MIN_UP_SIZE", 16)  # so that this 64 px generator's up-sampling convs take it

    def run(winograd, x64=False):
        monkeypatch.setattr(ops, "WINOGRAD", winograd)

        def f(params, ws):  # a new function per run: the choice is made at trace time, jit caches by function
            img, vjp = jax.vjp(lambda w: sg2.synthesis(cfg, params, w), ws)
            return img, vjp(dy.astype(img.dtype))[0]

        jaxpr = str(jax.make_jaxpr(f)(params, ws))
        n_wino = (jaxpr.count("_conv3x3_winograd"), jaxpr.count("_conv3x3_up2_winograd"))
        if not x64:
            return n_wino, [np.asarray(a, np.float64) for a in jax.jit(f)(params, ws)]
        with jax.enable_x64(True):
            p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
            out = jax.jit(f)(p64, jnp.asarray(ws, jnp.float64))
            assert out[0].dtype == out[1].dtype == jnp.float64
            return n_wino, [np.asarray(a) for a in out]

    n_w, (y_w, g_w) = run(True)
    n_d, (y_d, g_d) = run(False)
    _, (y64, g64) = run(False, x64=True)
    assert min(n_w) > 0 and n_d == (0, 0)  # stride-1 and up-sampling convs
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    assert np.abs(y_w - y64).max() <= 1e-4 * max(1.0, np.abs(y64).max())  # the parity tolerance
    # Measured (AVX-512 EPYC): image 7.8e-7 (direct 7.2e-7), gradient 5.0e-4 (direct 8.8e-4) relative L2.
    assert rel(y_w, y64) <= 2 * rel(y_d, y64) + 1e-6
    assert rel(g_w, g64) <= 2 * rel(g_d, g64) + 1e-4


@pytest.mark.parametrize("flip_weight,cin", [(False, 128), (True, 128), (False, 64)])
def test_up2_conv_phases_equal_transposed_conv_and_fir(monkeypatch, flip_weight, cin):
    """`conv2d_resample(up=2)` as one Winograd conv to the 4 output phases: value, input and weight gradients
    equal the direct path (transposed conv, then the FIR), and the path is the one taken (from
    `WINOGRAD_MIN_UP_CIN` = 64 in-channels; not below)."""
    if jax.default_backend() != "cpu":
        pytest.skip("Winograd up-sampling convs are a CPU path")
    monkeypatch.setattr(ops, "WINOGRAD", True)
    monkeypatch.setattr(ops, "WINOGRAD_MIN_UP_SIZE", 16)
    f = ops.setup_filter([1, 3, 3, 1])
    rng = np.random.RandomState(5)
    x = jnp.asarray(rng.randn(2, 16, 17, cin), jnp.float32)
    w = jnp.asarray(rng.randn(3, 3, cin, 24) * 0.05, jnp.float32)

    def run(x, w, ok):
        return ops.conv2d_resample(x, w, f=f, up=2, padding=1, flip_weight=flip_weight, winograd_ok=ok)

    assert "_conv3x3_up2_winograd" in str(jax.make_jaxpr(lambda x: run(x, w, True))(x))
    assert "_conv3x3_up2_winograd" not in str(jax.make_jaxpr(lambda x: run(x[..., :32], w[:, :, :32], True))(x))
    y_d, vjp_d = jax.vjp(lambda x, w: run(x, w, False), x, w)
    y_w, vjp_w = jax.vjp(lambda x, w: run(x, w, True), x, w)
    assert y_w.shape == y_d.shape == (2, 32, 34, 24)
    dy = jnp.asarray(rng.randn(*y_d.shape), jnp.float32)
    for a, b in zip((y_w, *vjp_w(dy)), (y_d, *vjp_d(dy)), strict=True):
        assert _max_rel(a, np.asarray(b, np.float64)) <= 1e-5
