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

Module tree (`Generator` = G_style; paths as the params dict has them): `mapping.Dense{i}.weight` [in, out],
`mapping.Dense{i}.bias`, `mapping.w_avg` (TF dlatent_avg, a buffer); `synthesis.4x4.Const.const` [4, 4, C],
`synthesis.RxR.Conv0_up.weight` [3, 3, in, out] (HWIO), per layer `bias`, `style_weight` / `style_bias` (TF
StyleMod/weight, StyleMod/bias), `noise_weight` (TF Noise/weight) and the buffer `noise_const` [R, R] (TF
synthesis/noise{i}); `synthesis.ToRGB_lod{L}.weight` [C, img_channels], `.bias`. The blur filter of each
Conv0_up is a const; `lod` is a static argument of the forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models.nn import bind, buffer, const, param
from jaxinv.models.progressive import Scopes, ToRGB, conv2d_same, divided, fill_tf, grow, scaled, upscale2d
from jaxinv.state_dict import Entry, as_is

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


def param_table(cfg: Config) -> list[Entry]:
    """The TF variables as G_style creates them ('mapping/...', 'synthesis/...', 'dlatent_avg', 'lod'): name, shape,
    where each goes in our params and how (equalised-lr scales folded in, layouts to NHWC / HWIO); the two `lod`
    variables are checked (0), not stored."""
    lrmul = 0.01
    t = [Entry("lod", (), None), Entry("synthesis/lod", (), None),
         Entry("dlatent_avg", (cfg.w_dim,), ("mapping", "w_avg"))]
    fan = cfg.z_dim
    for i in range(cfg.mapping_layers):
        out = cfg.w_dim if i == cfg.mapping_layers - 1 else cfg.mapping_fmaps
        t += [Entry(f"mapping/Dense{i}/weight", (fan, out), ("mapping", f"Dense{i}", "weight"),
                    scaled(np.sqrt(2) / np.sqrt(fan) * lrmul)),
              Entry(f"mapping/Dense{i}/bias", (out,), ("mapping", f"Dense{i}", "bias"), scaled(lrmul))]
        fan = out
    for i, (name, res, cin, cout) in enumerate(cfg.layers):
        p, path = "synthesis/" + name.replace(".", "/"), ("synthesis", name)
        if name == "4x4.Const":
            t.append(Entry(f"{p}/const", (1, cout, 4, 4), (*path, "const"), _const_hwc))
        else:
            fused = name.endswith("Conv0_up") and cfg.fused(res)
            t.append(Entry(f"{p}/weight", (3, 3, cin, cout), (*path, "weight"),
                           scaled(np.sqrt(2) / np.sqrt(9 * cin), _flip if fused else as_is)))
        if cfg.use_noise:
            t += [Entry(f"{p}/Noise/weight", (cout,), (*path, "noise_weight")),
                  Entry(f"synthesis/noise{i}", (1, 1, res, res), (*path, "noise_const"), _first)]
        t += [Entry(f"{p}/bias", (cout,), (*path, "bias")),
              Entry(f"{p}/StyleMod/weight", (cfg.w_dim, 2 * cout), (*path, "style_weight"),
                    divided(np.sqrt(cfg.w_dim))),
              Entry(f"{p}/StyleMod/bias", (2 * cout,), (*path, "style_bias"))]
    for i, c in enumerate(cfg.channels):
        n = f"ToRGB_lod{len(cfg.channels) - 1 - i}"
        t += [Entry(f"synthesis/{n}/weight", (1, 1, c, cfg.img_channels), ("synthesis", n, "weight"),
                    divided(np.sqrt(c), _first)),
              Entry(f"synthesis/{n}/bias", (cfg.img_channels,), ("synthesis", n, "bias"))]
    return t


def _first(a: np.ndarray) -> np.ndarray:  # [1, 1, ...] -> [...]: noise inputs, 1x1 ToRGB kernels
    return a[0, 0]


