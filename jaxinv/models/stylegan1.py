"""StyleGAN (v1) generator (NVlabs/stylegan `training/networks_stylegan.py`: `G_style` = `G_mapping` +
`G_synthesis`, TensorFlow).

    mapping     z -> pixel norm -> Dense0..Dense{L-1} (equalised lr with lrmul 0.01, leaky ReLU 0.2 without
                gain) -> w, broadcast to num_ws = 2 log2(resolution) - 2; truncation towards dlatent_avg with
                psi on layers < truncation_cutoff (G_style's default cutoff 8)
    synthesis   4x4/Const, 4x4/Conv, then per resolution RxR/Conv0_up (2x upscale + 3x3 conv, then the [1, 2, 1]
                blur), RxR/Conv1; every layer ends with the epilogue  + noise * Noise/weight (per channel),
                + bias, leaky ReLU 0.2, instance norm, StyleMod (x * (s[:C] + 1) + s[C:], s = affine of w[layer])
                ToRGB_lod0 (1x1 conv + bias) at the end; a fractional `lod` blends levels as in PGGAN.

Conv0_up is fused (a transposed conv whose 4x4 kernel sums four shifted copies of the 3x3 one) at output
resolutions >= 128 (`fused_scale='auto'`); that equals nearest upscaling followed by a 3x3 'SAME'
cross-correlation with the spatially flipped kernel (golden README 10.3), which is what runs here; the
non-fused path uses the kernel unflipped. Equalised-lr scales are folded into the weights at load time.

Layer names ("4x4.Const", "8x8.Conv0_up", ...) key the S-space styles ([B, 2C], the StyleMod dense + bias
output) and the noise maps ([R, R], scaled per channel by the layer's Noise/weight).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models.progressive import check_variables, conv2d_same, grow, to_rgb, upscale2d

FAMILY = "stylegan1"
_MAPPING_DEFAULTS = {"latent_size": 512, "label_size": 0, "dlatent_size": 512, "dlatent_broadcast": None,
                     "mapping_layers": 8, "mapping_fmaps": 512, "mapping_lrmul": 0.01,
                     "mapping_nonlinearity": "lrelu", "use_wscale": True, "normalize_latents": True,
                     "dtype": "float32"}
_SYNTHESIS_DEFAULTS = {"dlatent_size": 512, "num_channels": 3, "resolution": 1024, "fmap_base": 8192,
                       "fmap_decay": 1.0, "fmap_max": 512, "use_styles": True, "const_input_layer": True,
                       "use_noise": True, "randomize_noise": True, "nonlinearity": "lrelu", "use_wscale": True,
                       "use_pixel_norm": False, "use_instance_norm": True, "dtype": "float32",
                       "fused_scale": "auto", "blur_filter": [1, 2, 1], "structure": "auto"}
# kwargs whose non-default values this implementation does not cover
_FIXED = {"mapping_nonlinearity": "lrelu", "nonlinearity": "lrelu", "use_wscale": True, "normalize_latents": True,
          "use_styles": True, "const_input_layer": True, "use_pixel_norm": False, "use_instance_norm": True,
          "dtype": "float32", "blur_filter": [1, 2, 1], "label_size": 0}
DEFAULT_TRUNCATION_CUTOFF = 8  # G_style's default


@dataclass(frozen=True)
class Config:
    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    channels: tuple[int, ...] = ()  # nf(res - 1) for res = 4, 8, ..., img_resolution
    use_noise: bool = True
    fused_scale: bool | str = "auto"  # True / False / "auto" (fused at output resolutions >= 128)
    c_dim: int = 0
    mapping_activation: str = "lrelu"

    @property
    def resolution_log2(self) -> int:
        return int(np.log2(self.img_resolution))

    @property
    def num_ws(self) -> int:
        return 2 * self.resolution_log2 - 2

    @cached_property
    def layers(self) -> tuple[tuple[str, int, int, int], ...]:
        """(layer name, resolution, in channels, out channels) in forward order (= w index)."""
        c = self.channels
        out = [("4x4.Const", 4, c[0], c[0]), ("4x4.Conv", 4, c[0], c[0])]
        for i in range(1, len(c)):
            r = 4 * 2**i
            out += [(f"{r}x{r}.Conv0_up", r, c[i - 1], c[i]), (f"{r}x{r}.Conv1", r, c[i], c[i])]
        return tuple(out)

    @property
    def noise_layers(self) -> list[tuple[str, int]]:
        return [(name, res) for name, res, *_ in self.layers] if self.use_noise else []

    def fused(self, res: int) -> bool:
        return res >= 128 if self.fused_scale == "auto" else bool(self.fused_scale)


def config_from_kwargs(mapping_kw: dict[str, Any], synthesis_kw: dict[str, Any], where: str = "StyleGAN") -> Config:
    """Config from the static_kwargs of G_mapping and G_synthesis (build-function defaults for the rest;
    like the official functions, kwargs they do not take are ignored)."""
    m = {**_MAPPING_DEFAULTS, **{k: v for k, v in mapping_kw.items() if k in _MAPPING_DEFAULTS}}
    s = {**_SYNTHESIS_DEFAULTS, **{k: v for k, v in synthesis_kw.items() if k in _SYNTHESIS_DEFAULTS}}
    for k, v in _FIXED.items():
        for kw in (m, s):
            if k in kw and kw[k] != v:
                raise CheckpointError(f"{where}: StyleGAN {k}={kw[k]!r} is not supported (only {v!r})")
    res = int(s["resolution"])
    if res < 8 or res & (res - 1):
        raise CheckpointError(f"{where}: resolution {res} is not a power of 2 >= 8")
    if m["dlatent_size"] != s["dlatent_size"]:
        raise CheckpointError(f"{where}: mapping dlatent_size {m['dlatent_size']} != synthesis {s['dlatent_size']}")
    if s["fused_scale"] not in (True, False, "auto"):
        raise CheckpointError(f"{where}: fused_scale={s['fused_scale']!r}")

    def nf(stage: int) -> int:
        return min(int(s["fmap_base"] / (2.0 ** (stage * s["fmap_decay"]))), int(s["fmap_max"]))

    return Config(z_dim=int(m["latent_size"]), w_dim=int(m["dlatent_size"]), img_resolution=res,
                  img_channels=int(s["num_channels"]), mapping_layers=int(m["mapping_layers"]),
                  mapping_fmaps=int(m["mapping_fmaps"]),
                  channels=tuple(nf(r - 1) for r in range(2, int(np.log2(res)) + 1)),
                  use_noise=bool(s["use_noise"]), fused_scale=s["fused_scale"])


def variable_table(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Variable name ('mapping/...', 'synthesis/...', 'dlatent_avg', 'lod') -> shape, as G_style creates them."""
    t: dict[str, tuple[int, ...]] = {"lod": (), "dlatent_avg": (cfg.w_dim,), "synthesis/lod": ()}
    fan = cfg.z_dim
    for i in range(cfg.mapping_layers):
        out = cfg.w_dim if i == cfg.mapping_layers - 1 else cfg.mapping_fmaps
        t[f"mapping/Dense{i}/weight"], t[f"mapping/Dense{i}/bias"] = (fan, out), (out,)
        fan = out
    if cfg.use_noise:
        for i, (_, res, *_) in enumerate(cfg.layers):
            t[f"synthesis/noise{i}"] = (1, 1, res, res)
    for name, _, cin, cout in cfg.layers:
        p = "synthesis/" + name.replace(".", "/")
        if name == "4x4.Const":
            t[f"{p}/const"] = (1, cout, 4, 4)
        else:
            t[f"{p}/weight"] = (3, 3, cin, cout)
        if cfg.use_noise:
            t[f"{p}/Noise/weight"] = (cout,)
        t[f"{p}/bias"] = (cout,)
        t[f"{p}/StyleMod/weight"], t[f"{p}/StyleMod/bias"] = (cfg.w_dim, 2 * cout), (2 * cout,)
    for i, c in enumerate(cfg.channels):
        lod = len(cfg.channels) - 1 - i
        t[f"synthesis/ToRGB_lod{lod}/weight"] = (1, 1, c, cfg.img_channels)
        t[f"synthesis/ToRGB_lod{lod}/bias"] = (cfg.img_channels,)
    return t


