"""Image-reconstruction metrics, one value per item. Images NHWC float in [0, 1] unless stated.

PSNR and SSIM use dm-pix (SSIM: Gaussian window 11, sigma 1.5, k1 0.01, k2 0.03, 'valid' filtering,
mean over the map and the channels, as tf.image.ssim / Wang et al. 2004).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dm_pix
import jax
import jax.numpy as jnp

from jaxinv.losses import identity as _identity
from jaxinv.losses import lpips as _lpips

__all__ = ["psnr", "ssim", "psnr_ssim_signed", "lpips", "id_similarity"]


def psnr(a: jax.Array, b: jax.Array, max_val: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio in dB per item ([B, H, W, C] -> [B]); +inf for identical images."""
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    # dm_pix.psnr assumes a dynamic range of 1.
    return dm_pix.psnr(a / max_val, b / max_val)


def ssim(a: jax.Array, b: jax.Array, max_val: float = 1.0) -> jax.Array:
    """Mean structural similarity per item ([B, H, W, C] -> [B]); H and W must be >= 11."""
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    return dm_pix.ssim(a, b, max_val=max_val, filter_size=11, filter_sigma=1.5, k1=0.01, k2=0.03)


def psnr_ssim_signed(a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(PSNR, SSIM) per item of images in [-1, 1] (generator range), clipped to [0, 1] first."""
    a = jnp.clip((jnp.asarray(a, jnp.float32) + 1) / 2, 0, 1)
    b = jnp.clip((jnp.asarray(b, jnp.float32) + 1) / 2, 0, 1)
    return psnr(a, b), ssim(a, b)


def lpips(params: Mapping[str, Any], a: jax.Array, b: jax.Array) -> jax.Array:
    """LPIPS-VGG16 (v0.1, projector recipe: images taller than 256 area-resized to 256) per item,
    images in [0, 1]. `params` from `jaxinv.losses.lpips.load_lpips` / `procedural_lpips`."""
    return _lpips.lpips(params, a, b, drange=(0.0, 1.0), max_size=256)


def id_similarity(params: Mapping[str, Any], a: jax.Array, b: jax.Array) -> jax.Array:
    """Cosine similarity of face-ID descriptors per item, images in [0, 1] (params from
    `jaxinv.losses.identity.load_face_id`)."""
    da = _identity.face_descriptor_from_image(params, a, drange=(0.0, 1.0))
    db = _identity.face_descriptor_from_image(params, b, drange=(0.0, 1.0))
    return _identity.cosine_similarity(da, db)
