"""NVlabs StyleGAN2 generator (stylegan2-ada-pytorch `training.networks.Generator` and the stylegan3
repo's `training.networks_stylegan2.Generator`, which share weights and maths; the TF-era StyleGAN2 pickles
convert into the same family) as a Flax NNX module tree (`Generator`). Images NHWC.

The modules mirror the official tree, so a weight's path is its official name:

    Generator
      mapping    MappingNetwork: embed (conditional), fc0 .. fc{n-1} FullyConnectedLayer, w_avg buffer
      synthesis  SynthesisNetwork: b4, b8, ... b{R} SynthesisBlock
        b{R}     const (b4), conv0 (R > 4) / conv1 SynthesisLayer (affine, weight, bias, noise_strength,
                 noise_const buffer), torgb ToRGBLayer (affine, weight, bias), skip Conv2dLayer ('resnet')

e.g. ``mapping.fc0.weight`` ``[in, out]``, ``synthesis.b8.conv0.weight`` HWIO ``[3, 3, in, out]``,
``synthesis.b8.conv0.noise_const`` ``[R, R]``, ``synthesis.b4.const`` ``[4, 4, C]``;
`jaxinv.models.nn.shapes(Generator, cfg)` is the converter's params tree. The official ``resample_filter``
buffers are build-time constants (``cfg.resample_filter``), not params. The engine's free functions
(`mapping`, `truncate`, `styles`, `synthesis`, `generate`) bind the params to the module and call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models.nn import bind, buffer, const, param
from jaxinv.state_dict import Entry, as_is, conv_hwio, fill, linear_t

# ---------------------------------------------------------------------------------------------
# Static config


@dataclass(frozen=True)
class Config:
    z_dim: int  # Input latent (Z) dimensionality.
    c_dim: int  # Conditioning label (C) dimensionality, 0 = unconditional.
    w_dim: int  # Intermediate latent (W) dimensionality.
    img_resolution: int  # Output resolution.
    img_channels: int = 3
    # MappingNetwork
    mapping_layers: int = 8
    embed_features: int | None = None  # None = w_dim
    layer_features: int | None = None  # None = w_dim
    mapping_activation: str = "lrelu"
    mapping_lr_multiplier: float = 0.01
    # SynthesisNetwork
    channel_base: int = 32768
    channel_max: int = 512
    architecture: str = "skip"  # 'orig' | 'skip' | 'resnet'
    conv_clamp: float | None = None
    use_noise: bool = True
    activation: str = "lrelu"
    resample_filter: tuple[tuple[float, ...], ...] = ((1.0,), )  # the stored 2-D (or 1-D) filter
    num_fp16_res: int = 0  # recorded only: jaxinv always runs fp32

    def __post_init__(self) -> None:
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ConfigError(f"img_resolution={r}: must be a power of two >= 4")
        if self.architecture not in ("orig", "skip", "resnet"):
            raise ConfigError(f"architecture={self.architecture!r}: expected 'orig', 'skip' or 'resnet'")

    @property
    def block_resolutions(self) -> list[int]:
        return [2**i for i in range(2, int(np.log2(self.img_resolution)) + 1)]

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @cached_property
    def layers(self) -> tuple[tuple[int, str, int, int, int], ...]:
        """(res, layer, w index, in_channels, out_channels) for every styled layer, in forward order."""
        out, w_idx = [], 0
        for res in self.block_resolutions:
            c_out, c_in = self.channels(res), (self.channels(res // 2) if res > 4 else 0)
            if res > 4:
                out.append((res, "conv0", w_idx, c_in, c_out))
            out.append((res, "conv1", w_idx + (res > 4), c_out, c_out))
            num_conv = 1 + (res > 4)
            if res == self.img_resolution or self.architecture == "skip":
                out.append((res, "torgb", w_idx + num_conv, c_out, self.img_channels))
            w_idx += num_conv
        return tuple(out)

    @property
    def num_ws(self) -> int:
        return len([1 for _, name, *_ in self.layers if name != "torgb"]) + 1

    @property
    def layer_names(self) -> list[str]:
        return [f"b{res}.{name}" for res, name, *_ in self.layers]

    @property
    def noise_layers(self) -> list[tuple[str, int]]:
        """(layer name, resolution) of every layer with a noise input, in `named_buffers` order."""
        if not self.use_noise:
            return []
        return [(f"b{res}.{name}", res) for res, name, *_ in self.layers if name != "torgb"]

    @property
    def filter(self) -> np.ndarray:
        return np.asarray(self.resample_filter, np.float32).squeeze()


_REPO_DEFAULTS = {
    # Defaults of kwargs a pickle may not store, per repo (golden README 4.1b).
    "stylegan2-ada-pytorch": {"conv_clamp": None, "w_avg_beta": 0.995},
    "stylegan3": {"conv_clamp": 256, "w_avg_beta": 0.998},
}


def config_from_init(init: dict[str, Any], state_dict: dict[str, np.ndarray] | None = None) -> Config:
    """Config from official constructor info (`Source.init`) and, for the filter, the stored buffers."""
    kw = dict(init.get("init_kwargs", init))
    resolved = init.get("resolved", {})
    repo = resolved.get("repo") or ("stylegan3" if "networks_stylegan2" in init.get("class_name", "")
                                    else "stylegan2-ada-pytorch")
    mapping_kwargs = dict(kw.pop("mapping_kwargs", {}) or {})
    synthesis_kwargs = dict(kw.pop("synthesis_kwargs", {}) or {})
    for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        if k not in kw:
            raise CheckpointError(f"StyleGAN2 init_kwargs lack {k!r}")
    base = {k: kw.pop(k) for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    synthesis_kwargs.update(kw)  # stylegan3-repo networks_stylegan2 keeps synthesis kwargs flat
    unknown = set(synthesis_kwargs) - {
        "channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter",
        "use_noise", "activation", "fp16_channels_last", "fused_modconv_default", "kernel_size",
    }
    if unknown:
        raise CheckpointError(f"StyleGAN2 synthesis kwargs not supported: {sorted(unknown)}")
    if synthesis_kwargs.get("kernel_size", 3) != 3:
        raise CheckpointError("StyleGAN2 kernel_size other than 3 is not supported")
    unknown_m = set(mapping_kwargs) - {"num_layers", "embed_features", "layer_features", "activation",
                                       "lr_multiplier", "w_avg_beta"}
    if unknown_m:
        raise CheckpointError(f"StyleGAN2 mapping kwargs not supported: {sorted(unknown_m)}")
    conv_clamp = resolved.get("conv_clamp", synthesis_kwargs.get("conv_clamp", _REPO_DEFAULTS[repo]["conv_clamp"]))
    filt = ops.setup_filter(synthesis_kwargs.get("resample_filter", [1, 3, 3, 1]))
    if state_dict is not None:
        stored = [v for k, v in state_dict.items() if k.endswith("resample_filter")]
        if stored:
            filt = np.asarray(stored[0], np.float32)
            if any(not np.array_equal(s, filt) for s in stored):
                raise CheckpointError("StyleGAN2 checkpoint: resample_filter buffers differ between layers")
    filt_t = tuple(tuple(float(v) for v in row) for row in np.atleast_2d(filt))
    return Config(
        **base,
        mapping_layers=int(mapping_kwargs.get("num_layers", 8)),
        embed_features=mapping_kwargs.get("embed_features"),
        layer_features=mapping_kwargs.get("layer_features"),
        mapping_activation=mapping_kwargs.get("activation", "lrelu"),
        mapping_lr_multiplier=float(mapping_kwargs.get("lr_multiplier", 0.01)),
        channel_base=int(synthesis_kwargs.get("channel_base", 32768)),
        channel_max=int(synthesis_kwargs.get("channel_max", 512)),
        architecture=resolved.get("architecture", synthesis_kwargs.get("architecture", "skip")),
        conv_clamp=None if conv_clamp is None else float(conv_clamp),
        use_noise=bool(synthesis_kwargs.get("use_noise", True)),
        activation=synthesis_kwargs.get("activation", "lrelu"),
        resample_filter=filt_t,
        num_fp16_res=int(synthesis_kwargs.get("num_fp16_res", 0)),
    )


# ---------------------------------------------------------------------------------------------
# Converter: official state_dict name -> (param path, layout fix)

_T, _HWIO, _F32 = linear_t, conv_hwio, as_is
_CHW_HWC = lambda a: a.transpose(1, 2, 0)  # noqa: E731


def param_table(cfg: Config) -> list[Entry]:
    """Every official state_dict parameter: name, official shape, param path, layout change."""
    t: list[Entry] = []

    def add(name: str, fix: Callable, shape: tuple[int, ...]) -> None:
        t.append(Entry(name, shape, tuple(name.split(".")), fix))

    embed = cfg.embed_features or cfg.w_dim
    layer = cfg.layer_features or cfg.w_dim
    feats = [cfg.z_dim + (embed if cfg.c_dim else 0)] + [layer] * (cfg.mapping_layers - 1) + [cfg.w_dim]
    if cfg.c_dim:
        add("mapping.embed.weight", _T, (embed, cfg.c_dim))
        add("mapping.embed.bias", _F32, (embed,))
    for i in range(cfg.mapping_layers):
        add(f"mapping.fc{i}.weight", _T, (feats[i + 1], feats[i]))
        add(f"mapping.fc{i}.bias", _F32, (feats[i + 1],))
    add("mapping.w_avg", _F32, (cfg.w_dim,))
    for res, name, _, c_in, c_out in cfg.layers:
        p = f"synthesis.b{res}.{name}"
        k = 1 if name == "torgb" else 3
        add(f"{p}.weight", _HWIO, (c_out, c_in, k, k))
        add(f"{p}.bias", _F32, (c_out,))
        add(f"{p}.affine.weight", _T, (c_in, cfg.w_dim))
        add(f"{p}.affine.bias", _F32, (c_in,))
        if name != "torgb" and cfg.use_noise:
            add(f"{p}.noise_const", _F32, (res, res))
            add(f"{p}.noise_strength", _F32, ())
    add("synthesis.b4.const", _CHW_HWC, (cfg.channels(4), 4, 4))
    if cfg.architecture == "resnet":
        for res in cfg.block_resolutions[1:]:
            add(f"synthesis.b{res}.skip.weight", _HWIO, (cfg.channels(res), cfg.channels(res // 2), 1, 1))
    return t


def params_from_state_dict(cfg: Config, state_dict: dict[str, np.ndarray], where: str = "checkpoint") -> dict:
    """Convert an official state_dict; every target filled and shape-checked, extras reported."""
    return fill(param_table(cfg), state_dict, where, what="StyleGAN2 state_dict",
                ignore=lambda k: k.endswith("resample_filter"))  # folded into cfg


def from_source(src) -> tuple[Config, dict]:
    cfg = config_from_init(src.init, src.state_dict)
    return cfg, params_from_state_dict(cfg, src.state_dict, src.provenance.get("source", "checkpoint"))


def state_dict_names(cfg: Config) -> list[str]:
    """Official state_dict names this config expects (param table plus resample_filter buffers)."""
    names = [e.name for e in param_table(cfg)]
    for res in cfg.block_resolutions:
        names.append(f"synthesis.b{res}.resample_filter")
        names += [f"synthesis.b{res}.{n}.resample_filter" for r, n, *_ in cfg.layers if r == res and n != "torgb"]
        if cfg.architecture == "resnet" and res > 4:
            names.append(f"synthesis.b{res}.skip.resample_filter")
    return names


# ---------------------------------------------------------------------------------------------
# Forward: the official module tree (training.networks / training.networks_stylegan2)


class FullyConnectedLayer(nnx.Module):
    """``FullyConnectedLayer(in, out, activation, lr_multiplier)``: x [B, in] -> [B, out].

    ``weight`` [in, out] (our layout: the official [out, in] transposed), ``bias`` [out]; the equalised-lr gains
    ``lr_multiplier / sqrt(in)`` (weight) and ``lr_multiplier`` (bias) are applied in the forward."""

    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0,
                 activation: str = "linear") -> None:
        self.weight = param(in_features, out_features)
        self.bias = param(out_features)
        self.lr_multiplier, self.activation = float(lr_multiplier), activation

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.fully_connected(x, self.weight[...], self.bias[...], lr_multiplier=self.lr_multiplier,
                                   activation=self.activation)


class MappingNetwork(nnx.Module):
    """``MappingNetwork``: ``embed`` (FullyConnectedLayer c_dim -> embed_features, conditional models only),
    ``fc0`` .. ``fc{n-1}`` (lr-multiplied FullyConnectedLayers), ``w_avg`` [w_dim] buffer.

    z [B, z_dim] (+ c [B, c_dim]) -> ws [B, num_ws, w_dim]. fc0 takes z_dim (+ embed_features), the others
    layer_features, the last gives w_dim (embed_features / layer_features None = w_dim).
    """

    def __init__(self, cfg: Config) -> None:
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.num_ws
        self.num_layers = cfg.mapping_layers
        embed = getattr(cfg, "embed_features", None) or cfg.w_dim  # (the stylegan3 repo's config has neither)
        layer = getattr(cfg, "layer_features", None) or cfg.w_dim
        feats = [cfg.z_dim + (embed if cfg.c_dim else 0)] + [layer] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        if cfg.c_dim:
            self.embed = FullyConnectedLayer(cfg.c_dim, embed)
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(feats[i], feats[i + 1], cfg.mapping_lr_multiplier,
                                                        cfg.mapping_activation))
        self.w_avg = buffer(cfg.w_dim)

    def __call__(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None) -> jax.Array:
        """z [B, z_dim] (+ c [B, c_dim]) -> ws [B, num_ws, w_dim] (truncated, see `truncate`)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ConfigError(f"mapping: z must be [B, {self.z_dim}], got {list(z.shape)}")
        parts = []
        if self.z_dim > 0:
            parts.append(ops.normalize_2nd_moment(z.astype(jnp.float32)))
        if self.c_dim > 0:
            if c is None or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ConfigError(f"mapping: c must be [B, {self.c_dim}] (conditional generator), got "
                                  f"{None if c is None else list(c.shape)}")
            parts.append(ops.normalize_2nd_moment(self.embed(c.astype(jnp.float32))))
        x = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = jnp.broadcast_to(x[:, None], (x.shape[0], self.num_ws, self.w_dim))
        return self.truncate(ws, truncation_psi, truncation_cutoff)

    def truncate(self, ws: jax.Array, psi: float | jax.Array = 1.0, cutoff: int | None = None) -> jax.Array:
        """``w_avg.lerp(ws, psi)`` on the first ``cutoff`` of ws [B, num_ws, w_dim] (all if None)."""
        if isinstance(psi, int | float) and psi == 1:
            return ws
        w_avg = self.w_avg[...]
        trunc = w_avg + psi * (ws - w_avg)
        if cutoff is None:
            return trunc
        layer_mask = (jnp.arange(self.num_ws) < cutoff)[None, :, None]
        return jnp.where(layer_mask, trunc, ws)