def _const_hwc(a: np.ndarray) -> np.ndarray:  # 4x4/Const/const [1, C, 4, 4] -> [4, 4, C]
    return a[0].transpose(1, 2, 0)


def _flip(a: np.ndarray) -> np.ndarray:  # the fused up-conv's kernel, run after nearest upscaling (module doc)
    return a[::-1, ::-1]


def variable_table(cfg: Config) -> dict[str, tuple[int, ...]]:
    """TF variable name -> shape, as G_style creates them (`lod` included)."""
    return {e.name: e.shape for e in param_table(cfg)}


def params_from_variables(cfg: Config, tf: dict[str, np.ndarray], where: str = "StyleGAN") -> dict:
    """Our params from the TF variables (names / shapes checked; scales folded in; layouts to NHWC)."""
    return fill_tf(param_table(cfg), tf, where, "StyleGAN G_style")


def from_source(src: Any) -> tuple[Config, dict]:
    where = str((getattr(src, "provenance", None) or {}).get("source") or "StyleGAN")
    init = src.init
    cfg = config_from_kwargs(dict(init.get("mapping_kwargs", {})), dict(init.get("synthesis_kwargs", {})), where)
    return cfg, params_from_variables(cfg, src.state_dict, where)


# ---------------------------------------------------------------------------------------------------------
# Forward: G_style = mapping (G_mapping: Dense{i}, w_avg) + synthesis (G_synthesis: the layer scopes
# '4x4.Const', '4x4.Conv', 'RxR.Conv0_up', 'RxR.Conv1' and 'ToRGB_lod{L}')

_BLUR = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0
_DN = ("NHWC", "HWIO", "NHWC")


def _lrelu(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, x * 0.2)


class Dense(nnx.Module):
    """mapping/Dense{i}: `weight` [in, out] (gain sqrt(2) / sqrt(in) and lrmul folded in), `bias` [out] (lrmul
    folded in); leaky ReLU 0.2 (no gain) after it."""

    def __init__(self, fan_in: int, fan_out: int) -> None:
        self.weight = param(fan_in, fan_out)
        self.bias = param(fan_out)

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, in] -> [B, out]."""
        return _lrelu(x @ self.weight[...] + self.bias[...])


class Mapping(nnx.Module):
    """G_mapping: pixel norm, Dense0 .. Dense{L-1}, broadcast to num_ws; `w_avg` [w_dim] (TF `dlatent_avg`)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.w_avg = buffer(cfg.w_dim)
        fan = cfg.z_dim
        for i in range(cfg.mapping_layers):
            out = cfg.w_dim if i == cfg.mapping_layers - 1 else cfg.mapping_fmaps
            setattr(self, f"Dense{i}", Dense(fan, out))
            fan = out

    def __call__(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = DEFAULT_TRUNCATION_CUTOFF) -> jax.Array:
        """z [B, z_dim] -> ws [B, num_ws, w_dim], truncated towards w_avg on layers < truncation_cutoff."""
        cfg = self.cfg
        if c is not None:
            raise ConfigError("StyleGAN (v1): conditional generators are not supported")
        x = ops.normalize_2nd_moment(jnp.asarray(z, jnp.float32))  # pixel norm, eps 1e-8
        for i in range(cfg.mapping_layers):
            x = getattr(self, f"Dense{i}")(x)
        ws = jnp.broadcast_to(x[:, None], (x.shape[0], cfg.num_ws, cfg.w_dim))
        if isinstance(truncation_psi, int | float) and truncation_psi == 1:
            return ws
        coef = jnp.where(jnp.arange(cfg.num_ws) < (cfg.num_ws if truncation_cutoff is None else truncation_cutoff),
                         truncation_psi, 1.0)[None, :, None]
        avg = self.w_avg[...]
        return avg + (ws - avg) * coef


