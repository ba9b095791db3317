"""PGGAN generator (tkarras/progressive_growing_of_gans `networks.G_paper`, TensorFlow).

Official structure, per resolution R = 4, 8, ..., `resolution` (variable scopes as in the TF graph):

    4x4/Dense   pixel-normed [z, labels] -> dense (gain sqrt(2)/4) -> [B, nf(1), 4, 4] -> bias, lrelu, pixel norm
    4x4/Conv    3x3 conv -> bias, lrelu, pixel norm
    RxR/Conv0_up  fused 2x upscale + 3x3 conv (fused_scale=True; stored [3, 3, out, in]) or
    RxR/Conv0     nearest 2x upscale, then 3x3 conv (fused_scale=False; stored [3, 3, in, out])
    RxR/Conv1   3x3 conv
    ToRGB_lod{L}  1x1 conv (gain 1) + bias, linear, L = log2(resolution / R)

Equalised learning rate: each weight is used times gain / sqrt(fan_in) (folded in at load time here).
The output is the final ToRGB at lod 0; a fractional `lod` blends two levels as the official graph does
(`lerp_clip(ToRGB(x_R), upscale(y), lod - lod_R)` from 4x4 up; nearest upscaling). The fused up-conv (a
transposed conv with the 4x4 kernel made of four shifted copies of the 3x3 one) equals nearest 2x upscaling
followed by a 3x3 'SAME' cross-correlation with the spatially flipped kernel, which is what runs here.

Params (NHWC / HWIO, already scaled): params["4x4"]["Dense"] = {"weight": [z_dim + c_dim, 16 * nf(1)] with
columns in NHWC order, "bias": [nf(1)]}, params["RxR"][layer] = {"weight": [3, 3, in, out], "bias"},
params["ToRGB_lod{L}"] = {"weight": [in, img_channels], "bias"}.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import ops
from jaxinv.errors import CheckpointError
from jaxinv.models.progressive import check_variables, conv2d_same, grow, to_rgb, upscale2d

FAMILY = "pggan"
# G_paper's defaults for kwargs a pickle may not store
_DEFAULTS = {"num_channels": 1, "resolution": 32, "label_size": 0, "fmap_base": 8192, "fmap_decay": 1.0,
             "fmap_max": 512, "latent_size": None, "normalize_latents": True, "use_wscale": True,
             "use_pixelnorm": True, "pixelnorm_epsilon": 1e-8, "use_leakyrelu": True, "dtype": "float32",
             "fused_scale": True, "structure": None}


@dataclass(frozen=True)
class Config:
    z_dim: int = 512  # latent_size
    c_dim: int = 0  # label_size
    img_resolution: int = 1024
    img_channels: int = 3
    channels: tuple[int, ...] = ()  # nf(res - 1) of each resolution 4, 8, ..., img_resolution
    normalize_latents: bool = True
    use_pixelnorm: bool = True
    pixelnorm_epsilon: float = 1e-8
    use_leakyrelu: bool = True
    fused_scale: bool = True

    @property
    def resolution_log2(self) -> int:
        return int(np.log2(self.img_resolution))

    @property
    def num_ws(self) -> None:  # no W space: driven by z (and labels)
        return None


def config_from_kwargs(kw: dict[str, Any], where: str = "PGGAN") -> Config:
    """Config from Gs's static_kwargs; like G_paper, kwargs it does not take are ignored (the Theano-era
    CelebA-HQ import stores the discriminator's `mbstd_group_size` there)."""
    k = {**_DEFAULTS, **{n: v for n, v in kw.items() if n in _DEFAULTS}}
    if k["dtype"] != "float32":
        raise CheckpointError(f"{where}: G_paper dtype {k['dtype']!r}: only float32 is supported")
    if k["label_size"]:
        raise CheckpointError(f"{where}: conditional PGGAN (label_size={k['label_size']}) is not supported")
    res = int(k["resolution"])
    if res < 4 or res & (res - 1):
        raise CheckpointError(f"{where}: resolution {res} is not a power of 2 >= 4")

    def nf(stage: int) -> int:
        return min(int(k["fmap_base"] / (2.0 ** (stage * k["fmap_decay"]))), int(k["fmap_max"]))

    log2 = int(np.log2(res))
    return Config(z_dim=int(k["latent_size"] if k["latent_size"] is not None else nf(0)),
                  c_dim=int(k["label_size"]), img_resolution=res, img_channels=int(k["num_channels"]),
                  channels=tuple(nf(r - 1) for r in range(2, log2 + 1)),
                  normalize_latents=bool(k["normalize_latents"]), use_pixelnorm=bool(k["use_pixelnorm"]),
                  pixelnorm_epsilon=float(k["pixelnorm_epsilon"]), use_leakyrelu=bool(k["use_leakyrelu"]),
                  fused_scale=bool(k["fused_scale"]))


