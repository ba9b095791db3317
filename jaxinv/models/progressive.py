"""What the progressive-growing TF generators share (PGGAN `G_paper`, StyleGAN `G_style`): the variable check
of their TF tables, the 'SAME' conv, ToRGB, nearest 2x upscaling and the lod blend of the ToRGB levels."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.errors import CheckpointError


def check_variables(table: dict[str, tuple[int, ...]], tf: dict[str, np.ndarray], where: str, what: str) -> None:
    """Every variable of `table` present with its shape, nothing else; one line naming the problem."""
    missing, extra = sorted(set(table) - set(tf)), sorted(set(tf) - set(table))
    if missing or extra:
        raise CheckpointError(f"{where}: {what} variables do not match the config: missing {missing[:6]}, "
                              f"unexpected {extra[:6]}")
    for name, shape in table.items():
        if tuple(np.shape(tf[name])) != shape:
            raise CheckpointError(f"{where}: {name} has shape {tuple(np.shape(tf[name]))}, expected {shape}")
    for name in (n for n in table if n == "lod" or n.endswith("/lod")):
        if float(np.asarray(tf[name])) != 0.0:
            raise CheckpointError(f"{where}: {name} = {float(np.asarray(tf[name]))}: a snapshot taken while "
                                  "growing (the engine renders the final resolution, lod 0)")


_DN = ("NHWC", "HWIO", "NHWC")


def conv2d_same(x: jax.Array, w: jax.Array) -> jax.Array:
    """The TF graphs' stride-1 'SAME' conv2d, NHWC / HWIO."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DN)


def to_rgb(layer: dict, x: jax.Array) -> jax.Array:
    """A ToRGB_lod{L} layer: 1x1 conv (weight [C, img_channels], wscale folded in) + bias, linear."""
    return jnp.einsum("bhwc,co->bhwo", x, layer["weight"]) + layer["bias"]


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
