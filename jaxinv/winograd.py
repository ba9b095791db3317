"""Fast 3x3 convolutions (Winograd / Toom-Cook bilinear algorithms) for CPU inference.

A 1-D algorithm computes ``m`` outputs of a 3-tap convolution from a window of inputs with ``n`` products:
``y = AT @ ((G @ g) * (BT @ d))``. Nested over rows and columns, a 2-D tile of ``m x m`` outputs costs
``n * n`` channel-mixing products instead of ``9 * m * m``; all tiles of one product position form one
GEMM, so a conv becomes ``n * n`` matmuls ``[tiles, C_in] @ [C_in, C_out]`` between two cheap transforms.

* ``F43``: F(4x4, 3x3), stride 1 (Lavin & Gray 2016): 36 products for 16 outputs (4x fewer).
* ``S2F2``: stride 2 as an even phase (1 tap, direct) plus an odd phase (taps 0 and 2) computed with
  F(2, 2): 5 products for 2 outputs per axis, 25 for a 2x2 tile (1.44x fewer). Coefficients are 0/+-1.
* ``S2F4``: the same with F(4, 2) for the odd phase: 9 products for 4 outputs per axis, 81 for a 4x4 tile
  (1.78x fewer); its weights are 9x the plain ones, so `transform_weight_jax` can make them per call.

Weights are transformed once at load time (``transform_weight``); the transformed weight of a conv is
``[n * n, C_in, C_out]``. Zero padding 1 as ``Conv2d(..., 3, stride, padding=1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["Algorithm", "F43", "S2F2", "S2F4", "transform_weight", "transform_weight_jax", "tile_input", "multiply",
           "untile_output", "conv3x3", "conv3x3_f43", "conv3x3_reference"]

_HI = lax.Precision.HIGHEST


@dataclass(frozen=True)
class Algorithm:
    name: str
    AT: tuple[tuple[float, ...], ...]  # [m, n] output transform
    G: tuple[tuple[float, ...], ...]  # [n, 3] weight transform
    BT: tuple[tuple[float, ...], ...]  # [n, window] input transform
    stride: int

    @property
    def m(self) -> int:  # outputs per tile along an axis
        return len(self.AT)

    @property
    def n(self) -> int:  # products per axis
        return len(self.G)

    @property
    def window(self) -> int:  # inputs per tile along an axis
        return len(self.BT[0])

    @property
    def step(self) -> int:  # input offset between consecutive tiles
        return self.stride * self.m


F43 = Algorithm(
    "F(4x4,3x3)",
    AT=((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    G=((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
       (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
    BT=((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0),
        (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
    stride=1,
)

# Window d = x[4t-1 .. 4t+3] for outputs y[2t], y[2t+1]. Products: d1*g1, d3*g1 (even phase);
# (d0-d2)*g0, d2*(g0+g2), (d4-d2)*g2 (odd phase, F(2,2)). y0 = p0 + p2 + p3, y1 = p1 + p3 + p4.
S2F2 = Algorithm(
    "S2F(2x2,3x3)",
    AT=((1, 0, 1, 1, 0), (0, 1, 0, 1, 1)),
    G=((0, 1, 0), (0, 1, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)),
    BT=((0, 1, 0, 0, 0), (0, 0, 0, 1, 0), (1, 0, -1, 0, 0), (0, 0, 1, 0, 0), (0, 0, -1, 0, 1)),
    stride=2,
)


# Window x[8t-1 .. 8t+7] for outputs y[4t .. 4t+3]: products 0-3 = even phase (x[8t+2i] * g1); 4-8 = odd
# phase x[8t+2j-1] (j = 0..4) with taps (g0, g2) by F(4, 2) at points 0, 1, -1, 2 and infinity.
S2F4 = Algorithm(
    "S2F(4x4,3x3)",
    AT=((1, 0, 0, 0, 1, 1, 1, 1, 0), (0, 1, 0, 0, 0, 1, -1, 2, 0), (0, 0, 1, 0, 0, 1, 1, 4, 0),
        (0, 0, 0, 1, 0, 1, -1, 8, 1)),
    G=((0, 1, 0), (0, 1, 0), (0, 1, 0), (0, 1, 0), (1 / 2, 0, 0), (1 / 2, 0, 1 / 2), (1 / 6, 0, -1 / 6),
       (1 / 6, 0, 1 / 3), (0, 0, 1)),
    BT=((0, 1, 0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 1, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 1, 0, 0, 0),
        (0, 0, 0, 0, 0, 0, 0, 1, 0), (2, 0, -1, 0, -2, 0, 1, 0, 0), (0, 0, 2, 0, 1, 0, -1, 0, 0),
        (0, 0, -2, 0, 3, 0, -1, 0, 0), (0, 0, -1, 0, 0, 0, 1, 0, 0), (0, 0, 2, 0, -1, 0, -2, 0, 1)),
    stride=2,
)


def transform_weight(w_hwio: np.ndarray, alg: Algorithm) -> np.ndarray:
    """HWIO ``[3, 3, I, O]`` -> ``[n * n, I, O]`` float32 (``G g G^T`` per in/out pair; computed in float64 when
    the weights come as float64, e.g. after BN folding)."""
    w = np.asarray(w_hwio)
    dtype = np.float64 if w.dtype == np.float64 else np.float32
    g = np.asarray(alg.G, dtype)
    kh, kw, i, o = w.shape
    rows = (g @ np.asarray(w, dtype).reshape(kh, kw * i * o)).reshape(alg.n, kw, i * o)  # [p, kw, IO]
    u = np.matmul(g[None], rows)  # [p, q, IO]: two small matmuls instead of a generic einsum
    return np.ascontiguousarray(u.reshape(alg.n * alg.n, i, o), dtype=np.float32)


def transform_weight_jax(w_hwio: jax.Array, alg: Algorithm) -> jax.Array:
    """`transform_weight` inside a jitted forward (float32; one fused pass over sparse ``G`` rows)."""
    rows = [_combine([w_hwio[h] for h in range(3)], g) for g in alg.G]  # n x [3(kw), I, O]
    return jnp.stack([_combine([r[k] for k in range(3)], g) for r in rows for g in alg.G], 0)


def _combine(parts: list[jax.Array], coeffs: tuple[float, ...]) -> jax.Array:
    acc = None
    for c, p in zip(coeffs, parts, strict=True):
        if c == 0:
            continue
        t = p if c == 1 else (-p if c == -1 else p * np.float32(c))
        acc = t if acc is None else acc + t
    return acc


def _tiles(x: jax.Array, alg: Algorithm, n_tiles: int, axis: int) -> list[jax.Array]:
    """Input transform along one axis: ``n`` arrays, the axis now indexing tiles."""
    taps = []
    for k in range(alg.window):
        idx = [slice(None)] * x.ndim
        idx[axis] = slice(k, k + alg.step * (n_tiles - 1) + 1, alg.step)
        taps.append(x[tuple(idx)])
    return [_combine(taps, row) for row in alg.BT]


def tile_input(x: jax.Array, alg: Algorithm) -> tuple[jax.Array, tuple[int, ...]]:
    """Input transform of NHWC ``x``: ``[n*n, tiles, C]`` and the output geometry for `untile_output`."""
    b, h, w, c = x.shape
    s, m, n = alg.stride, alg.m, alg.n
    h_out, w_out = (h - 1) // s + 1, (w - 1) // s + 1
    th, tw = -(-h_out // m), -(-w_out // m)
    # Pad 1 on top/left (the conv's padding) and enough zeros at the bottom/right to fill whole tiles.
    xp = jnp.pad(x, ((0, 0), (1, s * (th * m - 1) + 2 - h), (1, s * (tw * m - 1) + 2 - w), (0, 0)))
    if alg.stride == 1:
        # Overlapping windows (F43: 6 wide, step 4): materialise the row transform once (the barrier keeps
        # XLA from re-deriving it inside each of the n*n outputs), then transform the columns.
        rows = lax.optimization_barrier(jnp.stack(_tiles(xp, alg, th, 1), 0))  # [n, b, th, Wp, c]
        v = jnp.stack(_tiles(rows, alg, tw, 3), 1)  # [n(rows), n(cols), b, th, tw, c]
    else:
        rows = _tiles(xp, alg, th, 1)
        v = jnp.stack([t for r in rows for t in _tiles(r, alg, tw, 2)], 0)
    return v.reshape(n * n, b * th * tw, c), (b, th, tw, h_out, w_out)


def multiply(v: jax.Array, u: jax.Array) -> jax.Array:
    """One GEMM per product position: ``[n*n, tiles, I] @ [n*n, I, O]``."""
    return lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))), precision=_HI)


def _kron_at(alg: Algorithm) -> np.ndarray:
    at = np.asarray(alg.AT, np.float64)
    return np.kron(at, at).astype(np.float32)  # [m*m, n*n]; small integers, exact in float32


def untile_output(prod: jax.Array, geometry: tuple[int, ...], alg: Algorithm) -> jax.Array:
    """Output transform ``[n*n, tiles, O]`` -> NHWC ``[B, H_out, W_out, O]``."""
    b, th, tw, h_out, w_out = geometry
    m, n = alg.m, alg.n
    # One product with the [m*m, n*n] matrix (AT kron AT) reads prod once; the separable form (rows, then columns)
    # ran as m fusions that each read all of prod. Same step time, 25-35% less compile time (paper256 projector).
    y = lax.dot_general(_kron_at(alg), prod.reshape(n * n, -1), (((1,), (0,)), ((), ())), precision=_HI)
    y = y.reshape(m, m, b, th, tw, -1).transpose(2, 3, 0, 4, 1, 5)
    return y.reshape(b, th * m, tw * m, -1)[:, :h_out, :w_out]


def conv3x3(x: jax.Array, u: jax.Array, alg: Algorithm) -> jax.Array:
    """``Conv2d(k=3, stride=alg.stride, padding=1)`` of NHWC ``x`` with a transformed weight ``u`` ``[n*n, I, O]``."""
    v, geometry = tile_input(x, alg)
    return untile_output(multiply(v, u), geometry, alg)


def conv3x3_reference(x: jax.Array, w_hwio: jax.Array) -> jax.Array:
    """Slow oracle of `conv3x3_f43`: the direct ``Conv2d(k=3, stride=1, padding=1)`` with the HWIO weight."""
    return lax.conv_general_dilated(x, w_hwio.astype(x.dtype), (1, 1), ((1, 1), (1, 1)),
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HI)


@jax.custom_vjp
def conv3x3_f43(x: jax.Array, u: jax.Array) -> jax.Array:
    """F(4x4,3x3) conv (stride 1, pad 1) of NHWC ``x`` with ``u = transform_weight(w, F43)``, and an input
    gradient that is the transposed Winograd algorithm (same 36 products per 4x4 tile, GEMMs with ``u``
    transposed, so no second transformed weight is stored). No gradient flows to ``u`` (fixed weights)."""
    return conv3x3(x, u, F43)


def _f43_fwd(x, u):
    return conv3x3(x, u, F43), (x.shape, u)


def _overlap_add(parts: list[jax.Array], axis: int) -> jax.Array:
    """Transpose of reading overlapping windows (6 wide, step 4) along ``axis`` (which indexes tiles):
    ``parts[k]`` holds window position ``k`` of every tile; returns the summed signal, 4 * tiles + 2 long."""
    core = jnp.stack(parts[:4], axis + 1)  # window positions 0-3 of tile t land on 4t .. 4t+3
    tail = jnp.stack(parts[4:] + [jnp.zeros_like(parts[0])] * 2, axis + 1)  # positions 4, 5 on 4t+4, 4t+5
    shape = list(core.shape)
    shape[axis:axis + 2] = [shape[axis] * 4]
    core, tail = core.reshape(shape), tail.reshape(shape)
    pad = [(0, 0, 0)] * core.ndim
    pad[axis] = (0, 2, 0)
    core = lax.pad(core, np.array(0, core.dtype), pad)
    pad[axis] = (4, -2, 0)  # shift by one tile; the cut end holds the zeros stacked above
    return core + lax.pad(tail, np.array(0, tail.dtype), pad)


def _f43_bwd(res, dy):
    (b, h, w, c), u = res
    alg = F43
    m, n = alg.m, alg.n
    th, tw = -(-h // m), -(-w // m)
    # Transpose of the output transform: each 4x4 tile of dy -> 6x6 (A dy A^T); tiles do not overlap.
    dy = jnp.pad(dy, ((0, 0), (0, th * m - h), (0, tw * m - w), (0, 0))).reshape(b, th, m, tw, m, -1)
    dyt = dy.transpose(2, 4, 0, 1, 3, 5).reshape(m * m, -1)
    dm = lax.dot_general(_kron_at(alg), dyt, (((0,), (0,)), ((), ())), precision=_HI)  # [n*n, b*th*tw*O]
    dv = lax.dot_general(dm.reshape(n * n, b * th * tw, -1), u, (((2,), (2,)), ((0,), (0,))), precision=_HI)
    dv = dv.reshape(n, n, b, th, tw, c)
    # Transpose of the input transform (columns, then rows): window position k gets sum_q BT[q][k] * dv[q].
    bt_cols = [[bt[k] for bt in alg.BT] for k in range(alg.window)]
    dcols = _overlap_add([_combine([dv[:, q] for q in range(n)], bt_cols[k]) for k in range(alg.window)], 3)
    dcols = lax.optimization_barrier(dcols)  # [n, b, th, 4 tw + 2, c], as the forward materialises its rows
    dxp = _overlap_add([_combine([dcols[p] for p in range(n)], bt_cols[k]) for k in range(alg.window)], 1)
    return dxp[:, 1:1 + h, 1:1 + w], jnp.zeros_like(u)


conv3x3_f43.defvjp(_f43_fwd, _f43_bwd)