def variable_table(cfg: Config) -> dict[str, tuple[int, ...]]:
    """TF variable name -> shape, as G_paper creates them (`lod` included)."""
    c = cfg.channels
    t: dict[str, tuple[int, ...]] = {"lod": ()}
    t["4x4/Dense/weight"], t["4x4/Dense/bias"] = (cfg.z_dim + cfg.c_dim, c[0] * 16), (c[0],)
    t["4x4/Conv/weight"], t["4x4/Conv/bias"] = (3, 3, c[0], c[0]), (c[0],)
    for i in range(1, len(c)):
        r = 4 * 2**i
        if cfg.fused_scale:
            t[f"{r}x{r}/Conv0_up/weight"] = (3, 3, c[i], c[i - 1])
            t[f"{r}x{r}/Conv0_up/bias"] = (c[i],)
        else:
            t[f"{r}x{r}/Conv0/weight"], t[f"{r}x{r}/Conv0/bias"] = (3, 3, c[i - 1], c[i]), (c[i],)
        t[f"{r}x{r}/Conv1/weight"], t[f"{r}x{r}/Conv1/bias"] = (3, 3, c[i], c[i]), (c[i],)
    for i in range(len(c)):
        lod = len(c) - 1 - i
        t[f"ToRGB_lod{lod}/weight"], t[f"ToRGB_lod{lod}/bias"] = (1, 1, c[i], cfg.img_channels), (cfg.img_channels,)
    return t


def params_from_variables(cfg: Config, tf: dict[str, np.ndarray], where: str = "PGGAN") -> dict:
    """Our params from the TF variables (names / shapes checked; wscale folded in; layouts to NHWC)."""
    check_variables(variable_table(cfg), tf, where, "PGGAN G_paper")

    def w(name: str, gain: float, fan_in: int) -> np.ndarray:
        return np.asarray(tf[name], np.float64) * (gain / np.sqrt(fan_in))

    def f32(a: np.ndarray) -> jax.Array:
        return jnp.asarray(np.ascontiguousarray(a), jnp.float32)

    c = cfg.channels
    dense = w("4x4/Dense/weight", np.sqrt(2) / 4, cfg.z_dim + cfg.c_dim)  # columns in NCHW order: (C, 4, 4)
    dense = dense.reshape(-1, c[0], 4, 4).transpose(0, 2, 3, 1).reshape(-1, 16 * c[0])
    params: dict = {"4x4": {"Dense": {"weight": f32(dense), "bias": f32(tf["4x4/Dense/bias"])},
                            "Conv": {"weight": f32(w("4x4/Conv/weight", np.sqrt(2), 9 * c[0])),
                                     "bias": f32(tf["4x4/Conv/bias"])}}}
    for i in range(1, len(c)):
        r = f"{4 * 2**i}x{4 * 2**i}"
        if cfg.fused_scale:  # [3, 3, out, in] -> flipped [3, 3, in, out] after nearest upscaling (module doc)
            k = w(f"{r}/Conv0_up/weight", np.sqrt(2), 9 * c[i - 1])[::-1, ::-1].transpose(0, 1, 3, 2)
            conv0 = {"weight": f32(k), "bias": f32(tf[f"{r}/Conv0_up/bias"])}
        else:
            conv0 = {"weight": f32(w(f"{r}/Conv0/weight", np.sqrt(2), 9 * c[i - 1])),
                     "bias": f32(tf[f"{r}/Conv0/bias"])}
        params[r] = {"Conv0_up" if cfg.fused_scale else "Conv0": conv0,
                     "Conv1": {"weight": f32(w(f"{r}/Conv1/weight", np.sqrt(2), 9 * c[i])),
                               "bias": f32(tf[f"{r}/Conv1/bias"])}}
    for i in range(len(c)):
        lod = len(c) - 1 - i
        params[f"ToRGB_lod{lod}"] = {"weight": f32(w(f"ToRGB_lod{lod}/weight", 1.0, c[i])[0, 0]),
                                     "bias": f32(tf[f"ToRGB_lod{lod}/bias"])}
    return params


