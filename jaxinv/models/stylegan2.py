"""NVlabs StyleGAN2 generator (stylegan2-ada-pytorch `training.networks.Generator` and the stylegan3
repo's `training.networks_stylegan2.Generator`, which share weights and maths).

Pure functions of ``(cfg, params, inputs)``; images NHWC. Params mirror the official module tree:
``params["mapping"]["fc0"]["weight"]`` ``[in, out]``, ``params["synthesis"]["b8"]["conv0"]["weight"]``
HWIO, ``...["noise_const"]`` ``[R, R]``, ``params["synthesis"]["b4"]["const"]`` ``[4, 4, C]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
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
# Forward


def mapping(cfg: Config, params: dict, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
            truncation_cutoff: int | None = None) -> jax.Array:
    """z [B, z_dim] (+ c [B, c_dim]) -> ws [B, num_ws, w_dim]."""
    p = params["mapping"]
    parts = []
    if cfg.z_dim > 0:
        parts.append(ops.normalize_2nd_moment(z.astype(jnp.float32)))
    if cfg.c_dim > 0:
        if c is None:
            raise ConfigError(f"conditional generator (c_dim={cfg.c_dim}) needs a class vector c")
        y = ops.fully_connected(c.astype(jnp.float32), p["embed"]["weight"], p["embed"]["bias"])
        parts.append(ops.normalize_2nd_moment(y))
    x = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    for i in range(cfg.mapping_layers):
        fc = p[f"fc{i}"]
        x = ops.fully_connected(x, fc["weight"], fc["bias"], lr_multiplier=cfg.mapping_lr_multiplier,
                                activation=cfg.mapping_activation)
    ws = jnp.broadcast_to(x[:, None], (x.shape[0], cfg.num_ws, cfg.w_dim))
    return truncate(cfg, params, ws, truncation_psi, truncation_cutoff)


def truncate(cfg: Config, params: dict, ws: jax.Array, psi: float | jax.Array = 1.0,
             cutoff: int | None = None) -> jax.Array:
    """``w_avg.lerp(ws, psi)`` on the first ``cutoff`` layers (all if None)."""
    if isinstance(psi, int | float) and psi == 1:
        return ws
    w_avg = params["mapping"]["w_avg"]
    trunc = w_avg + psi * (ws - w_avg)
    if cutoff is None:
        return trunc
    layer_mask = (jnp.arange(cfg.num_ws) < cutoff)[None, :, None]
    return jnp.where(layer_mask, trunc, ws)


def styles(cfg: Config, params: dict, ws: jax.Array) -> dict[str, jax.Array]:
    """S space: raw output of every layer's affine (ToRGB's before its 1/sqrt(in) weight gain)."""
    return _affine_styles(cfg, params, ws)


def _affine_styles(cfg: Config, params: dict, ws: jax.Array) -> dict[str, jax.Array]:
    if ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
        raise ConfigError(f"ws has shape {tuple(ws.shape)}, expected [B, {cfg.num_ws}, {cfg.w_dim}]")
    out = {}
    for res, name, w_idx, *_ in cfg.layers:
        aff = params["synthesis"][f"b{res}"][name]["affine"]
        out[f"b{res}.{name}"] = ops.fully_connected(ws[:, w_idx], aff["weight"], aff["bias"])
    return out


def _noise_input(cfg: Config, layer: dict, name: str, res: int, batch: int, noise_mode: str,
                 noise: dict | None, key: jax.Array | None) -> jax.Array | None:
    if not cfg.use_noise or noise_mode == "none":
        return None
    if noise is not None and name in noise:
        n = jnp.asarray(noise[name], jnp.float32)
        n = n[None] if n.ndim == 2 else n  # [R, R] or [B, R, R]
        return n[..., None] * layer["noise_strength"]
    if noise_mode == "const":
        return (layer["noise_const"] * layer["noise_strength"])[None, :, :, None]
    if noise_mode == "random":
        if key is None:
            raise ConfigError("noise_mode='random' needs a PRNG key")
        return jax.random.normal(key, (batch, res, res, 1), jnp.float32) * layer["noise_strength"]
    raise ConfigError(f"noise_mode={noise_mode!r}: expected 'const', 'none' or 'random'")


def synthesis(cfg: Config, params: dict, ws: jax.Array | None = None, *, styles: dict | None = None,
              noise_mode: str = "const", noise: dict | None = None, key: jax.Array | None = None,
              return_blocks: bool = False):
    """ws [B, num_ws, w_dim] (or precomputed S-space ``styles``) -> img [B, H, W, img_channels].

    ``noise`` optionally overrides per-layer noise maps ([R, R] or [B, R, R], scaled by the
    layer's noise_strength, like the official noise_const buffers the projector optimises).
    With ``return_blocks`` also returns {"b{R}": (x, img)} per block.
    """
    if styles is None:
        if ws is None:
            raise ConfigError("synthesis needs ws or styles")
        styles = _affine_styles(cfg, params, ws)
    batch = next(iter(styles.values())).shape[0]
    keys = dict(zip([n for n, _ in cfg.noise_layers], jax.random.split(key, len(cfg.noise_layers)), strict=True)) \
        if (key is not None and noise_mode == "random") else {}
    f = cfg.filter
    act_gain = ops.activation_gain(cfg.activation)
    sp = params["synthesis"]

    def layer_fwd(x, res, name, gain=1.0):
        layer = sp[f"b{res}"][name]
        up = 2 if name == "conv0" else 1
        n = _noise_input(cfg, layer, f"b{res}.{name}", res, batch, noise_mode, noise, keys.get(f"b{res}.{name}"))
        x = ops.modulated_conv2d(x, layer["weight"], styles[f"b{res}.{name}"], noise=n, up=up, padding=1,
                                 resample_filter=f, flip_weight=(up == 1))
        clamp = cfg.conv_clamp * gain if cfg.conv_clamp is not None else None
        return ops.bias_act(x, layer["bias"], act=cfg.activation, gain=act_gain * gain, clamp=clamp)

    def torgb(x, res):
        layer = sp[f"b{res}"]["torgb"]
        s = styles[f"b{res}.torgb"] * (1 / np.sqrt(layer["weight"].shape[2]))
        y = ops.modulated_conv2d(x, layer["weight"], s, demodulate=False)
        return ops.bias_act(y, layer["bias"], clamp=cfg.conv_clamp)

    x = img = None
    blocks = {}
    for res in cfg.block_resolutions:
        blk = sp[f"b{res}"]
        if res == 4:
            x = jnp.broadcast_to(blk["const"][None], (batch,) + blk["const"].shape)
            x = layer_fwd(x, res, "conv1")
        elif cfg.architecture == "resnet":
            y = ops.conv2d_resample(x, blk["skip"]["weight"] * (1 / np.sqrt(x.shape[-1])), f=f, up=2,
                                    flip_weight=False)
            y = y * np.float32(np.sqrt(0.5))
            x = layer_fwd(x, res, "conv0")
            x = layer_fwd(x, res, "conv1", gain=float(np.sqrt(0.5)))
            x = y + x
        else:
            x = layer_fwd(x, res, "conv0")
            x = layer_fwd(x, res, "conv1")
        if img is not None:
            img = ops.upsample2d(img, f)
        if res == cfg.img_resolution or cfg.architecture == "skip":
            y = torgb(x, res)
            img = y if img is None else img + y
        if return_blocks:
            blocks[f"b{res}"] = (x, img)
    return (img, blocks) if return_blocks else img


def generate(cfg: Config, params: dict, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
             truncation_cutoff: int | None = None, noise_mode: str = "const",
             key: jax.Array | None = None) -> jax.Array:
    ws = mapping(cfg, params, z, c, truncation_psi, truncation_cutoff)
    return synthesis(cfg, params, ws, noise_mode=noise_mode, key=key)


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