class Layer(nnx.Module):
    """A synthesis layer scope (4x4/Const, 4x4/Conv, RxR/Conv0_up, RxR/Conv1): its input op, then the epilogue
    + noise * `noise_weight` [C] (Noise/weight; stored map `noise_const` [R, R], TF `synthesis/noise{i}`),
    + `bias` [C], leaky ReLU 0.2, instance norm, StyleMod (`style_weight` [w_dim, 2C], `style_bias` [2C]).
    Input op: Const `const` [4, 4, C]; Conv / Conv1 a 3x3 'SAME' conv `weight` [3, 3, in, C]; Conv0_up nearest 2x
    upscaling, the 3x3 conv (kernel flipped at load time when fused) and the [1, 2, 1] blur (`blur` const)."""

    def __init__(self, cfg: Config, kind: str, res: int, cin: int, cout: int) -> None:
        self.kind, self.use_noise = kind, cfg.use_noise
        if kind == "Const":
            self.const = param(4, 4, cout)
        else:
            self.weight = param(3, 3, cin, cout)
        if kind == "Conv0_up":
            self.blur = const(np.tile(_BLUR[:, :, None, None], (1, 1, 1, cout)))  # depthwise [3, 3, 1, C]
        if cfg.use_noise:
            self.noise_weight = param(cout)
            self.noise_const = buffer(res, res)
        self.bias = param(cout)
        self.style_weight = param(cfg.w_dim, 2 * cout)
        self.style_bias = param(2 * cout)

    def style(self, w: jax.Array) -> jax.Array:
        """w [B, w_dim] -> the StyleMod style [B, 2C] (S space)."""
        return w @ self.style_weight[...] + self.style_bias[...]

    def __call__(self, x: jax.Array | int, s: jax.Array, noise_mode: str = "const",
                 noise: jax.Array | None = None) -> jax.Array:
        """x [B, R/2, R/2, in] (Conv0_up), [B, R, R, in] (Conv, Conv1) or the batch size (Const); style s [B, 2C];
        noise [R, R] / [B, R, R] replaces `noise_const` -> [B, R, R, C]."""
        if self.kind == "Const":
            k = self.const[...]
            x = jnp.broadcast_to(k[None], (x, *k.shape))
        elif self.kind == "Conv0_up":
            x = conv2d_same(upscale2d(x), self.weight[...])
            c = x.shape[-1]
            x = jax.lax.conv_general_dilated(x, jnp.asarray(self.blur[...], x.dtype), (1, 1), "SAME",
                                             dimension_numbers=_DN, feature_group_count=c)
        else:
            x = conv2d_same(x, self.weight[...])
        if self.use_noise and noise_mode != "none":
            n = jnp.asarray(self.noise_const[...] if noise is None else noise, jnp.float32)
            x = x + (n[None] if n.ndim == 2 else n)[..., None] * self.noise_weight[...]
        x = _lrelu(x + self.bias[...])
        x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
        x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + 1e-8)
        c = x.shape[-1]
        return x * (s[:, None, None, :c] + 1) + s[:, None, None, c:]