def from_source(src: Any) -> tuple[Config, dict]:
    where = str((getattr(src, "provenance", None) or {}).get("source") or "PGGAN")
    cfg = config_from_kwargs(dict(src.init.get("static_kwargs", {})), where)
    return cfg, params_from_variables(cfg, src.state_dict, where)


# ---------------------------------------------------------------------------------------------------------
# Forward

def _pixel_norm(cfg: Config, x: jax.Array, force: bool = False) -> jax.Array:
    return ops.normalize_2nd_moment(x, eps=cfg.pixelnorm_epsilon) if (cfg.use_pixelnorm or force) else x


def _act(cfg: Config, x: jax.Array) -> jax.Array:
    return jnp.maximum(x * 0.2, x) if cfg.use_leakyrelu else jax.nn.relu(x)


def _conv3x3(x: jax.Array, p: dict) -> jax.Array:
    return conv2d_same(x, p["weight"]) + p["bias"]


def _torgb(params: dict, x: jax.Array, lod: int) -> jax.Array:
    return to_rgb(params[f"ToRGB_lod{lod}"], x)


def generate(cfg: Config, params: dict, z: jax.Array, c: jax.Array | None = None, lod: float = 0.0,
             return_blocks: bool = False) -> Any:
    """z [B, z_dim] (+ labels c [B, c_dim]) -> images [B, R, R, img_channels] (nominally [-1, 1]).

    `lod` (static): 0 = the final resolution (the stored value of every published snapshot); fractional values
    blend levels as during progressive growing. return_blocks: also each block's output {"RxR": [B, r, r, C]}.
    """
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2 or z.shape[1] != cfg.z_dim:
        raise ValueError(f"pggan.generate: z must be [B, {cfg.z_dim}], got {z.shape}")
    x = z if not cfg.c_dim else jnp.concatenate([z, jnp.asarray(c, jnp.float32)], axis=1)
    if cfg.normalize_latents:
        x = _pixel_norm(cfg, x, force=True)
    p = params["4x4"]
    x = (x @ p["Dense"]["weight"]).reshape(-1, 4, 4, cfg.channels[0])
    x = _pixel_norm(cfg, _act(cfg, x + p["Dense"]["bias"]))
    x = _pixel_norm(cfg, _act(cfg, _conv3x3(x, p["Conv"])))
    blocks = {"4x4": x}
    top = len(cfg.channels) - 1  # the lod of the 4x4 level
    img = _torgb(params, x, top)
    for i in range(1, len(cfg.channels)):
        r = f"{4 * 2**i}x{4 * 2**i}"
        p = params[r]
        conv0 = p["Conv0_up"] if cfg.fused_scale else p["Conv0"]
        x = _pixel_norm(cfg, _act(cfg, _conv3x3(upscale2d(x), conv0)))
        x = _pixel_norm(cfg, _act(cfg, _conv3x3(x, p["Conv1"])))
        blocks[r] = x
        img = grow(img, partial(_torgb, params, x, top - i), lod, top - i)
    return (img, blocks) if return_blocks else img

