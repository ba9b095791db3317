"""LPIPS-VGG16 (v0.1) as the official stylegan2-ada-pytorch projector computes it.

The projector calls the NVlabs TorchScript `vgg16.pt` as `vgg16(img_0_255, resize_images=False,
return_lpips=True)`, which returns per image a flat feature vector f with ||f(a) - f(b)||^2 = LPIPS(a, b):
    x = img / 127.5 - 1                       (img in [0, 255])
    x = (x - shift) / scale                   shift (-.030, -.088, -.188), scale (.458, .448, .450)
    per tap t (relu1_2 .. relu5_3 of VGG16):  f_t = n_t * sqrt(w_t[c]) / sqrt(h_t * w_t)
        with n_t = f / (sqrt(sum_c f^2) + 1e-10) and w_t the LPIPS v0.1 linear head
and the projector resizes images taller than 256 to 256x256 with `F.interpolate(mode='area')` first.

So targets' features are computed once (`lpips_features`) and every step needs one forward of the
synthesised images plus `lpips_distance`. Features here are flattened per tap in NHWC order (the
official flattens NCHW); distances are identical.

Module tree (`LPIPS`, NNX; `lpips_features` / `nvlabs_vgg16_call` bind it to the params):
    vgg16.features.{i}.weight / .bias   the torchvision VGG16 trunk (`jaxinv.losses.vgg16.VGG16`)
    lin0 .. lin4                        head weights w_t [64], [128], [256], [512], [512]
Params: {"vgg16": <jaxinv.losses.vgg16 params>, "lin0": [64], "lin1": [128], "lin2": [256],
         "lin3": [512], "lin4": [512]}   (head weights w_t as 1-D float32 arrays; the official lpips package
stores them as `lin{k}.model.1.weight` [1, C, 1, 1], NVlabs `vgg16.pt` as `lpips{k}`).
On CPU `lpips_params` also gives the trunk's convs F(4x4,3x3) Winograd weights (`vgg16.winograd_params`),
transformed once here; the feature functions take ``direct=True`` to run the direct convs instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import ops
from jaxinv.errors import CheckpointError
from jaxinv.losses import vgg16 as _vgg
from jaxinv.models.nn import bind, const, param

__all__ = [
    "LPIPS_SHIFT",
    "LPIPS_SCALE",
    "area_resize",
    "load_lpips_heads",
    "lpips_heads_from_state_dict",
    "lpips_params",
    "Config",
    "LPIPS",
    "load_lpips",
    "procedural_lpips",
    "nvlabs_vgg16_call",
    "lpips_features",
    "lpips_distance",
    "lpips_distance_to",
    "lpips",
]

LPIPS_SHIFT: tuple[float, float, float] = (-0.030, -0.088, -0.188)
LPIPS_SCALE: tuple[float, float, float] = (0.458, 0.448, 0.450)
_EPS = 1e-10


# ----------------------------------------------------------------------------------------------------
# Resizing


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    # torch 'area' == adaptive_avg_pool: output i averages input [floor(i*n/m), ceil((i+1)*n/m)).
    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        a = (i * n_in) // n_out
        b = -((-(i + 1) * n_in) // n_out)
        m[i, a:b] = 1.0 / (b - a)
    return m.astype(np.float32)


def area_resize(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """`F.interpolate(x, size, mode='area')` for NHWC `x` (adaptive average pooling).

    Integer down-scaling factors use an exact block mean; other sizes use the adaptive-pool bins.
    """
    b, h, w, c = x.shape
    oh, ow = size
    if (oh, ow) == (h, w):
        return x
    if h % oh == 0 and w % ow == 0:
        fh, fw = h // oh, w // ow
        return x.reshape(b, oh, fh, ow, fw, c).mean(axis=(2, 4))
    mh = jnp.asarray(_area_matrix(h, oh))
    mw = jnp.asarray(_area_matrix(w, ow))
    hp = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,bhwc->bowc", mh, x, precision=hp)
    return jnp.einsum("pw,bowc->bopc", mw, x, precision=hp)


# ----------------------------------------------------------------------------------------------------
# Params


def lpips_heads_from_state_dict(state_dict: Mapping[str, Any], src: str = "state_dict") -> dict:
    """LPIPS v0.1 VGG heads from either `lin{k}.model.1.weight` (lpips package, [1, C, 1, 1]) or the
    NVlabs `vgg16.pt` buffers `lpips{k}` (C values; stored as the weight applied to squared differences)."""
    heads = {}
    for k, ch in enumerate(_vgg.TAP_CHANNELS):
        for name in (f"lin{k}.model.1.weight", f"lpips{k}", f"lin{k}"):
            if name in state_dict:
                w = np.asarray(state_dict[name], np.float32)
                if w.size != ch:
                    raise CheckpointError(f"{src}: {name}: expected {ch} values, got shape {w.shape}")
                if np.any(w < 0):
                    raise CheckpointError(f"{src}: {name}: LPIPS head weights must be non-negative")
                heads[f"lin{k}"] = w.reshape(ch)
                break
        else:
            raise CheckpointError(f"{src}: missing LPIPS head lin{k} (tried lin{k}.model.1.weight, lpips{k})")
    return heads


def load_lpips_heads(source: str | os.PathLike | Mapping[str, Any]) -> dict:
    """Heads from a path (`vgg_v0.1.npz` / `.pth`) or an in-memory dict."""
    if isinstance(source, Mapping):
        return lpips_heads_from_state_dict(source)
    return lpips_heads_from_state_dict(_vgg.load_state_dict(source), src=os.fspath(source))


def lpips_params(vgg16_params: Mapping[str, Any], heads: Mapping[str, Any], winograd: bool | None = None) -> dict:
    """Combine backbone params and heads into LPIPS params.

    `winograd`: add the trunk's Winograd weights (None: on CPU only, where they measured faster; GPU convs
    stay direct, unmeasured there). False strips any.
    """
    if winograd is None:
        winograd = jax.default_backend() == "cpu"
    out = {"vgg16": _vgg.winograd_params(vgg16_params, _vgg.WINOGRAD_MIN_CIN if winograd else None)}
    for k in range(len(_vgg.TAP_NAMES)):
        out[f"lin{k}"] = jnp.asarray(heads[f"lin{k}"], jnp.float32)
    return out


def load_lpips(backbone: str | os.PathLike | Mapping[str, Any],
               heads: str | os.PathLike | Mapping[str, Any] | None = None) -> dict:
    """LPIPS params from a backbone checkpoint (torchvision or NVlabs layout) and heads.

    `heads=None` takes the heads from the backbone file itself (the NVlabs `vgg16.pt` carries them).
    """
    sd = backbone if isinstance(backbone, Mapping) else _vgg.load_state_dict(backbone)
    src = "state_dict" if isinstance(backbone, Mapping) else os.fspath(backbone)
    vgg = _vgg.vgg16_params_from_state_dict(sd, src)
    h = lpips_heads_from_state_dict(sd, src) if heads is None else load_lpips_heads(heads)
    return lpips_params(vgg, h)


def procedural_lpips(heads: str | os.PathLike | Mapping[str, Any],
                     seed: str = "vgg16-lpips-golden") -> dict:
    """LPIPS params of the projector golden: procedural backbone + the real v0.1 heads."""
    return lpips_params(_vgg.procedural_vgg16(seed), load_lpips_heads(heads))


# ----------------------------------------------------------------------------------------------------
# Features and distance


def _float(img: jax.Array) -> jax.Array:
    # float32, except that float64 stays float64 (reference runs under jax.experimental.enable_x64).
    return img.astype(jnp.float64 if img.dtype == jnp.float64 else jnp.float32)


@dataclass(frozen=True)
class Config:
    vgg16: _vgg.Config = _vgg.Config()  # the trunk (which convs carry Winograd weights)

    @staticmethod
    def of(params: Mapping[str, Any]) -> Config:
        """The config `params` (LPIPS params) was made for."""
        return Config(_vgg.Config.of(params.get("vgg16", {}) if isinstance(params, Mapping) else {}))


class LPIPS(nnx.Module):
    """LPIPS-VGG16 v0.1: `vgg16` the torchvision trunk (`vgg16.features.{i}.weight`), `lin{k}` [C_k] the linear
    head weights of tap k (official `lin{k}.model.1.weight` [1, C_k, 1, 1] / NVlabs `lpips{k}`, stored 1-D);
    `shift`, `scale` [3] the input normalisation (consts)."""

    def __init__(self, cfg: Config) -> None:
        self.vgg16 = _vgg.VGG16(cfg.vgg16)
        for k, ch in enumerate(_vgg.TAP_CHANNELS):
            setattr(self, f"lin{k}", param(ch))
        # float64 here, cast to the input's dtype: float32 constants for float32 images, and the float64
        # reference (`jaxinv.parity.projector.float64_engine`) keeps them unrounded
        self.shift = const(LPIPS_SHIFT, np.float64)
        self.scale = const(LPIPS_SCALE, np.float64)

    def __call__(self, img: jax.Array, resize_images: bool = False, *, direct: bool = False) -> jax.Array:
        """`vgg16(img, resize_images, return_lpips=True)` of the NVlabs TorchScript: img [B, H, W, 3] in
        [0, 255] -> [B, D] features, D = sum_k C_k * H_k * W_k (float64 for float64 `img`)."""
        return jnp.concatenate(self.taps(img, resize_images, direct=direct), axis=1)

    def taps(self, img: jax.Array, resize_images: bool = False, *, direct: bool = False) -> list[jax.Array]:
        """`__call__`'s features per tap: [B, C_k * H_k * W_k] for k = 0..4 (unconcatenated)."""
        x = _float(img) / 127.5 - 1.0
        if resize_images:
            x = area_resize(x, (224, 224))
        x = (x - self.shift[...].astype(x.dtype)) / self.scale[...].astype(x.dtype)
        taps = self.vgg16(x, _vgg.TAP_NAMES, direct=direct)
        out = []
        for k, name in enumerate(_vgg.TAP_NAMES):
            f = ops.normalize_channels(taps[name], _EPS)
            _, h, w, _ = f.shape
            f = f * jnp.sqrt(getattr(self, f"lin{k}")[...]) / np.float32(np.sqrt(h * w))
            out.append(f.reshape(f.shape[0], -1))
        return out

    def features(self, img: jax.Array, *, drange: tuple[float, float] = (-1.0, 1.0), max_size: int | None = 256,
                 direct: bool = False) -> jax.Array:
        """img [B, H, W, 3] in `drange` -> [B, D] (see `lpips_features`)."""
        return jnp.concatenate(self.feature_taps(img, drange=drange, max_size=max_size, direct=direct), axis=1)

    def feature_taps(self, img: jax.Array, *, drange: tuple[float, float] = (-1.0, 1.0),
                     max_size: int | None = 256, direct: bool = False) -> list[jax.Array]:
        """`features` per tap (see `taps`)."""
        lo, hi = drange
        x = _float(img)
        if (lo, hi) != (0.0, 255.0):
            x = (x - lo) * (255.0 / (hi - lo))
        if max_size is not None and x.shape[1] > max_size:
            x = area_resize(x, (max_size, max_size))
        return self.taps(x, resize_images=False, direct=direct)


