"""Latent and noise regularisers, one value per item.

`noise_regularization` is the official stylegan2-ada-pytorch projector's: for every noise map, the squared
mean autocorrelation at a one-pixel shift (circular, as `torch.roll`) along x and along y, repeated on
successive 2x2 average-pooled versions of the map until it is 8x8 or smaller; summed over all maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import jax
import jax.numpy as jnp

__all__ = ["noise_regularization", "w_avg_distance", "z_gaussian_prior", "z_norm_prior"]


def _noise_reg_one(noise: jax.Array) -> jax.Array:
    # noise: [B, H, W] -> [B]
    reg = jnp.zeros(noise.shape[:1], noise.dtype)
    while True:
        reg = reg + jnp.mean(noise * jnp.roll(noise, 1, axis=2), axis=(1, 2)) ** 2
        reg = reg + jnp.mean(noise * jnp.roll(noise, 1, axis=1), axis=(1, 2)) ** 2
        if noise.shape[1] <= 8:
            break
        b, h, w = noise.shape
        noise = noise[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2).mean(axis=(2, 4))
    return reg


def noise_regularization(noises: Mapping[str, jax.Array] | Iterable[jax.Array]) -> jax.Array:
    """Official projector noise regulariser.

    noises: maps (or a dict of maps) each [H, W] (returns a scalar) or [B, H, W] (returns [B]).
    """
    maps = list(noises.values()) if isinstance(noises, Mapping) else list(noises)
    if not maps:
        return jnp.zeros(())
    batched = maps[0].ndim == 3
    total = 0.0
    for m in maps:
        m3 = m if m.ndim == 3 else m[None]
        total = total + _noise_reg_one(m3)
    return total if batched else total[0]


def w_avg_distance(w: jax.Array, w_avg: jax.Array) -> jax.Array:
    """Squared Euclidean distance of w to w_avg per item: w [B, ..., w_dim], w_avg broadcastable -> [B]."""
    d = jnp.square(w - w_avg)
    return jnp.sum(d, axis=tuple(range(1, d.ndim)))


def z_gaussian_prior(z: jax.Array) -> jax.Array:
    """Standard-normal negative log-density per dimension (up to a constant): 0.5 * mean(z^2) -> [B]."""
    return 0.5 * jnp.mean(jnp.square(z), axis=tuple(range(1, z.ndim)))


def z_norm_prior(z: jax.Array) -> jax.Array:
    """Chi prior: (|z| - sqrt(dim))^2 per item, pulling z to the shell where N(0, I) samples live -> [B]."""
    flat = z.reshape(z.shape[0], -1)
    dim = flat.shape[1]
    sq = jnp.sum(jnp.square(flat), axis=1)
    # sqrt with a finite gradient at z = 0.
    norm = jnp.sqrt(jnp.where(sq > 0, sq, 1.0)) * (sq > 0)
    return jnp.square(norm - jnp.sqrt(jnp.asarray(dim, z.dtype)))