def params_from_variables(cfg: Config, tf: dict[str, np.ndarray], where: str = "StyleGAN") -> dict:
    check_variables(variable_table(cfg), tf, where, "StyleGAN G_style")

    def f32(a: Any) -> jax.Array:
        return jnp.asarray(np.ascontiguousarray(a), jnp.float32)

    def v(name: str) -> np.ndarray:
        return np.asarray(tf[name], np.float64)

    lrmul = 0.01
    mapping: dict = {"w_avg": f32(v("dlatent_avg"))}
    for i in range(cfg.mapping_layers):
        w = v(f"mapping/Dense{i}/weight")
        mapping[f"Dense{i}"] = {"weight": f32(w * (np.sqrt(2) / np.sqrt(w.shape[0]) * lrmul)),
                                "bias": f32(v(f"mapping/Dense{i}/bias") * lrmul)}
    syn: dict = {}
    for i, (name, res, cin, _) in enumerate(cfg.layers):
        p = "synthesis/" + name.replace(".", "/")
        layer: dict = {"bias": f32(v(f"{p}/bias")),
                       "style_weight": f32(v(f"{p}/StyleMod/weight") / np.sqrt(cfg.w_dim)),
                       "style_bias": f32(v(f"{p}/StyleMod/bias"))}
        if name == "4x4.Const":
            layer["const"] = f32(v(f"{p}/const")[0].transpose(1, 2, 0))
        else:
            w = v(f"{p}/weight") * (np.sqrt(2) / np.sqrt(9 * cin))
            fused = name.endswith("Conv0_up") and cfg.fused(res)
            layer["weight"] = f32(w[::-1, ::-1] if fused else w)
        if cfg.use_noise:
            layer["noise_weight"] = f32(v(f"{p}/Noise/weight"))
            layer["noise_const"] = f32(v(f"synthesis/noise{i}")[0, 0])
        syn[name] = layer
    for i, c in enumerate(cfg.channels):
        lod = len(cfg.channels) - 1 - i
        syn[f"ToRGB_lod{lod}"] = {"weight": f32(v(f"synthesis/ToRGB_lod{lod}/weight")[0, 0] / np.sqrt(c)),
                                  "bias": f32(v(f"synthesis/ToRGB_lod{lod}/bias"))}
    return {"mapping": mapping, "synthesis": syn}


