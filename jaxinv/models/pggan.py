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

Module tree (`Generator`, the TF scopes; a weight's path is its TF variable name with '/' read as '.'):
`4x4.Dense.weight` [z_dim + c_dim, 16 * nf(1)] (columns in NHWC order), `4x4.Dense.bias`, `4x4.Conv.weight`
[3, 3, in, out], `RxR.Conv0_up.weight` (or `RxR.Conv0.weight`), `RxR.Conv1.{weight,bias}`, `ToRGB_lod{L}.weight`
[in, img_channels], `ToRGB_lod{L}.bias`; NHWC / HWIO, wscale folded in. The config's flags (pixel norm, leaky
ReLU, fused_scale) are static attributes; `lod` is a static argument of the forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models.nn import bind, param
from jaxinv.models.progressive import Scopes, ToRGB, conv2d_same, fill_tf, grow, scaled, upscale2d
from jaxinv.state_dict import Entry, as_is

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


def _wscale(gain: float, fan_in: int, then: Any = as_is) -> Any:
    """Equalised learning rate folded in: the weight times gain / sqrt(fan_in), then the layout change `then`."""
    return scaled(gain / np.sqrt(fan_in), then)


def _dense_nhwc(channels: int) -> Any:
    """4x4/Dense's columns in NCHW order (C, 4, 4) -> NHWC (4, 4, C)."""
    return lambda a: a.reshape(-1, channels, 4, 4).transpose(0, 2, 3, 1).reshape(-1, 16 * channels)


def _up_flipped(a: np.ndarray) -> np.ndarray:
    """Conv0_up's [3, 3, out, in] -> the flipped [3, 3, in, out] run after nearest upscaling (module doc)."""
    return a[::-1, ::-1].transpose(0, 1, 3, 2)


def _torgb_1x1(a: np.ndarray) -> np.ndarray:
    return a[0, 0]


def param_table(cfg: Config) -> list[Entry]:
    """The TF variables as G_paper creates them (name, shape), where each goes in our params and how (wscale
    folded in, layouts to NHWC / HWIO); `lod` is checked (0), not stored."""
    c = cfg.channels

    def layer(scope: str, shape: tuple[int, ...], cout: int, fix: Any) -> list[Entry]:
        path = tuple(scope.split("/"))
        return [Entry(f"{scope}/weight", shape, (*path, "weight"), fix),
                Entry(f"{scope}/bias", (cout,), (*path, "bias"))]

    t = [Entry("lod", (), None)]
    t += layer("4x4/Dense", (cfg.z_dim + cfg.c_dim, c[0] * 16), c[0],
               _wscale(np.sqrt(2) / 4, cfg.z_dim + cfg.c_dim, _dense_nhwc(c[0])))
    t += layer("4x4/Conv", (3, 3, c[0], c[0]), c[0], _wscale(np.sqrt(2), 9 * c[0]))
    for i in range(1, len(c)):
        r = f"{4 * 2**i}x{4 * 2**i}"
        if cfg.fused_scale:
            t += layer(f"{r}/Conv0_up", (3, 3, c[i], c[i - 1]), c[i], _wscale(np.sqrt(2), 9 * c[i - 1], _up_flipped))
        else:
            t += layer(f"{r}/Conv0", (3, 3, c[i - 1], c[i]), c[i], _wscale(np.sqrt(2), 9 * c[i - 1]))
        t += layer(f"{r}/Conv1", (3, 3, c[i], c[i]), c[i], _wscale(np.sqrt(2), 9 * c[i]))
    for i in range(len(c)):
        t += layer(f"ToRGB_lod{len(c) - 1 - i}", (1, 1, c[i], cfg.img_channels), cfg.img_channels,
                   _wscale(1.0, c[i], _torgb_1x1))
    return t


def variable_table(cfg: Config) -> dict[str, tuple[int, ...]]:
    """TF variable name -> shape, as G_paper creates them (`lod` included)."""
    return {e.name: e.shape for e in param_table(cfg)}


def params_from_variables(cfg: Config, tf: dict[str, np.ndarray], where: str = "PGGAN") -> dict:
    """Our params from the TF variables (names / shapes checked; wscale folded in; layouts to NHWC)."""
    return fill_tf(param_table(cfg), tf, where, "PGGAN G_paper")


def from_source(src: Any) -> tuple[Config, dict]:
    where = str((getattr(src, "provenance", None) or {}).get("source") or "PGGAN")
    cfg = config_from_kwargs(dict(src.init.get("static_kwargs", {})), where)
    return cfg, params_from_variables(cfg, src.state_dict, where)


# ---------------------------------------------------------------------------------------------------------
# Forward: the G_paper scopes as modules (Generator['4x4'].Dense, Generator['8x8'].Conv0_up, ['ToRGB_lod0'])

def _pixel_norm(cfg: Config, x: jax.Array, force: bool = False) -> jax.Array:
    return ops.normalize_2nd_moment(x, eps=cfg.pixelnorm_epsilon) if (cfg.use_pixelnorm or force) else x