class Synthesis(Scopes):
    """G_synthesis: the layer scopes '4x4.Const', '4x4.Conv', 'RxR.Conv0_up', 'RxR.Conv1' (Layer) and
    'ToRGB_lod{L}' (ToRGB, L = log2(resolution / R))."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        for name, res, cin, cout in cfg.layers:
            self.add(name, Layer(cfg, name.split(".")[1], res, cin, cout))
        for i, c in enumerate(cfg.channels):
            self.add(f"ToRGB_lod{len(cfg.channels) - 1 - i}", ToRGB(c, cfg.img_channels))

    def styles(self, ws: jax.Array) -> dict[str, jax.Array]:
        """ws [B, num_ws, w_dim] -> S space: every layer's StyleMod output {name: [B, 2C]}."""
        cfg = self.cfg
        if ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
            raise ConfigError(f"ws has shape {tuple(ws.shape)}, expected [B, {cfg.num_ws}, {cfg.w_dim}]")
        return {name: self[name].style(ws[:, i]) for i, (name, *_) in enumerate(cfg.layers)}

    def __call__(self, ws: jax.Array | None = None, *, styles: dict | None = None, noise_mode: str = "const",
                 noise: dict | None = None, lod: float = 0.0, return_layers: bool = False) -> Any:
        """ws [B, num_ws, w_dim] (or S-space `styles`) -> image [B, R, R, img_channels] (module doc of
        `synthesis`); return_layers: also every layer's output {name: [B, R, R, C]}."""
        cfg = self.cfg
        if styles is None:
            if ws is None:
                raise ConfigError("synthesis needs ws or styles")
            styles = self.styles(ws)
        if noise_mode not in ("const", "none"):
            raise ConfigError(f"noise_mode={noise_mode!r}: expected 'const' or 'none'")
        outs = {}

        def layer(x: jax.Array | int, name: str) -> jax.Array:
            n = noise[name] if noise is not None and name in noise else None
            outs[name] = self[name](x, styles[name], noise_mode, n)
            return outs[name]

        x = layer(next(iter(styles.values())).shape[0], "4x4.Const")
        x = layer(x, "4x4.Conv")
        top = len(cfg.channels) - 1
        img = self[f"ToRGB_lod{top}"](x)
        for i in range(1, len(cfg.channels)):
            r = f"{4 * 2**i}x{4 * 2**i}"
            x = layer(layer(x, f"{r}.Conv0_up"), f"{r}.Conv1")
            img = grow(img, partial(self[f"ToRGB_lod{top - i}"], x), lod, top - i)
        return (img, outs) if return_layers else img


class Generator(nnx.Module):
    """G_style: `mapping` (z -> ws) and `synthesis` (ws -> image)."""

    def __init__(self, cfg: Config) -> None:
        self.mapping = Mapping(cfg)
        self.synthesis = Synthesis(cfg)

    def __call__(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = DEFAULT_TRUNCATION_CUTOFF, **synthesis_kwargs: Any) -> Any:
        """z [B, z_dim] -> image [B, R, R, img_channels]."""
        return self.synthesis(self.mapping(z, c, truncation_psi, truncation_cutoff), **synthesis_kwargs)


def mapping(cfg: Config, params: dict, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0,
            truncation_cutoff: int | None = DEFAULT_TRUNCATION_CUTOFF) -> jax.Array:
    """z [B, z_dim] -> ws [B, num_ws, w_dim], truncated towards dlatent_avg on layers < truncation_cutoff."""
    return bind(Generator, cfg, params).mapping(z, c, truncation_psi, truncation_cutoff)


def affine_styles(cfg: Config, params: dict, ws: jax.Array) -> dict[str, jax.Array]:
    """S space: every layer's StyleMod output [B, 2C] (dense + bias of its w)."""
    return bind(Generator, cfg, params).synthesis.styles(ws)


styles = affine_styles  # the family interface's name (synthesis takes a `styles` argument)


def synthesis(cfg: Config, params: dict, ws: jax.Array | None = None, *, styles: dict | None = None,
              noise_mode: str = "const", noise: dict | None = None, lod: float = 0.0,
              return_layers: bool = False) -> Any:
    """ws [B, num_ws, w_dim] (or S-space `styles`) -> image [B, R, R, img_channels].

    noise_mode "const": the stored noise inputs (the official `randomize_noise=False`), "none": no noise;
    `noise` {layer: [R, R] or [B, R, R]} replaces stored maps. `lod` (static) blends levels; 0 = final.
    return_layers: also every layer's epilogue output {name: [B, R, R, C]}.
    """
    return bind(Generator, cfg, params).synthesis(ws, styles=styles, noise_mode=noise_mode, noise=noise, lod=lod,
                                                  return_layers=return_layers)
