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
           "untile_output", "conv3x3"]

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


def untile_output(prod: jax.Array, geometry: tuple[int, ...], alg: Algorithm) -> jax.Array:
    """Output transform ``[n*n, tiles, O]`` -> NHWC ``[B, H_out, W_out, O]``."""
    b, th, tw, h_out, w_out = geometry
    m, n = alg.m, alg.n
    prod = prod.reshape(n, n, b, th, tw, -1)
    half = [_combine([prod[p] for p in range(n)], row) for row in alg.AT]  # m x [n, b, th, tw, O]
    out = jnp.stack([jnp.stack([_combine([hi[q] for q in range(n)], col) for col in alg.AT], 3) for hi in half], 2)
    return out.reshape(b, th * m, tw * m, -1)[:, :h_out, :w_out]


def conv3x3(x: jax.Array, u: jax.Array, alg: Algorithm) -> jax.Array:
    """``Conv2d(k=3, stride=alg.stride, padding=1)`` of NHWC ``x`` with a transformed weight ``u`` ``[n*n, I, O]``."""
    v, geometry = tile_input(x, alg)
    return untile_output(multiply(v, u), geometry, alg)