def _act(cfg: Config, x: jax.Array) -> jax.Array:
    return jnp.maximum(x * 0.2, x) if cfg.use_leakyrelu else jax.nn.relu(x)


class Dense(nnx.Module):
    """4x4/Dense: `weight` [z_dim + c_dim, 16 C] (columns in NHWC order, wscale folded in), `bias` [C]."""

    def __init__(self, fan_in: int, channels: int) -> None:
        self.weight = param(fan_in, 16 * channels)
        self.bias = param(channels)
        self.channels = channels

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, fan_in] -> [B, 4, 4, C] (+ bias)."""
        return (x @ self.weight[...]).reshape(-1, 4, 4, self.channels) + self.bias[...]


class Conv(nnx.Module):
    """A 3x3 'SAME' conv + bias: `weight` [3, 3, in, out] (HWIO, wscale folded in; Conv0_up's already flipped for
    nearest upscaling first), `bias` [out]."""

    def __init__(self, cin: int, cout: int) -> None:
        self.weight = param(3, 3, cin, cout)
        self.bias = param(cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, R, R, in] -> [B, R, R, out]."""
        return conv2d_same(x, self.weight[...]) + self.bias[...]


class Block4(nnx.Module):
    """The 4x4 scope: Dense (latent -> 4x4), Conv; each then activation and pixel norm."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.Dense = Dense(cfg.z_dim + cfg.c_dim, cfg.channels[0])
        self.Conv = Conv(cfg.channels[0], cfg.channels[0])

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, z_dim + c_dim] (pixel-normed latent) -> [B, 4, 4, nf(1)]."""
        cfg = self.cfg
        x = _pixel_norm(cfg, _act(cfg, self.Dense(x)))
        return _pixel_norm(cfg, _act(cfg, self.Conv(x)))


class Block(nnx.Module):
    """An RxR scope (R >= 8): Conv0_up (fused_scale) or Conv0 after nearest 2x upscaling, then Conv1; each then
    activation and pixel norm."""

    def __init__(self, cfg: Config, cin: int, cout: int) -> None:
        self.cfg = cfg
        if cfg.fused_scale:
            self.Conv0_up = Conv(cin, cout)
        else:
            self.Conv0 = Conv(cin, cout)
        self.Conv1 = Conv(cout, cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, R/2, R/2, in] -> [B, R, R, out]."""
        cfg = self.cfg
        conv0 = self.Conv0_up if cfg.fused_scale else self.Conv0
        x = _pixel_norm(cfg, _act(cfg, conv0(upscale2d(x))))
        return _pixel_norm(cfg, _act(cfg, self.Conv1(x)))


class Generator(Scopes):
    """G_paper: scopes '4x4' (Block4), 'RxR' (Block) for R = 8 .. resolution, 'ToRGB_lod{L}' (ToRGB) for each
    level, L = log2(resolution / R)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        c = cfg.channels
        self.add("4x4", Block4(cfg))
        for i in range(1, len(c)):
            self.add(f"{4 * 2**i}x{4 * 2**i}", Block(cfg, c[i - 1], c[i]))
        for i in range(len(c)):
            self.add(f"ToRGB_lod{len(c) - 1 - i}", ToRGB(c[i], cfg.img_channels))

    def __call__(self, z: jax.Array, c: jax.Array | None = None, lod: float = 0.0,
                 return_blocks: bool = False) -> Any:
        """z [B, z_dim] (+ labels c [B, c_dim]) -> images [B, R, R, img_channels] (nominally [-1, 1]); with
        return_blocks also each block's output {"RxR": [B, r, r, C]}."""
        cfg = self.cfg
        z = jnp.asarray(z, jnp.float32)
        if z.ndim != 2 or z.shape[1] != cfg.z_dim:
            raise ConfigError(f"pggan.Generator: z must be [B, {cfg.z_dim}], got {list(z.shape)}")
        x = z if not cfg.c_dim else jnp.concatenate([z, jnp.asarray(c, jnp.float32)], axis=1)
        if cfg.normalize_latents:
            x = _pixel_norm(cfg, x, force=True)
        x = self["4x4"](x)
        blocks = {"4x4": x}
        top = len(cfg.channels) - 1  # the lod of the 4x4 level
        img = self[f"ToRGB_lod{top}"](x)
        for i in range(1, len(cfg.channels)):
            r = f"{4 * 2**i}x{4 * 2**i}"
            x = self[r](x)
            blocks[r] = x
            img = grow(img, partial(self[f"ToRGB_lod{top - i}"], x), lod, top - i)
        return (img, blocks) if return_blocks else img


def generate(cfg: Config, params: dict, z: jax.Array, c: jax.Array | None = None, lod: float = 0.0,
             return_blocks: bool = False) -> Any:
    """z [B, z_dim] (+ labels c [B, c_dim]) -> images [B, R, R, img_channels] (nominally [-1, 1]).

    `lod` (static): 0 = the final resolution (the stored value of every published snapshot); fractional values
    blend levels as during progressive growing. return_blocks: also each block's output {"RxR": [B, r, r, C]}.
    """
    return bind(Generator, cfg, params)(z, c, lod, return_blocks)