class SynthesisLayer(nnx.Module):
    """``SynthesisLayer`` (3x3 modulated conv, optional 2x upsampling, noise, bias + activation, clamp):
    x [B, R/up, R/up, in] -> [B, R, R, out].

    ``affine`` FullyConnectedLayer(w_dim, in) (the style), ``weight`` [3, 3, in, out] HWIO, ``bias`` [out];
    with ``use_noise``: ``noise_const`` [R, R] buffer and ``noise_strength`` [] (scalar)."""

    def __init__(self, cfg: Config, res: int, w_idx: int, cin: int, cout: int, up: int) -> None:
        self.affine = FullyConnectedLayer(cfg.w_dim, cin)
        self.weight = param(3, 3, cin, cout)
        self.bias = param(cout)
        if cfg.use_noise:
            self.noise_const = buffer(res, res)
            self.noise_strength = param()
        self.resample_filter = const(cfg.filter)
        self.res, self.w_idx, self.up, self.use_noise = res, w_idx, up, cfg.use_noise
        self.activation, self.act_gain, self.conv_clamp = cfg.activation, ops.activation_gain(cfg.activation), \
            cfg.conv_clamp

    def noise_input(self, batch: int, noise_mode: str, override: jax.Array | None,
                    key: jax.Array | None) -> jax.Array | None:
        """The scaled noise [1|B, R, R, 1]: ``override`` ([R, R] or [B, R, R]) if given, else by mode: 'const'
        the ``noise_const`` buffer, 'random' fresh N(0, 1) from ``key``, 'none' None."""
        if not self.use_noise or noise_mode == "none":
            return None
        if override is not None:
            n = jnp.asarray(override, jnp.float32)
            n = n[None] if n.ndim == 2 else n  # [R, R] or [B, R, R]
            return n[..., None] * self.noise_strength[...]
        if noise_mode == "const":
            return (self.noise_const[...] * self.noise_strength[...])[None, :, :, None]
        if noise_mode == "random":
            if key is None:
                raise ConfigError("noise_mode='random' needs a PRNG key")
            return jax.random.normal(key, (batch, self.res, self.res, 1), jnp.float32) * self.noise_strength[...]
        raise ConfigError(f"noise_mode={noise_mode!r}: expected 'const', 'none' or 'random'")

    def __call__(self, x: jax.Array, style: jax.Array, noise_mode: str = "const", noise: jax.Array | None = None,
                 key: jax.Array | None = None, gain: float = 1.0) -> jax.Array:
        """``style`` [B, in] the affine output (S space); the noise by `noise_input` (``noise`` an override map
        [R, R] or [B, R, R], ``key`` for 'random')."""
        n = self.noise_input(style.shape[0], noise_mode, noise, key)
        x = ops.modulated_conv2d(x, self.weight[...], style, noise=n, up=self.up, padding=1,
                                 resample_filter=self.resample_filter[...], flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias[...], act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nnx.Module):
    """``ToRGBLayer``: 1x1 modulated conv without demodulation, bias, clamp: x [B, R, R, in] -> [B, R, R, rgb].

    ``affine`` FullyConnectedLayer(w_dim, in), ``weight`` [1, 1, in, rgb] HWIO, ``bias`` [rgb]; the official
    weight gain ``1/sqrt(in)`` scales the style."""

    def __init__(self, cfg: Config, w_idx: int, cin: int, cout: int) -> None:
        self.affine = FullyConnectedLayer(cfg.w_dim, cin)
        self.weight = param(1, 1, cin, cout)
        self.bias = param(cout)
        self.w_idx, self.cin, self.conv_clamp = w_idx, cin, cfg.conv_clamp

    def __call__(self, x: jax.Array, style: jax.Array) -> jax.Array:
        """``style`` [B, in] the raw affine output (before the weight gain)."""
        y = ops.modulated_conv2d(x, self.weight[...], style * (1 / np.sqrt(self.cin)), demodulate=False)
        return ops.bias_act(y, self.bias[...], clamp=self.conv_clamp)


