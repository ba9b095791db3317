"""Pixel losses, one value per item (reduced over H, W, C; batch axis kept)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["l2_loss", "l1_loss", "mse", "mae"]


def _per_item_mean(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def l2_loss(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean squared error per item: [B, H, W, C] x [B or 1, H, W, C] -> [B]."""
    return _per_item_mean(jnp.square(a - b))


def l1_loss(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute error per item: [B, H, W, C] x [B or 1, H, W, C] -> [B]."""
    return _per_item_mean(jnp.abs(a - b))


mse = l2_loss
mae = l1_loss
