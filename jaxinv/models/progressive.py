"""What the progressive-growing TF generators share (PGGAN `G_paper`, StyleGAN `G_style`): reading their TF
variables with the one converter helper (`jaxinv.state_dict.fill`, plus the `lod` check), the equalised-lr scale
folded in at load time, modules whose children are TF variable scopes ('4x4', '8x8.Conv0_up', 'ToRGB_lod0'),
the ToRGB layer, the 'SAME' conv, nearest 2x upscaling and the lod blend of the ToRGB levels."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv.errors import CheckpointError
from jaxinv.models.nn import param
from jaxinv.state_dict import Entry, as_is, fill


def fill_tf(table: Iterable[Entry], tf: Mapping[str, Any], where: str, what: str) -> dict:
    """`fill` for a TF variable table: every variable present with its shape, nothing else (one error line naming
    the problem); the `lod` variables (`Entry(..., path=None)`) must be 0: a snapshot taken while growing is not
    what the engine renders."""
    table = list(table)
    params = fill(table, tf, where, what=f"the {what} variable set")
    for name in (e.name for e in table if e.name == "lod" or e.name.endswith("/lod")):
        if float(np.asarray(tf[name])) != 0.0:
            raise CheckpointError(f"{where}: {name} = {float(np.asarray(tf[name]))}: a snapshot taken while "
                                  "growing (the engine renders the final resolution, lod 0)")
    return params


def scaled(scale: float, then: Callable[[np.ndarray], np.ndarray] = as_is) -> Callable[[Any], np.ndarray]:
    """An `Entry.fix`: the variable times `scale` (equalised-lr gain / sqrt(fan_in), lrmul), in float64, then
    the layout change `then`."""
    return lambda a: then(np.asarray(a, np.float64) * scale)


def divided(divisor: float, then: Callable[[np.ndarray], np.ndarray] = as_is) -> Callable[[Any], np.ndarray]:
    """An `Entry.fix`: the variable divided by `divisor` in float64 (StyleGAN's 1 / sqrt(fan_in) scales), then
    `then`."""
    return lambda a: then(np.asarray(a, np.float64) / divisor)


class Scopes(nnx.Module):
    """A module whose children are TF variable scopes with names that are not identifiers ('4x4', '8x8.Conv0_up'):
    `self.add(name, module)`, `self[name]`."""

    def add(self, name: str, module: nnx.Module) -> None:
        setattr(self, name, module)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


_DN = ("NHWC", "HWIO", "NHWC")


def conv2d_same(x: jax.Array, w: jax.Array) -> jax.Array:
    """The TF graphs' stride-1 'SAME' conv2d, NHWC / HWIO."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DN)


class ToRGB(nnx.Module):
    """A ToRGB_lod{L} layer: 1x1 conv (`weight` [C, img_channels], wscale folded in) + `bias` [img_channels],
    linear."""

    def __init__(self, channels: int, img_channels: int) -> None:
        self.weight = param(channels, img_channels)
        self.bias = param(img_channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, R, R, C] -> [B, R, R, img_channels]."""
        return jnp.einsum("bhwc,co->bhwo", x, self.weight[...]) + self.bias[...]


def upscale2d(x: jax.Array, factor: int = 2) -> jax.Array:
    """Nearest-neighbour upscaling of [B, H, W, C]."""
    return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2) if factor > 1 else x


def grow(img: jax.Array, torgb: Callable[[], jax.Array], lod: float, level: int) -> jax.Array:
    """The official `lerp_clip(ToRGB(x), upscale(img), lod - level)` with a static weight; `torgb` is called
    only when its level shows (lod 0: only the last level's ToRGB runs)."""
    t = min(max(lod - level, 0.0), 1.0)
    up = upscale2d(img)
    if t == 1.0:
        return up
    rgb = torgb()
    return rgb if t == 0.0 else rgb + (up - rgb) * t
