"""StyleGAN ops written once, shared by every StyleGAN family (NVlabs SG2-ADA, stylegan3 repo, rosinality).

All tensors are NHWC; conv weights are HWIO ``[kh, kw, in, out]``; dense weights ``[in, out]``.
Filters are static numpy arrays. Resampling filters are applied as shifted adds (separable when the
filter has rank 1): XLA's CPU path for depthwise (``feature_group_count=C``) convs is ~10x slower.
Modulated convs scale activations around one shared-weight conv instead of the official per-sample
grouped conv: the same maths, but a batch becomes one ordinary conv and its backward needs no
weight-gradient convs.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxinv import winograd

_DN = ("NHWC", "HWIO", "NHWC")

# ---------------------------------------------------------------------------------------------
# bias_act


_ACTIVATIONS = {
    # name: (function(x, alpha), default alpha, default gain) as torch_utils.ops.bias_act.
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: jnp.maximum(x, 0), 0.0, float(np.sqrt(2))),
    "lrelu": (lambda x, a: jnp.where(x >= 0, x, x * a), 0.2, float(np.sqrt(2))),
    "tanh": (lambda x, a: jnp.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: jax.nn.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, a: jax.nn.elu(x), 0.0, 1.0),
    "selu": (lambda x, a: jax.nn.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: jax.nn.softplus(x), 0.0, 1.0),
    "swish": (lambda x, a: x * jax.nn.sigmoid(x), 0.0, float(np.sqrt(2))),
}


def activation_gain(act: str) -> float:
    return _ACTIVATIONS[act][2]


def bias_act(
    x: jax.Array,
    b: jax.Array | None = None,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
) -> jax.Array:
    """``clamp(act(x + b) * gain)``, bias over the last (channel) axis, as the official bias_act."""
    fn, def_alpha, def_gain = _ACTIVATIONS[act]
    if b is not None:
        x = x + b
    x = fn(x, def_alpha if alpha is None else alpha)
    gain = def_gain if gain is None else float(gain)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = jnp.clip(x, -clamp, clamp)
    return x


def normalize_2nd_moment(x: jax.Array, axis: int = -1, eps: float = 1e-8) -> jax.Array:
    return x * lax.rsqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=True) + eps)


# ---------------------------------------------------------------------------------------------
# Sums over an axis as dot products: XLA:CPU's reduce fusions (YNN) ran 10-15x slower than a matrix-vector
# product over the same data (e.g. the LPIPS channel norm at 256x256x64, forward + backward: 47 vs 5 ms).


def axis_sum(x: jax.Array, axis: int = -1) -> jax.Array:
    """``jnp.sum(x, axis)`` (one axis, dropped) as a dot with a ones vector (float32 sums, any order)."""
    axis = axis % x.ndim
    ones = jnp.ones((x.shape[axis],), x.dtype)
    if axis == x.ndim - 1:
        return lax.dot_general(x, ones, (((axis,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    # ones as the left operand: a vector-matrix product that reads x in its layout (x as the left operand
    # with a non-minor contracted axis made XLA transpose x first)
    return lax.dot_general(ones, x, (((0,), (axis,)), ((), ())), precision=lax.Precision.HIGHEST)


def normalize_channels_reference(f: jax.Array, eps: float = 1e-10) -> jax.Array:
    """Slow oracle of `normalize_channels` (autodiff of the plain formula)."""
    s = jnp.sum(jnp.square(f), axis=-1, keepdims=True)
    pos = s > 0
    norm = jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)  # finite gradient at 0
    return f / (norm + eps)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def normalize_channels(f: jax.Array, eps: float = 1e-10) -> jax.Array:
    """``f / (||f|| + eps)`` over the channel (last) axis (LPIPS' normalize_tensor), with channel sums as dots
    and a hand-written backward: ``g r - f r^2 (g . f) / ||f||``, ``r = 1 / (||f|| + eps)`` (0 where ||f|| = 0,
    as the oracle's guarded sqrt)."""
    return _normalize_channels_fwd(f, eps)[0]


def _normalize_channels_fwd(f, eps):
    norm = jnp.sqrt(axis_sum(jnp.square(f)))[..., None]
    r = 1.0 / (norm + eps)
    return f * r, (f, r, norm)


def _normalize_channels_bwd(eps, res, g):
    f, r, norm = res
    pos = norm > 0
    k = jnp.where(pos, r * r / jnp.where(pos, norm, 1.0), 0.0) * axis_sum(g * f)[..., None]
    return (g * r - f * k,)


normalize_channels.defvjp(_normalize_channels_fwd, _normalize_channels_bwd)


def fully_connected(
    x: jax.Array,
    weight: jax.Array,
    bias: jax.Array | None = None,
    lr_multiplier: float = 1.0,
    activation: str = "linear",
    bias_gain: float | None = None,
) -> jax.Array:
    """Equalised-learning-rate dense layer: ``weight`` is ``[in, out]`` as stored (unscaled)."""
    weight_gain = lr_multiplier / np.sqrt(weight.shape[0])
    bias_gain = lr_multiplier if bias_gain is None else bias_gain
    x = x @ (weight * weight_gain)
    b = None if bias is None else (bias * bias_gain if bias_gain != 1 else bias)
    return bias_act(x, b, act=activation)


# ---------------------------------------------------------------------------------------------
# upfirdn2d


def setup_filter(f: Sequence[float] | np.ndarray, normalize: bool = True, separable: bool | None = None,
                 gain: float = 1.0) -> np.ndarray:
    """The official ``upfirdn2d.setup_filter``: 1-D taps become a 2-D outer product unless separable."""
    f = np.asarray(f, dtype=np.float32)
    if f.ndim == 0:
        f = f[np.newaxis]
    if separable is None:
        separable = f.ndim == 1 and f.size >= 8
    if f.ndim == 1 and not separable:
        f = np.outer(f, f)
    if normalize:
        f = f / f.sum()
    return (f * (gain ** (f.ndim / 2))).astype(np.float32)


def _parse_padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(padding, int | np.integer):
        p = int(padding)
        return p, p, p, p
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def _filter_size(f: np.ndarray | None) -> tuple[int, int]:
    if f is None:
        return 1, 1
    f = np.asarray(f)
    return (f.shape[-1], f.shape[0]) if f.ndim == 2 else (f.shape[0], f.shape[0])


def _separate(f: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Split a rank-1 2-D filter into (taps along H, taps along W); None if it is not rank 1."""
    f64 = f.astype(np.float64)
    total = f64.sum()
    if total == 0:
        return None
    fy, fx = f64.sum(axis=1), f64.sum(axis=0) / total
    if np.abs(np.outer(fy, fx) - f64).max() > 1e-7 * np.abs(f64).max():
        return None
    return fy, fx


def _pad_axis(x: jax.Array, axis: int, p0: int, p1: int) -> jax.Array:
    """Zero-pad (positive) or crop (negative) one axis."""
    if p0 < 0 or p1 < 0:
        n = x.shape[axis]
        x = lax.slice_in_dim(x, max(-p0, 0), n - max(-p1, 0), axis=axis)
    if p0 > 0 or p1 > 0:
        cfg = [(0, 0, 0)] * x.ndim
        cfg[axis] = (max(p0, 0), max(p1, 0), 0)
        x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    return x


def _upsample_axis(x: jax.Array, axis: int, up: int) -> jax.Array:
    """Zero-stuffing as the official: each sample followed by ``up - 1`` zeros."""
    if up == 1:
        return x
    cfg = [(0, 0, 0)] * x.ndim
    cfg[axis] = (0, up - 1, up - 1)
    return lax.pad(x, jnp.zeros((), x.dtype), cfg)


def _fold_taps(taps: np.ndarray, fold: bool) -> list[tuple[float, int, int | None]]:
    """(weight, tap, mirrored tap or None): with ``fold``, a symmetric filter adds mirrored samples before
    multiplying."""
    k = len(taps)
    if fold and k > 1 and np.array_equal(taps, taps[::-1]):
        return [(float(taps[t]), t, k - 1 - t if k - 1 - t != t else None) for t in range(-(-k // 2))]
    return [(float(w), t, None) for t, w in enumerate(taps)]


def _fir_axis(x: jax.Array, axis: int, taps: np.ndarray, down: int, fold: bool = False) -> jax.Array:
    """Correlate one axis with static taps (shifted adds), computing only every ``down``-th output. ``fold``: a
    symmetric filter adds mirrored samples before multiplying (half the multiplies; filtered_lrelu's order of
    float32 sums, upfirdn2d's is unfolded)."""
    k = len(taps)
    n_out = (x.shape[axis] - k) // down + 1
    if n_out <= 0:
        raise ValueError(f"FIR filter of {k} taps does not fit an axis of {x.shape[axis]} samples")

    def tap(t: int) -> jax.Array:
        return lax.slice_in_dim(x, t, t + (n_out - 1) * down + 1, stride=down, axis=axis)

    y = None
    for w, t, mirror in _fold_taps(taps, fold):
        if w == 0:
            continue
        term = (tap(t) if mirror is None else tap(t) + tap(mirror)) * np.float32(w)
        y = term if y is None else y + term
    if y is None:
        shape = list(x.shape)
        shape[axis] = n_out
        y = jnp.zeros(shape, x.dtype)
    return y


def upfirdn2d(
    x: jax.Array,
    f: np.ndarray | None,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> jax.Array:
    """Upsample (zero-stuff), pad, FIR-filter and downsample a batch of NHWC images.

    Same semantics as the official ``upfirdn2d`` (``f`` is applied as a convolution unless
    ``flip_filter``; a 1-D ``f`` is applied along W and along H; ``gain`` scales the filter).
    """
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    px0, px1, py0, py1 = _parse_padding(padding)
    f = np.ones([1, 1], np.float32) if f is None else np.asarray(f, np.float32)
    if f.ndim == 1:
        fy = fx = f.astype(np.float64)
        sep = (fy, fx)
    else:
        sep = _separate(f)
    if sep is not None:
        fy, fx = sep
        if not flip_filter:
            fy, fx = fy[::-1], fx[::-1]
        fx = fx * gain  # the whole gain on one axis: exact for the power-of-two gains used here
        x = _upsample_axis(x, 2, upx)
        x = _pad_axis(x, 2, px0, px1)
        x = _fir_axis(x, 2, fx, downx)
        x = _upsample_axis(x, 1, upy)
        x = _pad_axis(x, 1, py0, py1)
        return _fir_axis(x, 1, fy, downy)

    # Non-separable 2-D filter: shifted adds over all taps.
    g = f.astype(np.float64) * gain
    if not flip_filter:
        g = g[::-1, ::-1]
    x = _upsample_axis(_upsample_axis(x, 2, upx), 1, upy)
    x = _pad_axis(_pad_axis(x, 2, px0, px1), 1, py0, py1)
    kh, kw = g.shape
    h_out = (x.shape[1] - kh) // downy + 1
    w_out = (x.shape[2] - kw) // downx + 1
    y = None
    for i in range(kh):
        for j in range(kw):
            if g[i, j] == 0:
                continue
            s = lax.slice(x, (0, i, j, 0),
                          (x.shape[0], i + (h_out - 1) * downy + 1, j + (w_out - 1) * downx + 1, x.shape[3]),
                          (1, downy, downx, 1))
            term = s * np.float32(g[i, j])
            y = term if y is None else y + term
    return y


def upsample2d(x: jax.Array, f: np.ndarray, up: int = 2, padding: int | Sequence[int] = 0,
               flip_filter: bool = False, gain: float = 1.0) -> jax.Array:
    """Official ``upfirdn2d.upsample2d``: pad so the output is exactly ``up`` times larger."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, flip_filter=flip_filter, gain=gain * up * up)


def downsample2d(x: jax.Array, f: np.ndarray, down: int = 2, padding: int | Sequence[int] = 0,
                 flip_filter: bool = False, gain: float = 1.0) -> jax.Array:
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _filter_size(f)
    p = [px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p, flip_filter=flip_filter, gain=gain)


# ---------------------------------------------------------------------------------------------
# Convolutions


def _conv_ref(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]],
              dilation: int) -> jax.Array:
    return lax.conv_general_dilated(x, w, (1, 1), padding, lhs_dilation=(dilation, dilation), dimension_numbers=_DN)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]], dilation: int) -> jax.Array:
    """Stride-1 correlation of the (optionally zero-stuffed) input, with an explicit input gradient.

    Autodiff expresses the input gradient with the kernel's in/out axes swapped; XLA:CPU folds that swap into
    the conv's kernel layout and, inside `lax.scan` bodies, leaves its fast conv path (measured 3.7x slower per
    inversion step). Here the swapped kernel is materialised as HWIO. The weight gradient is autodiff's (dead
    code when only latents are optimised).
    """
    return _conv_ref(x, w, padding, dilation)


def _conv_fwd(x, w, padding, dilation):
    return _conv_ref(x, w, padding, dilation), (x, w)


def _conv_bwd(padding, dilation, res, dy):
    x, w = res
    kh, kw = w.shape[:2]
    (p0, p1), (q0, q1) = padding
    # "+ 0 w[0, 0, 0, 0]" (exact for finite weights) makes the copy a computation, which XLA's loop-invariant
    # code motion hoists out of the step loop; a lone transpose it leaves in the loop body, where layout assignment
    # turns it into a per-step copy (16x16x512 conv, forward + input gradient: 10.1 -> 6.6 ms per step).
    w_back = jnp.transpose(w[::-1, ::-1], (0, 1, 3, 2)) + 0 * w[0, 0, 0, 0]
    # Gradient w.r.t. the zero-stuffed input, read only at the stuffed samples: a strided conv.
    dx = lax.conv_general_dilated(dy, w_back, (dilation, dilation),
                                  ((kh - 1 - p0, kh - 1 - p1), (kw - 1 - q0, kw - 1 - q1)), dimension_numbers=_DN)
    if dx.shape != x.shape:  # trailing samples the forward never read: their gradient is zero
        dx = jnp.pad(dx[:, : x.shape[1], : x.shape[2]],
                     ((0, 0), (0, x.shape[1] - min(dx.shape[1], x.shape[1])),
                      (0, x.shape[2] - min(dx.shape[2], x.shape[2])), (0, 0)))
    dw = jax.vjp(lambda w_: _conv_ref(x, w_, padding, dilation), w)[1](dy)[0]
    return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


# Stride-1 3x3 convs that allow it (`winograd_ok`: StyleGAN2's modulated convs, whose weight the batch shares
# by activation-side modulation) run as F(4x4,3x3) Winograd on CPU when in-channels >= WINOGRAD_MIN_CIN and the
# map is >= WINOGRAD_MIN_SIZE. Forward + input gradient at batch 4, 2-core AVX-512 EPYC: 1.95x (32x32x512),
# 1.84x (64x64x256), 1.30x (128x128x128), 1.10x (16x16x512) faster than direct; 0.79x at 256x256x64, hence
# the channel limit. 2-core Xeon (AVX-512), batch 1 (the CPU engine's lane group): 1.77x at 16x16x512 (batch 4:
# 2.3x) but 0.94x at 8x8x512, hence the size limit.
WINOGRAD = True  # False: every conv direct (benchmarks, the tests' direct references)
WINOGRAD_MIN_CIN = 128
WINOGRAD_MIN_SIZE = 16
# Up-sampling convs (below): forward + input gradient at batch 1 against the direct transposed conv + FIR,
# same machine: 1.59x at 128x128x128 -> 64, 1.02x at 64x64x256 -> 128, but 0.61x at 32x32x512 -> 256 and 0.28x
# at 16x16x512 -> 512 (the phase weight, [36, I, 4 O], is read from memory per step), hence input maps >= 128.
# In-channels from 64 (not WINOGRAD_MIN_CIN): FFHQ 1024's 512x512x64 -> 32 conv, forward + input gradient at
# batch 1 on a 2-core Xeon, 517 ms (direct phases + FIR) -> 362 ms; float32 error vs float64 1.3e-6 (relative
# L2; 1.7e-6 at 128 in-channels, direct 2.5e-7).
WINOGRAD_MIN_UP_SIZE = 128
WINOGRAD_MIN_UP_CIN = 64
# The real float32, fixed at import: `jaxinv.parity.projector.float64_engine` reads this module's np.float32 and
# jnp.float32 as float64 (its float64 reference runs take the direct convs).
_F32 = np.dtype(np.float32)


def _winograd_on(x: jax.Array) -> bool:
    """Winograd convs at all: on CPU, not disabled (WINOGRAD), float32 only (float64 runs are the references;
    the transform's constants are float32 ones)."""
    return WINOGRAD and jax.default_backend() == "cpu" and x.dtype == _F32


def _winograd_applies(x: jax.Array, w: jax.Array, pad: tuple[tuple[int, int], tuple[int, int]]) -> bool:
    return (_winograd_on(x) and w.shape[:2] == (3, 3) and pad == ((1, 1), (1, 1)) and w.shape[2] >= WINOGRAD_MIN_CIN
            and min(x.shape[1], x.shape[2]) >= WINOGRAD_MIN_SIZE)


@jax.custom_vjp
def _conv3x3_winograd(x: jax.Array, w: jax.Array) -> jax.Array:
    """`_conv(x, w, padding 1)` of a 3x3 HWIO weight as F(4x4,3x3) (`winograd.conv3x3_f43`, whose input gradient
    is Winograd too); the weight gradient is the direct conv's (PTI tunes weights; dead code otherwise)."""
    return winograd.conv3x3_f43(x, winograd.transform_weight_jax(w, winograd.F43))


def _conv3x3_winograd_fwd(x, w):
    return _conv3x3_winograd(x, w), (x, w)


def _conv3x3_winograd_bwd(res, dy):
    x, w = res
    u = winograd.transform_weight_jax(w, winograd.F43)
    dx = jax.vjp(lambda x_: winograd.conv3x3_f43(x_, u), x)[1](dy)[0]
    dw = jax.vjp(lambda w_: _conv_ref(x, w_, ((1, 1), (1, 1)), 1), w)[1](dy)[0]
    return dx, dw


_conv3x3_winograd.defvjp(_conv3x3_winograd_fwd, _conv3x3_winograd_bwd)


# StyleGAN2's up-sampling convs (3x3 transposed conv, stride 2, then the 4-tap FIR with padding 1): output pixel
# (2i + r, 2j + s) reads only x[i-1 .. i+1, j-1 .. j+1], through a 3x3 "phase" kernel of (w conv FIR) for each of
# the 4 phases (r, s). So the whole op is one stride-1 3x3 conv of x to 4 x out channels (F(4x4,3x3) Winograd
# here: the input transform is shared by the 4 phases) and an interleave; no zero-stuffed map, no FIR pass.
# The same number of products as the direct transposed conv.


def _up2_phase_matrix(taps: np.ndarray) -> tuple:
    """[2 (phase r), 3 (window tap a), 3 (kernel tap k)] as nested tuples (hashable: a static argument): phase
    r's kernel tap a = sum_k M[r, a, k] g[k], for the correlation taps `taps` (4) of the FIR applied after the
    transposed conv (out[2j + k] += x[j] g[k], FIR padding 1): output 2i + r takes x[i - 1 + a] with weight
    sum_k g[k] taps[k + 2a - r - 1]."""
    m = np.zeros((2, 3, 3), np.float64)
    for r in range(2):
        for a in range(3):
            for k in range(3):
                t = k + 2 * a - r - 1
                if 0 <= t < len(taps):
                    m[r, a, k] = taps[t]
    return tuple(tuple(tuple(float(v) for v in row) for row in mr) for mr in m)


def _up2_phase_kernel(g: jax.Array, my: tuple, mx: tuple) -> jax.Array:
    """Transposed-conv kernel g [3, 3, I, O] -> the phase kernels as one HWIO weight [3, 3, I, 4 O] (phases
    (r, s) outer, channels inner)."""
    k = jnp.einsum("rak,sbl,klio->abirso", np.asarray(my, g.dtype), np.asarray(mx, g.dtype), g,
                   precision=lax.Precision.HIGHEST)
    return k.reshape(3, 3, g.shape[2], 4 * g.shape[3])


def _phase_interleave(y: jax.Array, stride: int = 2) -> jax.Array:
    """[B, H, W, s * s * O] (output phases (r, q) outer, channels inner) -> [B, s H, s W, O]: phase (r, q) at
    pixel (i, j) goes to (s i + r, s j + q)."""
    b, h, w, c = y.shape
    o = c // (stride * stride)
    y = y.reshape(b, h, w, stride, stride, o).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, stride * h, stride * w, o)


@partial(jax.jit, static_argnums=(2, 3))  # a named call (jaxprs show which path a conv took); XLA inlines it
def _conv3x3_up2_winograd(x: jax.Array, g: jax.Array, my: tuple, mx: tuple) -> jax.Array:
    """The transposed 3x3 conv (kernel g, stride 2) followed by the FIR of `my` / `mx` (`_up2_phase_matrix`), as
    one F(4x4,3x3) conv to the 4 phases (`_conv3x3_winograd`: Winograd input gradient; the weight gradient
    reaches g through the phase kernel by autodiff)."""
    return _phase_interleave(_conv3x3_winograd(x, _up2_phase_kernel(g, my, mx)))


def _winograd_up2_plan(x: jax.Array, w: jax.Array, f: np.ndarray | None, pads: tuple[int, int, int, int],
                       flip_filter: bool) -> tuple[tuple, tuple] | None:
    """The phase matrices (rows, columns) when the up-sampling conv has the form above and Winograd pays
    (`_winograd_on`, in-channels >= WINOGRAD_MIN_UP_CIN, input maps >= WINOGRAD_MIN_UP_SIZE); else None."""
    if (not _winograd_on(x) or w.shape[:2] != (3, 3) or f is None or pads != (1, 1, 1, 1)
            or w.shape[2] < WINOGRAD_MIN_UP_CIN or min(x.shape[1], x.shape[2]) < WINOGRAD_MIN_UP_SIZE):
        return None
    f = np.asarray(f, np.float64)
    sep = (f, f) if f.ndim == 1 else _separate(f)
    if sep is None or len(sep[0]) != 4 or len(sep[1]) != 4:
        return None
    fy, fx = (t if flip_filter else t[::-1] for t in sep)  # correlation taps
    fx = fx * 4.0  # upfirdn2d's gain up**2
    return _up2_phase_matrix(fy), _up2_phase_matrix(fx)


def conv2d(x: jax.Array, w: jax.Array, stride: int = 1, padding: int | Sequence[int] = 0,
           flip_weight: bool = True, winograd_ok: bool = False) -> jax.Array:
    """Plain conv (``flip_weight=True`` = correlation, as torch); padding ``p``, ``(py, px)`` or 4 values
    ``(px0, px1, py0, py1)`` as upfirdn2d. ``winograd_ok``: a 3x3 stride-1 conv may run as F(4x4,3x3) (see
    `WINOGRAD_MIN_CIN`)."""
    if not flip_weight:
        w = w[::-1, ::-1]
    if isinstance(padding, int | np.integer):
        pad = ((int(padding),) * 2,) * 2
    elif len(padding) == 2:
        pad = ((int(padding[0]),) * 2, (int(padding[1]),) * 2)
    else:
        px0, px1, py0, py1 = (int(p) for p in padding)
        pad = ((py0, py1), (px0, px1))
    if stride == 1 and w.shape[:2] == (1, 1) and pad == ((0, 0), (0, 0)):
        # as a dot: XLA:CPU's conv is ~4x slower for 1x1 kernels (toRGB at 1024 px, 32 -> 3: 104 vs 27 ms)
        return (x.reshape(-1, w.shape[2]) @ w.reshape(w.shape[2:])).reshape(*x.shape[:3], w.shape[3])
    if stride == 1:
        return _conv3x3_winograd(x, w) if winograd_ok and _winograd_applies(x, w, pad) else _conv(x, w, pad, 1)
    return lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=_DN)


def _phase_taps(k: int, p0: int, n_out: int, size: int, stride: int) -> list[tuple[list[int], int, int]]:
    """Per output phase r (outputs stride*i + r) of a correlation with k taps over the zero-stuffed axis (`size`
    samples, stride - 1 zeros after each, padding p0 in front): the taps t that meet real samples (x index
    i + (r + t - p0) / stride, consecutive), and the padding (front, back) of x that gives ceil(n_out / stride)
    outputs per phase."""
    n_phase = -(-n_out // stride)
    plan = []
    for r in range(stride):
        taps = [t for t in range(k) if (r + t - p0) % stride == 0]
        front = -((r + taps[0] - p0) // stride) if taps else 0
        plan.append((taps, front, n_phase - size - front + len(taps) - 1))
    return plan


def _conv_transpose_phases(x: jax.Array, w: jax.Array, padding: tuple[tuple[int, int], tuple[int, int]],
                           stride: int) -> jax.Array:
    """`_conv(x, w, padding, dilation=stride)` as stride**2 stride-1 convs of x, one per output phase with the
    taps that meet stuffed samples, then an interleave: the same products without the zeros. XLA:CPU runs an
    input-dilated conv outside its fast conv path (FFHQ 1024's 512 -> 1024 px up-sampling conv: 387 ms per
    step in the profile)."""
    b, h, wd, _ = x.shape
    kh, kw = w.shape[:2]
    (p0, p1), (q0, q1) = padding
    n_h = stride * (h - 1) + 1 + p0 + p1 - kh + 1
    n_w = stride * (wd - 1) + 1 + q0 + q1 - kw + 1
    rows, cols = _phase_taps(kh, p0, n_h, h, stride), _phase_taps(kw, q0, n_w, wd, stride)
    phases = []
    for ty, fy, by in rows:
        for tx, fx, bx in cols:
            if not ty or not tx:  # no tap meets a real sample: zeros
                phases.append(jnp.zeros((b, -(-n_h // stride), -(-n_w // stride), w.shape[3]), x.dtype))
                continue
            xp = _pad_axis(_pad_axis(x, 1, min(fy, 0), min(by, 0)), 2, min(fx, 0), min(bx, 0))  # crops only
            k = w[np.asarray(ty)][:, np.asarray(tx)]
            phases.append(_conv(xp, k, ((max(fy, 0), max(by, 0)), (max(fx, 0), max(bx, 0))), 1))
    return _phase_interleave(jnp.concatenate(phases, axis=3), stride)[:, :n_h, :n_w]


def conv_transpose2d(x: jax.Array, w: jax.Array, stride: int, padding: Sequence[int] = (0, 0),
                     flip_weight: bool = True) -> jax.Array:
    """torch ``conv_transpose2d`` with our HWIO weight (I = input channels of the transposed conv); on CPU as one
    stride-1 conv per output phase (`_conv_transpose_phases`), elsewhere as a conv of the zero-stuffed input."""
    kh, kw = w.shape[:2]
    if flip_weight:  # conv_transpose with the stored weight == correlation with the flipped weight
        w = w[::-1, ::-1]
    py, px = padding
    pad = ((kh - 1 - py, kh - 1 - py), (kw - 1 - px, kw - 1 - px))
    if stride > 1 and jax.default_backend() == "cpu":
        return _conv_transpose_phases(x, w, pad, stride)
    return _conv(x, w, pad, stride)


def conv2d_resample(
    x: jax.Array,
    w: jax.Array,
    f: np.ndarray | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    flip_weight: bool = True,
    flip_filter: bool = False,
    winograd_ok: bool = False,
) -> jax.Array:
    """Conv with optional up/downsampling, the official ``conv2d_resample`` paths (padding once); ``winograd_ok``
    as `conv2d`."""
    kh, kw = w.shape[:2]
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
        py0 += (fh + up - 1) // 2
        py1 += (fh - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
        py0 += (fh - down + 1) // 2
        py1 += (fh - down) // 2

    if kw == 1 and kh == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return conv2d(x, w, flip_weight=flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:
        x = conv2d(x, w, flip_weight=flip_weight)
        return upfirdn2d(x, f, up=up, padding=[px0, px1, py0, py1], gain=up**2, flip_filter=flip_filter)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
        return conv2d(x, w, stride=down, flip_weight=flip_weight)
    if up > 1:
        px0 -= kw - 1
        px1 -= kw - up
        py0 -= kh - 1
        py1 -= kh - up
        pxt = max(min(-px0, -px1), 0)
        pyt = max(min(-py0, -py1), 0)
        plan = (_winograd_up2_plan(x, w, f, (px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), flip_filter)
                if winograd_ok and up == 2 and down == 1 else None)
        if plan is not None:
            return _conv3x3_up2_winograd(x, w[::-1, ::-1] if flip_weight else w, *plan)
        x = conv_transpose2d(x, w, stride=up, padding=(pyt, pxt), flip_weight=not flip_weight)
        x = upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt], gain=up**2,
                      flip_filter=flip_filter)
        if down > 1:
            x = upfirdn2d(x, f, down=down, flip_filter=flip_filter)
        return x
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return conv2d(x, w, padding=(py0, px0), flip_weight=flip_weight, winograd_ok=winograd_ok)
    x = upfirdn2d(x, None, padding=[px0, px1, py0, py1], flip_filter=flip_filter)
    return conv2d(x, w, flip_weight=flip_weight)


def demodulation_coefficients(w: jax.Array, styles: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``rsqrt(sum_{i,kh,kw} (w[.., i, o] * s[b, i])^2 + eps)`` as ``s^2 @ sum_k w^2``: ``[B, O]``."""
    w_sq = axis_sum(jnp.square(w).reshape(-1, *w.shape[2:]), 0)  # [I, O]
    return lax.rsqrt(jnp.square(styles) @ w_sq + eps)


def modulated_conv2d(
    x: jax.Array,
    weight: jax.Array,
    styles: jax.Array,
    *,
    noise: jax.Array | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    resample_filter: np.ndarray | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    flip_filter: bool = False,
) -> jax.Array:
    """StyleGAN2 modulated conv: ``conv(x * s, w) * dcoefs + noise``.

    Equal to the official per-sample weights ``w * s * dcoefs`` because modulation scales input
    channels and demodulation scales output channels, both of which commute with the conv. The conv's weight is
    shared by the batch, so stride-1 3x3 convs may run as Winograd (`WINOGRAD_MIN_CIN`).
    """
    x = x * styles[:, None, None, :].astype(x.dtype)
    x = conv2d_resample(x, weight, f=resample_filter, up=up, down=down, padding=padding,
                        flip_weight=flip_weight, flip_filter=flip_filter, winograd_ok=True)
    if demodulate:
        x = x * demodulation_coefficients(weight, styles)[:, None, None, :]
    if noise is not None:
        x = x + noise
    return x


# ---------------------------------------------------------------------------------------------
# filtered_lrelu (StyleGAN3; appended by the SG3 developer)


def _polyphase_up_axis(x: jax.Array, axis: int, taps: np.ndarray, up: int, p0: int, p1: int) -> jax.Array:
    """Zero-stuff by ``up``, pad/crop by (p0, p1), correlate with ``taps`` along one axis, without the
    zero-stuffed signal: output phase r only meets taps ``k0(r) + up*t``, a short correlation of the
    input with one polyphase component; the ``up`` phase outputs are then interleaved."""
    n, k = x.shape[axis], len(taps)
    n_out = n * up + p0 + p1 - k + 1
    if n_out <= 0:
        raise ValueError(f"filtered_lrelu: {k} taps do not fit {n} samples x{up} padded by {p0},{p1}")
    q = -(-n_out // up)  # outputs per phase (the last phases may overshoot; sliced off below)
    phases = []
    for r in range(up):
        k0 = (p0 - r) % up
        phases.append((taps[k0::up], (r + k0 - p0) // up))  # out[up*i + r] = sum_t sub[t] * x[i + c + t]
    lo = min(c for _, c in phases)
    hi = max(c + len(sub) - 1 for sub, c in phases) + q - 1
    pad_lo, pad_hi = max(-lo, 0), max(hi - (n - 1), 0)
    if pad_lo or pad_hi:  # samples outside the input are zeros
        cfg = [(0, 0, 0)] * x.ndim
        cfg[axis] = (pad_lo, pad_hi, 0)
        x = lax.pad(x, jnp.zeros((), x.dtype), cfg)
    outs = []
    for sub, c in phases:
        y = None
        for t, w in enumerate(sub):
            if w == 0:
                continue
            term = lax.slice_in_dim(x, pad_lo + c + t, pad_lo + c + t + q, axis=axis) * np.float32(w)
            y = term if y is None else y + term
        if y is None:
            shape = list(x.shape)
            shape[axis] = q
            y = jnp.zeros(shape, x.dtype)
        outs.append(y)
    if up == 1:
        y = outs[0]
    else:
        y = jnp.stack(outs, axis=axis + 1)
        y = y.reshape(y.shape[:axis] + (q * up,) + y.shape[axis + 2:])
    return lax.slice_in_dim(y, 0, n_out, axis=axis)


def _down_plan(fd: np.ndarray | None, flip_filter: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Downsampling filter as ``sum_j (H taps h_j) x (W taps w_j)``: one term for a separable (or no)
    filter; one per filter column for a 2-D filter (with the mirrored column folded in when the filter is
    symmetric in W: ``w_j`` then has two unit taps). Taps are flipped for convolution."""
    if fd is None:
        return [np.ones(1)], [np.ones(1)]
    fd = np.asarray(fd, np.float32)
    sep = (fd.astype(np.float64),) * 2 if fd.ndim == 1 else _separate(fd)
    if sep is not None:
        return [t if flip_filter else t[::-1] for t in sep[:1]], [t if flip_filter else t[::-1] for t in sep[1:]]
    g = (fd if flip_filter else fd[::-1, ::-1]).astype(np.float64)
    kw = g.shape[1]
    fold_w = bool(np.array_equal(g, g[:, ::-1]))
    h_taps, w_taps = [], []
    for t in range(-(-kw // 2) if fold_w else kw):
        sel = np.zeros(kw)
        sel[[t, kw - 1 - t] if fold_w else [t]] = 1.0
        h_taps.append(g[:, t])
        w_taps.append(sel)
    return h_taps, w_taps


def _filtered_lrelu_rows(x: jax.Array, fu: tuple[np.ndarray, np.ndarray], h_taps: list[np.ndarray],
                         up: int, down: int, padding: tuple[int, int, int, int], gain: float, slope: float,
                         clamp: float | None) -> jax.Array:
    """Steps 2-7 of :func:`filtered_lrelu` and the H passes of step 8-9 on a strip of rows (bias added,
    filters flipped and scaled): ``[J, B, rows, W_tmp, C]``, one slice per term of the down filter."""
    px0, px1, py0, py1 = padding
    x = _polyphase_up_axis(x, 2, fu[1], up, px0, px1)
    x = _polyphase_up_axis(x, 1, fu[0], up, py0, py1)
    if slope != 1:
        x = jnp.where(x >= 0, x, x * np.float32(slope))
    if gain != 1:
        x = x * np.float32(gain)
    if clamp is not None and clamp >= 0:
        x = jnp.clip(x, -clamp, clamp)
    return jnp.stack([_fir_axis(x, 1, taps, down, fold=True) for taps in h_taps])


def filtered_lrelu(
    x: jax.Array,
    fu: np.ndarray | None = None,
    fd: np.ndarray | None = None,
    b: jax.Array | None = None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = float(np.sqrt(2)),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    strip_bytes: int = 64 << 20,
) -> jax.Array:
    """Filtered leaky ReLU of NHWC images: the maths of the official ``filtered_lrelu`` (its ref path).

    1. add the per-channel bias ``b``; 2. upsample by ``up`` (zero-stuffing); 3. pad/crop by ``padding``
    ``[x0, x1, y0, y1]`` (w.r.t. the upsampled image); 4. convolve with ``fu`` (gain ``up**2``);
    5. multiply by ``gain``; 6. leaky ReLU with ``slope``; 7. clamp to ``[-clamp, clamp]``;
    8. convolve with ``fd``; 9. keep every ``down``-th sample.

    ``fu`` / ``fd`` are static numpy filters: 1-D (separable), 2-D or None (identity). Steps 2-4 run
    polyphase (no zero-stuffed intermediate), 8-9 compute only the kept samples, all as 1-D passes of
    shifted adds: a 2-D ``fd`` (StyleGAN3-R's radial filters) as one H pass per filter column (mirrored
    columns and rows folded) followed by one W pass.

    Structure: ``lax.map`` over strips of output rows (at least two; more when a strip's upsampled rows
    would exceed ``strip_bytes``), each running steps 2-8 (H) and then, in an inner ``lax.map`` over two
    column halves, the W pass. The loop boundaries make XLA materialise each pass's output: fused, the
    W pass would recompute the H pass for every one of its taps (3x slower on CPU). Strips also bound
    the memory of 1024 px layers and are rematerialised in the backward pass.
    """
    px0, px1, py0, py1 = _parse_padding(padding)
    if b is not None:
        x = x + b.astype(x.dtype)
    if fu is None and fd is None and up == 1 and down == 1:  # ToRGB: bias, clamp (and padding) only
        x = _pad_axis(_pad_axis(x, 2, px0, px1), 1, py0, py1)
        x = jnp.where(x >= 0, x, x * np.float32(slope)) if slope != 1 else x
        x = x * np.float32(gain) if gain != 1 else x
        return jnp.clip(x, -clamp, clamp) if clamp is not None and clamp >= 0 else x

    # Upsampling filter as (taps along H, taps along W), flipped for convolution, gain included.
    if fu is not None and np.ndim(fu) == 2 and _separate(np.asarray(fu, np.float32)) is None:
        # Non-separable upsampling filter (StyleGAN3 has none): the generic upfirdn2d, then no upsampling.
        x = upfirdn2d(x, np.asarray(fu, np.float32), up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                      flip_filter=flip_filter)
        fu, up, px0, px1, py0, py1 = None, 1, 0, 0, 0, 0
    if fu is None:
        fu_sep = (np.ones(1), np.ones(1))
    else:
        fu = np.asarray(fu, np.float32)
        fu_sep = (fu.astype(np.float64),) * 2 if fu.ndim == 1 else _separate(fu)
    fu_taps = tuple((t if flip_filter else t[::-1]) * up for t in fu_sep)
    h_taps, w_taps = _down_plan(fd, flip_filter)
    fd_h, fd_w = len(h_taps[0]), len(w_taps[0])

    batch, h_in, w_in, channels = x.shape
    k_up = len(fu_taps[0])
    h_tmp = h_in * up + py0 + py1 - k_up + 1
    w_tmp = w_in * up + px0 + px1 - len(fu_taps[1]) + 1
    h_out = (h_tmp - fd_h) // down + 1
    w_out = (w_tmp - fd_w) // down + 1
    if h_out <= 0 or w_out <= 0:
        raise ValueError(f"filtered_lrelu: empty output for input {h_in}x{w_in}, up {up}, padding {padding}")

    # Row strips: `rows * down` a multiple of `up`, so every strip has the same polyphase alignment and
    # input window (one compiled body).
    row_bytes = batch * w_tmp * channels * x.dtype.itemsize * (down + len(h_taps))  # per output row
    half = -(-h_out // (2 * up)) * up                          # two strips, a multiple of up
    rows = max(min(strip_bytes // row_bytes // up * up, half), up)
    n_strips = -(-h_out // rows)
    tmp_rows = (rows - 1) * down + fd_h                        # upsampled rows feeding one strip
    step = rows * down // up                                   # input rows between strips
    j0 = -(py0 // up)                                          # ceil(-py0 / up): first input row of strip 0
    n_in = (tmp_rows - 1 - py0 + k_up - 1) // up - j0 + 1      # input rows feeding one strip
    local_p0 = py0 + up * j0
    local_p1 = tmp_rows - n_in * up - local_p0 + k_up - 1
    pad_lo = max(-j0, 0)
    pad_hi = max(j0 + (n_strips - 1) * step + n_in - h_in, 0)
    x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (pad_lo, pad_hi, 0), (0, 0, 0), (0, 0, 0)])

    # Column halves of the W pass.
    n_cols = 2 if w_out > 1 else 1
    cols = -(-w_out // n_cols)
    col_in = (cols - 1) * down + fd_w

    def w_pass(v: jax.Array) -> jax.Array:  # [J, B, rows, W_tmp, C] -> [B, rows, W_out, C]
        v = lax.pad(v, jnp.zeros((), v.dtype),
                    [(0, 0, 0)] * 3 + [(0, max((n_cols - 1) * cols * down + col_in - w_tmp, 0), 0), (0, 0, 0)])

        def half_cols(k: jax.Array) -> jax.Array:
            vk = lax.dynamic_slice_in_dim(v, k * cols * down, col_in, axis=3)
            y = None
            for j, taps in enumerate(w_taps):
                term = _fir_axis(vk[j], 2, taps, down, fold=True)
                y = term if y is None else y + term
            return y

        y = lax.map(half_cols, jnp.arange(n_cols))            # [2, B, rows, cols, C]
        return jnp.moveaxis(y, 0, 2).reshape(y.shape[1:3] + (n_cols * cols, channels))[:, :, :w_out]

    @jax.checkpoint
    def strip(i: jax.Array) -> jax.Array:
        xs = lax.dynamic_slice_in_dim(x, j0 + pad_lo + i * step, n_in, axis=1)
        v = _filtered_lrelu_rows(xs, fu_taps, h_taps, up, down, (px0, px1, local_p0, local_p1), gain, slope,
                                 clamp)
        return w_pass(v)

    y = lax.map(strip, jnp.arange(n_strips))                   # [n, B, rows, W_out, C]
    return jnp.moveaxis(y, 0, 1).reshape((batch, n_strips * rows) + y.shape[3:])[:, :h_out]
