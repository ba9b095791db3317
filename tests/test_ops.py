"""Shared StyleGAN ops against independent numpy references (the official maths written out directly)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxinv import ops

DN = ("NHWC", "HWIO", "NHWC")


def _upfirdn_ref(x, f, up, down, pad, gain):
    """Zero-stuff, pad/crop, true 2-D convolution with f, decimate (official upfirdn2d definition)."""
    n, h, w, c = x.shape
    xs = np.zeros((n, h * up, w * up, c))
    xs[:, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    xs = np.pad(xs, ((0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)))
    xs = xs[:, max(-py0, 0): xs.shape[1] - max(-py1, 0), max(-px0, 0): xs.shape[2] - max(-px1, 0)]
    g = (np.atleast_2d(f) if f.ndim == 2 else np.outer(f, f))[::-1, ::-1] * gain
    kh, kw = g.shape
    ho, wo = xs.shape[1] - kh + 1, xs.shape[2] - kw + 1
    y = np.zeros((n, ho, wo, c))
    for i in range(kh):
        for j in range(kw):
            y += xs[:, i:i + ho, j:j + wo] * g[i, j]
    return y[:, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1, 2, 1)), (1, 2, (1, 1, 1, 1)), (1, 1, (1, 2, 0, -1)),
                                         (2, 2, (1, 2, 2, 1))])
@pytest.mark.parametrize("filt", ["sep4", "radial5", "sep1d8"])
def test_upfirdn2d_matches_reference(up, down, pad, filt):
    rng = np.random.RandomState(0)
    x = rng.randn(2, 12, 13, 3).astype(np.float32)
    f = {"sep4": ops.setup_filter([1, 3, 3, 1]), "radial5": rng.rand(5, 5).astype(np.float32),
         "sep1d8": ops.setup_filter(np.arange(1, 9), separable=True)}[filt]
    got = np.asarray(ops.upfirdn2d(jnp.asarray(x), f, up, down, pad, gain=up * up))
    ref = _upfirdn_ref(x.astype(np.float64), f.astype(np.float64), up, down, pad, up * up)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=2e-6 * max(1, np.abs(ref).max()))


@pytest.mark.parametrize("h,k,pad,dilation", [(8, 3, ((1, 1), (1, 1)), 1), (7, 3, ((0, 2), (1, 0)), 1),
                                              (8, 1, ((0, 0), (0, 0)), 1), (5, 3, ((2, 2), (2, 2)), 2),
                                              (6, 4, ((3, 3), (3, 3)), 2), (5, 3, ((1, 2), (0, 1)), 2)])
def test_conv_custom_vjp_equals_autodiff(h, k, pad, dilation):
    rng = np.random.RandomState(1)
    x = jnp.asarray(rng.randn(2, h, h + 1, 3).astype(np.float32))
    w = jnp.asarray(rng.randn(k, k, 3, 4).astype(np.float32))
    ref = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), pad, lhs_dilation=(dilation,) * 2, dimension_numbers=DN)
    y1, vjp1 = jax.vjp(ref, x, w)
    y2, vjp2 = jax.vjp(lambda x, w: ops._conv(x, w, pad, dilation), x, w)
    dy = jnp.asarray(rng.randn(*y1.shape).astype(np.float32))
    chex.assert_trees_all_close((y2, *vjp2(dy)), (y1, *vjp1(dy)), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv_equals_official_per_sample_weights(up):
    """Activation-side modulation == the official fused form (per-sample w * s, demodulated)."""
    rng = np.random.RandomState(2)
    b, c_in, c_out, h = 3, 5, 4, 6
    x = rng.randn(b, h, h, c_in).astype(np.float32)
    w = rng.randn(3, 3, c_in, c_out).astype(np.float32)
    s = rng.randn(b, c_in).astype(np.float32) + 1
    f = ops.setup_filter([1, 3, 3, 1])
    got = np.asarray(ops.modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), up=up, padding=1,
                                          resample_filter=f, flip_weight=(up == 1)))
    ref = []
    for i in range(b):  # official: w_i = w * s_i, demodulated per output channel, one conv per sample
        wi = w.astype(np.float64) * s[i][None, None, :, None]
        wi = wi / np.sqrt((wi**2).sum(axis=(0, 1, 2), keepdims=True) + 1e-8)
        yi = ops.conv2d_resample(jnp.asarray(x[i:i + 1]), jnp.asarray(wi.astype(np.float32)), f=f, up=up, padding=1,
                                 flip_weight=(up == 1))
        ref.append(np.asarray(yi)[0])
    np.testing.assert_allclose(got, np.stack(ref), rtol=1e-4, atol=1e-5)


def test_bias_act_clamp_and_gain():
    x = jnp.asarray([[-3.0, -0.5, 0.5, 3.0]])
    out = np.asarray(ops.bias_act(x, jnp.asarray([0.0, 0.0, 0.0, 1.0]), act="lrelu", gain=2.0, clamp=4.0))
    np.testing.assert_allclose(out, [[-1.2, -0.2, 1.0, 4.0]], rtol=1e-6)


def test_axis_sum_equals_sum():
    x = np.random.RandomState(3).randn(2, 5, 7, 6)
    for axis in (0, 2, -1):
        np.testing.assert_allclose(np.asarray(ops.axis_sum(jnp.asarray(x, jnp.float32), axis)), x.sum(axis),
                                   rtol=1e-5, atol=1e-5)


def test_normalize_channels_equals_oracle_with_dead_columns():
    """The hand-written backward against autodiff of the plain formula (float64), all-zero columns included
    (ReLU features): values and gradients, and finite there."""
    rng = np.random.RandomState(4)
    f = np.maximum(rng.randn(2, 6, 5, 16), 0.0)
    f[0, 1, 2] = 0.0
    f[1, :, 3] = 0.0
    g = rng.randn(*f.shape)
    with jax.enable_x64():
        f64, g64 = jnp.asarray(f), jnp.asarray(g)
        y_ref, vjp_ref = jax.vjp(ops.normalize_channels_reference, f64)
        y, vjp = jax.vjp(ops.normalize_channels, f64)
        np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.asarray(vjp(g64)[0]), np.asarray(vjp_ref(g64)[0]), rtol=1e-9, atol=1e-6)
    y32, vjp32 = jax.vjp(ops.normalize_channels, jnp.asarray(f, jnp.float32))
    d32 = np.asarray(vjp32(jnp.asarray(g, jnp.float32))[0])
    assert np.all(np.isfinite(d32))
    np.testing.assert_allclose(np.asarray(y32), np.asarray(y_ref), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k,pad", [(k, p) for k in range(1, 6) for p in range(3) if p < k])  # padding < kernel
@pytest.mark.parametrize("stride", [2, 3])
def test_conv_transpose_phases_equal_zero_stuffed_conv(k, pad, stride):
    """The per-phase form of the transposed conv (CPU) against the oracle, a conv of the zero-stuffed input:
    values, input and weight gradients in float64, odd and even sizes, phases without taps (k < stride)."""
    rng = np.random.RandomState(5)
    for h, w_ in [(1, 3), (4, 5), (5, 6)]:
        x, w = rng.randn(2, h, w_, 3), rng.randn(k, k, 3, 4)
        oracle = lambda x, w: ops._conv_ref(x, w[::-1, ::-1], ((k - 1 - pad,) * 2,) * 2, stride)
        with jax.enable_x64():
            x64, w64 = jnp.asarray(x), jnp.asarray(w)
            y_ref, vjp_ref = jax.vjp(oracle, x64, w64)
            if y_ref.size == 0:
                continue
            y, vjp = jax.vjp(lambda x, w: ops._conv_transpose_phases(x, w[::-1, ::-1], ((k - 1 - pad,) * 2,) * 2,
                                                                     stride), x64, w64)
            dy = jnp.asarray(rng.randn(*y_ref.shape))
            chex.assert_trees_all_close((y, *vjp(dy)), (y_ref, *vjp_ref(dy)), rtol=1e-12, atol=1e-12)
            if jax.default_backend() == "cpu":  # the public op takes this path on CPU
                chex.assert_trees_all_close(ops.conv_transpose2d(x64, w64, stride, (pad, pad)), y_ref,
                                            rtol=1e-12, atol=1e-12)


def test_conv2d_1x1_as_dot_equals_conv():
    rng = np.random.RandomState(6)
    x, w = rng.randn(2, 5, 6, 7), rng.randn(1, 1, 7, 3)
    with jax.enable_x64():
        x64, w64 = jnp.asarray(x), jnp.asarray(w)
        y_ref, vjp_ref = jax.vjp(lambda x, w: ops._conv_ref(x, w, ((0, 0), (0, 0)), 1), x64, w64)
        y, vjp = jax.vjp(ops.conv2d, x64, w64)
        dy = jnp.asarray(rng.randn(*y_ref.shape))
        chex.assert_trees_all_close((y, *vjp(dy)), (y_ref, *vjp_ref(dy)), rtol=1e-12, atol=1e-12)