class Conv2dLayer(nnx.Module):
    """``Conv2dLayer(in, out, kernel_size=1, bias=False, up=2)``, the resnet ``skip``:
    x [B, R/2, R/2, in] -> [B, R, R, out] (then times sqrt(0.5)); ``weight`` [1, 1, in, out] HWIO."""

    def __init__(self, cfg: Config, cin: int, cout: int) -> None:
        self.weight = param(1, 1, cin, cout)
        self.resample_filter = const(cfg.filter)
        self.cin = cin

    def __call__(self, x: jax.Array) -> jax.Array:
        y = ops.conv2d_resample(x, self.weight[...] * (1 / np.sqrt(self.cin)), f=self.resample_filter[...], up=2,
                                flip_weight=False)
        return y * np.float32(np.sqrt(0.5))


class SynthesisBlock(nnx.Module):
    """``SynthesisBlock`` at resolution R: ``const`` [4, 4, C] (b4 only), ``conv0`` (upsampling
    SynthesisLayer, R > 4), ``conv1`` (SynthesisLayer), ``torgb`` (ToRGBLayer: last block, or every block of
    the 'skip' architecture), ``skip`` (Conv2dLayer, 'resnet', R > 4).

    (x [B, R/2, R/2, in] or None at b4, img [B, R/2, R/2, rgb] or None) -> (x [B, R, R, out], img [B, R, R, rgb]
    or None)."""

    def __init__(self, cfg: Config, res: int) -> None:
        self.res, self.architecture = res, cfg.architecture
        layers = {name: (w_idx, c_in, c_out) for r, name, w_idx, c_in, c_out in cfg.layers if r == res}
        if res == 4:
            self.const = param(4, 4, cfg.channels(4))
        else:
            self.conv0 = SynthesisLayer(cfg, res, *layers["conv0"], up=2)
        self.conv1 = SynthesisLayer(cfg, res, *layers["conv1"], up=1)
        if "torgb" in layers:
            self.torgb = ToRGBLayer(cfg, *layers["torgb"])
        if cfg.architecture == "resnet" and res > 4:
            self.skip = Conv2dLayer(cfg, cfg.channels(res // 2), cfg.channels(res))
        self.resample_filter = const(cfg.filter)
        self.has_torgb = "torgb" in layers

    def __call__(self, x: jax.Array | None, img: jax.Array | None, styles: dict[str, jax.Array],
                 noise_mode: str = "const", noise: dict | None = None,
                 keys: dict | None = None) -> tuple[jax.Array, jax.Array | None]:
        """``styles`` {'b{R}.{layer}': [B, in]} (S space, at least this block's layers); ``noise`` optional
        override maps and ``keys`` the 'random' noise keys, by the same names."""
        noise, keys, p = noise or {}, keys or {}, f"b{self.res}."

        def conv(layer: SynthesisLayer, name: str, x: jax.Array, gain: float = 1.0) -> jax.Array:
            return layer(x, styles[p + name], noise_mode, noise.get(p + name), keys.get(p + name), gain=gain)

        if self.res == 4:
            const = self.const[...]
            x = jnp.broadcast_to(const[None], (styles[p + "conv1"].shape[0],) + const.shape)
            x = conv(self.conv1, "conv1", x)
        elif self.architecture == "resnet":
            y = self.skip(x)
            x = conv(self.conv0, "conv0", x)
            x = conv(self.conv1, "conv1", x, gain=float(np.sqrt(0.5)))
            x = y + x
        else:
            x = conv(self.conv0, "conv0", x)
            x = conv(self.conv1, "conv1", x)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter[...])
        if self.has_torgb:
            y = self.torgb(x, styles[p + "torgb"])
            img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nnx.Module):
    """``SynthesisNetwork``: ``b4``, ``b8``, ... ``b{R}`` SynthesisBlocks.

    ws [B, num_ws, w_dim] (or S-space styles) -> img [B, R, R, img_channels]."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        for res in cfg.block_resolutions:
            setattr(self, f"b{res}", SynthesisBlock(cfg, res))

    def layer(self, name: str) -> nnx.Module:
        """The module of a styled layer name ('b8.conv0', 'b64.torgb')."""
        block, _, layer = name.partition(".")
        return getattr(getattr(self, block), layer)

    def styles(self, ws: jax.Array) -> dict[str, jax.Array]:
        """S space: ws [B, num_ws, w_dim] -> {'b{R}.{layer}': raw affine output [B, in]} (ToRGB's before its
        1/sqrt(in) weight gain), in forward order."""
        cfg = self.cfg
        if ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
            raise ConfigError(f"ws has shape {tuple(ws.shape)}, expected [B, {cfg.num_ws}, {cfg.w_dim}]")
        return {name: self.layer(name).affine(ws[:, self.layer(name).w_idx]) for name in cfg.layer_names}

    def blocks(self, x: jax.Array | None, img: jax.Array | None, styles: dict[str, jax.Array], first: int,
               last: int, noise_mode: str = "const", noise: dict | None = None, keys: dict | None = None,
               out: dict | None = None) -> tuple[jax.Array, jax.Array | None]:
        """SynthesisBlocks first..last (1-based: block 1 is b4, taking x = img = None) -> (x, img): the whole
        synthesis, or the split forward of the multi-code prior (`jaxinv.mgan`). `keys`: the 'random' noise keys
        by noise-layer name; `out`: a dict that receives each block's (x, img) under 'b{R}'."""
        for res in self.cfg.block_resolutions[first - 1:last]:
            x, img = getattr(self, f"b{res}")(x, img, styles, noise_mode, noise, keys)
            if out is not None:
                out[f"b{res}"] = (x, img)
        return x, img

    def __call__(self, ws: jax.Array | None = None, *, styles: dict | None = None, noise_mode: str = "const",
                 noise: dict | None = None, key: jax.Array | None = None, return_blocks: bool = False):
        """See the free function `synthesis`."""
        cfg = self.cfg
        if styles is None:
            if ws is None:
                raise ConfigError("synthesis needs ws or styles")
            styles = self.styles(ws)
        keys = dict(zip([n for n, _ in cfg.noise_layers], jax.random.split(key, len(cfg.noise_layers)),
                        strict=True)) if (key is not None and noise_mode == "random") else {}
        blocks: dict | None = {} if return_blocks else None
        _, img = self.blocks(None, None, styles, 1, len(cfg.block_resolutions), noise_mode, noise, keys, blocks)
        return (img, blocks) if return_blocks else img