def from_source(src: Any) -> tuple[Config, dict]:
    where = str((getattr(src, "provenance", None) or {}).get("source") or "StyleGAN")
    init = src.init
    cfg = config_from_kwargs(dict(init.get("mapping_kwargs", {})), dict(init.get("synthesis_kwargs", {})), where)
    return cfg, params_from_variables(cfg, src.state_dict, where)


# ---------------------------------------------------------------------------------------------------------
# Forward

_DN = ("NHWC", "HWIO", "NHWC")
_BLUR = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def _lrelu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, x * 0.2)


def mapping(cfg: Config, params: dict, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
            truncation_cutoff: int | None = DEFAULT_TRUNCATION_CUTOFF) -> jax.Array:
    """z [B, z_dim] -> ws [B, num_ws, w_dim], truncated towards dlatent_avg on layers < truncation_cutoff."""
    if c is not None:
        raise ConfigError("StyleGAN (v1): conditional generators are not supported")
    x = ops.normalize_2nd_moment(jnp.asarray(z, jnp.float32))  # pixel norm, eps 1e-8
    for i in range(cfg.mapping_layers):
        d = params["mapping"][f"Dense{i}"]
        x = _lrelu(x @ d["weight"] + d["bias"])
    ws = jnp.broadcast_to(x[:, None], (x.shape[0], cfg.num_ws, cfg.w_dim))
    if isinstance(truncation_psi, int | float) and truncation_psi == 1:
        return ws
    coef = jnp.where(jnp.arange(cfg.num_ws) < (cfg.num_ws if truncation_cutoff is None else truncation_cutoff),
                     truncation_psi, 1.0)[None, :, None]
    avg = params["mapping"]["w_avg"]
    return avg + (ws - avg) * coef