def nvlabs_vgg16_call(params: Mapping[str, Any], img: jax.Array, resize_images: bool = False, *,
                      direct: bool = False) -> jax.Array:
    """Exact semantics of `vgg16(img, resize_images, return_lpips=True)` of the NVlabs TorchScript.

    img: [B, H, W, 3] float in [0, 255] (values outside are not clamped). Returns [B, D] features (float32;
    float64 for float64 `img`, which also forces the direct convs: the float64 reference). `direct`: direct
    convs even where the params carry Winograd weights.
    """
    return bind(LPIPS, Config.of(params), params)(img, resize_images, direct=direct)


def lpips_features(
    params: Mapping[str, Any],
    img: jax.Array,
    *,
    drange: tuple[float, float] = (-1.0, 1.0),
    max_size: int | None = 256,
    direct: bool = False,
) -> jax.Array:
    """Per-image LPIPS feature vectors [B, D] as the official projector builds them.

    img: [B, H, W, 3] with values nominally in `drange` ((-1, 1) for generator outputs, (0, 255) for
    uint8-style targets). Mapped to [0, 255] as the projector does (`(img + 1) * (255 / 2)`), then, if
    taller than `max_size`, area-resized to max_size x max_size, then `nvlabs_vgg16_call`.
    """
    return bind(LPIPS, Config.of(params), params).features(img, drange=drange, max_size=max_size, direct=direct)