class Generator(nnx.Module):
    """``Generator``: ``mapping`` (MappingNetwork) then ``synthesis`` (SynthesisNetwork).

    z [B, z_dim] (+ c [B, c_dim]) -> img [B, R, R, img_channels]."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    def __call__(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None, noise_mode: str = "const",
                 key: jax.Array | None = None) -> jax.Array:
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, key=key)


# ---------------------------------------------------------------------------------------------
# The engine's free functions (one call into the bound module)


def mapping(cfg: Config, params: dict, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
            truncation_cutoff: int | None = None) -> jax.Array:
    """z [B, z_dim] (+ c [B, c_dim]) -> ws [B, num_ws, w_dim]."""
    return bind(Generator, cfg, params).mapping(z, c, truncation_psi, truncation_cutoff)


def truncate(cfg: Config, params: dict, ws: jax.Array, psi: float | jax.Array = 1.0,
             cutoff: int | None = None) -> jax.Array:
    """``w_avg.lerp(ws, psi)`` on the first ``cutoff`` layers (all if None)."""
    return bind(Generator, cfg, params).mapping.truncate(ws, psi, cutoff)


def styles(cfg: Config, params: dict, ws: jax.Array) -> dict[str, jax.Array]:
    """S space: raw output of every layer's affine (ToRGB's before its 1/sqrt(in) weight gain)."""
    return bind(Generator, cfg, params).synthesis.styles(ws)


def synthesis(cfg: Config, params: dict, ws: jax.Array | None = None, *, styles: dict | None = None,
              noise_mode: str = "const", noise: dict | None = None, key: jax.Array | None = None,
              return_blocks: bool = False):
    """ws [B, num_ws, w_dim] (or precomputed S-space ``styles``) -> img [B, H, W, img_channels].

    ``noise`` optionally overrides per-layer noise maps ([R, R] or [B, R, R], scaled by the
    layer's noise_strength, like the official noise_const buffers the projector optimises).
    With ``return_blocks`` also returns {"b{R}": (x, img)} per block.
    """
    return bind(Generator, cfg, params).synthesis(ws, styles=styles, noise_mode=noise_mode, noise=noise, key=key,
                                                  return_blocks=return_blocks)


def generate(cfg: Config, params: dict, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
             truncation_cutoff: int | None = None, noise_mode: str = "const",
             key: jax.Array | None = None) -> jax.Array:
    return bind(Generator, cfg, params)(z, c, truncation_psi, truncation_cutoff, noise_mode, key)


def random_params(cfg: Config, seed: int = 0) -> dict:
    """Random params of the right shapes (full-size sanity checks, benchmarks): unit normal weights."""
    rng = np.random.default_rng(seed)
    sd = {}
    for name, shape in ((e.name, e.shape) for e in param_table(cfg)):
        sd[name] = rng.standard_normal(shape).astype(np.float32)
        if name.endswith("affine.bias"):
            sd[name] = np.ones(shape, np.float32)
        elif name.endswith("noise_strength") or name.endswith(".bias"):
            sd[name] = np.zeros(shape, np.float32)
    return params_from_state_dict(cfg, sd)