def affine_styles(cfg: Config, params: dict, ws: jax.Array) -> dict[str, jax.Array]:
    """S space: every layer's StyleMod output [B, 2C] (dense + bias of its w)."""
    if ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
        raise ConfigError(f"ws has shape {tuple(ws.shape)}, expected [B, {cfg.num_ws}, {cfg.w_dim}]")
    sp = params["synthesis"]
    return {name: ws[:, i] @ sp[name]["style_weight"] + sp[name]["style_bias"]
            for i, (name, *_) in enumerate(cfg.layers)}


styles = affine_styles  # the family interface's name (synthesis takes a `styles` argument)


def _blur(x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    k = jnp.asarray(np.tile(_BLUR[:, :, None, None], (1, 1, 1, c)), x.dtype)
    return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=_DN, feature_group_count=c)


def _torgb(params: dict, x: jax.Array, lod: int) -> jax.Array:
    return to_rgb(params["synthesis"][f"ToRGB_lod{lod}"], x)


def synthesis(cfg: Config, params: dict, ws: jax.Array | None = None, *, styles: dict | None = None,
              noise_mode: str = "const", noise: dict | None = None, lod: float = 0.0,
              return_layers: bool = False) -> Any:
    """ws [B, num_ws, w_dim] (or S-space `styles`) -> image [B, R, R, img_channels].

    noise_mode "const": the stored noise inputs (the official `randomize_noise=False`), "none": no noise;
    `noise` {layer: [R, R] or [B, R, R]} replaces stored maps. `lod` (static) blends levels; 0 = final.
    return_layers: also every layer's epilogue output {name: [B, R, R, C]}.
    """
    if styles is None:
        if ws is None:
            raise ConfigError("synthesis needs ws or styles")
        styles = affine_styles(cfg, params, ws)
    if noise_mode not in ("const", "none"):
        raise ConfigError(f"noise_mode={noise_mode!r}: expected 'const' or 'none'")
    sp = params["synthesis"]
    batch = next(iter(styles.values())).shape[0]
    outs = {}

    def epilogue(x: jax.Array, name: str) -> jax.Array:
        layer = sp[name]
        if cfg.use_noise and noise_mode != "none":
            n = noise[name] if noise is not None and name in noise else layer["noise_const"]
            n = jnp.asarray(n, jnp.float32)
            x = x + (n[None] if n.ndim == 2 else n)[..., None] * layer["noise_weight"]
        x = _lrelu(x + layer["bias"])
        x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
        x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + 1e-8)
        s = styles[name]
        c = x.shape[-1]
        x = x * (s[:, None, None, :c] + 1) + s[:, None, None, c:]
        outs[name] = x
        return x

    x = epilogue(jnp.broadcast_to(sp["4x4.Const"]["const"][None], (batch, 4, 4, cfg.channels[0])), "4x4.Const")
    x = epilogue(conv2d_same(x, sp["4x4.Conv"]["weight"]), "4x4.Conv")
    top = len(cfg.channels) - 1
    img = _torgb(params, x, top)
    for i in range(1, len(cfg.channels)):
        r = f"{4 * 2**i}x{4 * 2**i}"
        x = epilogue(_blur(conv2d_same(upscale2d(x), sp[f"{r}.Conv0_up"]["weight"])), f"{r}.Conv0_up")
        x = epilogue(conv2d_same(x, sp[f"{r}.Conv1"]["weight"]), f"{r}.Conv1")
        img = grow(img, partial(_torgb, params, x, top - i), lod, top - i)
    return (img, outs) if return_layers else img