def lpips_distance(feat_a: jax.Array, feat_b: jax.Array) -> jax.Array:
    """Per-item LPIPS = ||feat_a - feat_b||^2 over the feature axis ([B, D] x [B or 1, D] -> [B])."""
    return jnp.sum(jnp.square(feat_a - feat_b), axis=-1)


def lpips_distance_to(params: Mapping[str, Any], img: jax.Array, target_feat: jax.Array, *,
                      drange: tuple[float, float] = (-1.0, 1.0), max_size: int | None = 256,
                      direct: bool = False) -> jax.Array:
    """``lpips_distance(lpips_features(params, img, ...), target_feat)`` ([B] for target_feat [B or 1, D]),
    summed tap by tap against slices of `target_feat`: the per-step loss of inversion does not concatenate
    the ~8M-long feature vector of a 256 px image (LPIPS value_and_grad at batch 1, 2-core Xeon: 249 -> 229 ms)."""
    taps = bind(LPIPS, Config.of(params), params).feature_taps(img, drange=drange, max_size=max_size, direct=direct)
    size = sum(f.shape[1] for f in taps)
    if size != target_feat.shape[1]:
        raise ValueError(f"target_feat has {target_feat.shape[1]} features per image; these images give {size}")
    total, start = None, 0
    for f in taps:
        d = lpips_distance(f, target_feat[:, start:start + f.shape[1]])
        total, start = d if total is None else total + d, start + f.shape[1]
    return total


def lpips(params: Mapping[str, Any], a: jax.Array, b: jax.Array, *,
          drange: tuple[float, float] = (-1.0, 1.0), max_size: int | None = 256, direct: bool = False) -> jax.Array:
    """Per-item LPIPS distance between image batches `a` and `b` (both NHWC in `drange`)."""
    fa = lpips_features(params, a, drange=drange, max_size=max_size, direct=direct)
    fb = lpips_features(params, b, drange=drange, max_size=max_size, direct=direct)
    return lpips_distance(fa, fb)
