"""rosinality/stylegan2-pytorch ``model.Generator`` (commit bef283a) as a Flax NNX module tree (`Generator`).

The official module order: ``style`` (PixelNorm + ``n_mlp`` EqualLinear with fused leaky ReLU, ``lr_mul``)
-> latent assembly (truncation towards ``truncation_latent``, style mixing at ``inject_index``,
``input_is_latent``) -> ``input`` (learned 4x4 constant) -> ``conv1`` / ``to_rgb1`` -> per resolution an
upsampling StyledConv, a StyledConv and a ToRGB that adds the upsampled skip image.

Differences from the NVlabs family that matter for parity: the modulated-conv scale ``1/sqrt(in*k*k)``
sits inside the demodulation, ToRGB uses it too (no separate weight gain), noise is added before the
fused bias + leaky ReLU (``leaky_relu(x + b, 0.2) * sqrt(2)``), the upsampling conv is a stride-2
transposed conv followed by a blur padded ``(pad0, pad1)``, and each ToRGB shares its latent index with the
next block's first conv (``num_ws = n_latent = 2 * log2(size) - 2``).

Official checkpoints record no channel table, so channel counts come from the weight shapes. Params
mirror the official module tree with our layouts: ``params["convs"]["0"]["conv"]["weight"]`` HWIO,
``params["style"]["1"]["weight"]`` ``[in, out]``, ``params["input"]["input"]`` ``[4, 4, C]``,
``params["noises"]["noise_0"]`` ``[R, R]``, and ``params["latent_avg"]`` ``[style_dim]`` when the
checkpoint carries one (convert_weight.py output; ``cfg.has_latent_avg``). Images are NHWC.

The modules mirror the official tree, so a weight's path is its official name: ``style.3.weight``,
``convs.2.conv.modulation.bias``, ``to_rgbs.1.bias``, ``noises.noise_4``; `jaxinv.models.nn.shapes(Generator,
cfg)` is the converter's params tree. The blur kernels are build-time constants (``convs.{2k}.conv.blur.kernel``,
``to_rgbs.{k}.upsample.kernel``, normalised). The engine's free functions (`mapping`, `make_latent`, `styles`,
`synthesis`, `generate`, ...) bind the params to the module and call its method.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
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

_UP = 2  # every upsampling layer of the official Generator doubles the resolution

# ---------------------------------------------------------------------------------------------
# Static config


def official_channels(size: int, channel_multiplier: int = 2) -> tuple[int, ...]:
    """The table the official ``__init__`` builds, for resolutions 4, 8, ..., size."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    res = [2**i for i in range(2, int(np.log2(size)) + 1)]
    if res[-1] > 1024:
        raise ConfigError(f"size={size}: the official channel table stops at 1024; pass channels explicitly")
    return tuple(table[r] * (channel_multiplier if r >= 64 else 1) for r in res)


def make_kernel(k: Sequence[float] | Sequence[Sequence[float]]) -> np.ndarray:
    """Official ``make_kernel``: 1-D taps -> outer product, normalised to sum 1 (float32)."""
    k = np.asarray(k, np.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return (k / k.sum()).astype(np.float32)


@dataclass(frozen=True)
class Config:
    size: int  # Output resolution (power of two >= 4).
    style_dim: int  # Dimensionality of z and of w (the official code uses one size for both).
    n_mlp: int = 8  # Number of EqualLinear layers in the mapping network `style`.
    channels: tuple[int, ...] = ()  # Channels at resolutions 4, 8, ..., size; () = official table (multiplier 2).
    blur_kernel: tuple[tuple[float, ...], ...] = ()  # 2-D blur, normalised (make_kernel); () = [1, 3, 3, 1].
    lr_mlp: float = 0.01  # Learning-rate multiplier of the mapping layers (equalised lr).
    has_latent_avg: bool = False  # The checkpoint carries latent_avg (convert_weight.py output, e4e/pSp decoders).

    def __post_init__(self) -> None:
        s = self.size
        if s < 4 or s & (s - 1):
            raise ConfigError(f"size={s}: must be a power of two >= 4")
        if not self.channels:
            object.__setattr__(self, "channels", official_channels(s))
        if len(self.channels) != self.log_size - 1:
            raise ConfigError(f"channels: {len(self.channels)} entries for size {s}, expected {self.log_size - 1}")
        if not self.blur_kernel:
            object.__setattr__(self, "blur_kernel", _as_tuple2d(make_kernel([1, 3, 3, 1])))

    # Official attribute names.
    @property
    def log_size(self) -> int:
        return int(np.log2(self.size))

    @property
    def num_layers(self) -> int:
        """Number of StyledConvs (= noise buffers)."""
        return (self.log_size - 2) * 2 + 1

    @property
    def n_latent(self) -> int:
        return self.log_size * 2 - 2

    # Adaptor surface shared with the NVlabs families.
    @property
    def num_ws(self) -> int:
        return self.n_latent

    @property
    def w_dim(self) -> int:
        return self.style_dim

    @property
    def z_dim(self) -> int:
        return self.style_dim

    @property
    def c_dim(self) -> int:
        return 0

    @property
    def img_channels(self) -> int:
        return 3  # ToRGB always outputs RGB

    @property
    def img_resolution(self) -> int:
        return self.size

    @property
    def resolutions(self) -> list[int]:
        return [2**i for i in range(2, self.log_size + 1)]

    def channel(self, res: int) -> int:
        return self.channels[int(np.log2(res)) - 2]

    @property
    def filter(self) -> np.ndarray:
        """Normalised 2-D blur (the stored ``*.kernel`` buffers are this times ``factor**2``)."""
        return np.asarray(self.blur_kernel, np.float32)

    @cached_property
    def layers(self) -> tuple[tuple[str, str, int, int, int, int], ...]:
        """(name, kind 'conv'|'up'|'rgb', latent index, in_channels, out_channels, res) in forward order."""
        c4 = self.channel(4)
        out = [("conv1", "conv", 0, c4, c4, 4), ("to_rgb1", "rgb", 1, c4, 3, 4)]
        c_in = c4
        for k, res in enumerate(self.resolutions[1:]):
            c_out = self.channel(res)
            out += [(f"convs.{2 * k}", "up", 2 * k + 1, c_in, c_out, res),
                    (f"convs.{2 * k + 1}", "conv", 2 * k + 2, c_out, c_out, res),
                    (f"to_rgbs.{k}", "rgb", 2 * k + 3, c_out, 3, res)]
            c_in = c_out
        return tuple(out)

    @property
    def layer_names(self) -> list[str]:
        return [name for name, *_ in self.layers]

    @property
    def noise_layers(self) -> list[tuple[str, int]]:
        """(layer name, resolution) per noise input; position j is the buffer ``noises.noise_{j}``."""
        return [(name, res) for name, kind, _, _, _, res in self.layers if kind != "rgb"]


def _as_tuple2d(a: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in np.atleast_2d(np.asarray(a, np.float32)))


# ---------------------------------------------------------------------------------------------
# Converter: official state_dict names -> params (`jaxinv.state_dict.fill`)

_T, _F32 = linear_t, as_is
_MOD_HWIO = lambda a: conv_hwio(a[0])  # noqa: E731  [1, O, I, k, k] -> HWIO
_SCALAR = lambda a: a.reshape(())  # noqa: E731
_VEC = lambda a: a.reshape(-1)  # noqa: E731
_NCHW1_HWC = lambda a: a[0].transpose(1, 2, 0)  # noqa: E731
_PLANE = lambda a: a[0, 0]  # noqa: E731

def param_table(cfg: Config) -> list[Entry]:
    """Every official ``g_ema`` parameter / noise buffer: name, official shape, param path, layout change."""
    t: list[Entry] = []

    def add(name: str, fix: Callable, shape: tuple[int, ...]) -> None:
        t.append(Entry(name, shape, tuple(name.split(".")), fix))

    d = cfg.style_dim
    for i in range(1, cfg.n_mlp + 1):  # style.0 is the PixelNorm
        add(f"style.{i}.weight", _T, (d, d))
        add(f"style.{i}.bias", _F32, (d,))
    add("input.input", _NCHW1_HWC, (1, cfg.channel(4), 4, 4))
    for name, kind, _, c_in, c_out, _res in cfg.layers:
        k = 1 if kind == "rgb" else 3
        add(f"{name}.conv.weight", _MOD_HWIO, (1, c_out, c_in, k, k))
        add(f"{name}.conv.modulation.weight", _T, (c_in, d))
        add(f"{name}.conv.modulation.bias", _F32, (c_in,))
        if kind == "rgb":
            add(f"{name}.bias", _VEC, (1, 3, 1, 1))
        else:
            add(f"{name}.noise.weight", _SCALAR, (1,))
            add(f"{name}.activate.bias", _F32, (c_out,))
    for j, (_, res) in enumerate(cfg.noise_layers):
        add(f"noises.noise_{j}", _PLANE, (1, 1, res, res))
    return t


def kernel_buffer_names(cfg: Config) -> list[str]:
    """The blur ``kernel`` buffers (folded into ``cfg.blur_kernel``, not params)."""
    names = []
    for name, kind, *_ in cfg.layers:
        if kind == "up":
            names.append(f"{name}.conv.blur.kernel")
        elif kind == "rgb" and name != "to_rgb1":
            names.append(f"{name}.upsample.kernel")
    return names


def state_dict_names(cfg: Config) -> list[str]:
    """Official ``g_ema`` state_dict names this config expects."""
    return [e.name for e in param_table(cfg)] + kernel_buffer_names(cfg)


def params_from_state_dict(cfg: Config, state_dict: dict[str, np.ndarray], where: str = "checkpoint") -> dict:
    """Convert a ``g_ema`` state_dict (plus an optional ``latent_avg`` entry); every name and shape checked."""
    stored = cfg.filter * _UP**2
    kernels = [Entry(name, stored.shape, None) for name in kernel_buffer_names(cfg)]  # folded into cfg
    params = fill(param_table(cfg) + kernels, state_dict, where, what=f"rosinality state_dict (size {cfg.size})",
                  ignore={"latent_avg"})
    for e in kernels:
        if not np.array_equal(np.asarray(state_dict[e.name], np.float32), stored):
            raise CheckpointError(f"{where}: {e.name} differs from the other blur kernels / blur_kernel of the config")
    if "latent_avg" in state_dict:
        avg = np.asarray(state_dict["latent_avg"], np.float32)
        if avg.size != cfg.style_dim or avg.ndim > 2:
            raise CheckpointError(f"{where}: latent_avg has shape {avg.shape}, expected ({cfg.style_dim},)")
        params["latent_avg"] = avg.reshape(cfg.style_dim)
    return params


def _need(sd: dict, name: str, where: str) -> np.ndarray:
    if name not in sd:
        raise CheckpointError(f"{where}: rosinality state_dict lacks {name!r}")
    return np.asarray(sd[name])


def config_from_source(init: dict[str, Any], state_dict: dict[str, np.ndarray], where: str = "checkpoint") -> Config:
    """Config from the weights (size, style_dim, n_mlp, channel table, blur kernel), checked against ``init``.

    ``init`` is a golden ``init_kwargs.json`` (``init_kwargs`` + ``channels_override``) or what
    `weights_convert.rosinality.source_from_checkpoint` records (``init_kwargs`` from train.py ``args``;
    empty otherwise).
    """
    kw = dict(init.get("init_kwargs") or {})
    mlp = sorted(int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"style\.(\d+)\.weight", k)))
    if not mlp:
        raise CheckpointError(f"{where}: rosinality state_dict has no mapping layers 'style.<i>.weight'")
    if mlp != list(range(1, len(mlp) + 1)):
        raise CheckpointError(f"{where}: mapping layers style.{mlp} are not numbered 1..{len(mlp)}")
    style_dim = int(_need(state_dict, "style.1.weight", where).shape[1])
    n_rgb = len([k for k in state_dict if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    size = 2 ** (n_rgb + 2)
    channels = [int(_need(state_dict, "input.input", where).shape[1])]
    channels += [int(_need(state_dict, f"convs.{2 * k}.conv.weight", where).shape[1]) for k in range(n_rgb)]
    for key, value in (("size", size), ("style_dim", style_dim), ("n_mlp", len(mlp))):
        if key in kw and kw[key] is not None and int(kw[key]) != value:
            raise CheckpointError(f"{where}: {key}={kw[key]} in the constructor arguments, but the weights say {value}")
    override = init.get("channels_override") or {}
    for i, c in enumerate(channels):
        res = 2 ** (i + 2)
        want = override.get(str(res), override.get(res))
        if want is not None and int(want) != c:
            raise CheckpointError(f"{where}: channels_override[{res}]={want}, but the weights have {c} channels")
    kernels = [k for k in state_dict if k.endswith(".blur.kernel") or k.endswith(".upsample.kernel")]
    if kernels:  # the buffers are what the official forward uses after load_state_dict
        blur = np.asarray(state_dict[kernels[0]], np.float32) / _UP**2
    else:
        blur = make_kernel(kw.get("blur_kernel") or [1, 3, 3, 1])
    return Config(size=size, style_dim=style_dim, n_mlp=len(mlp), channels=tuple(channels),
                  blur_kernel=_as_tuple2d(blur), lr_mlp=float(kw.get("lr_mlp", 0.01)),
                  has_latent_avg="latent_avg" in state_dict)


def from_source(src: Any) -> tuple[Config, dict]:
    """(Config, params) from a `weights_convert.source.Source` of family 'rosinality'."""
    where = str((src.provenance or {}).get("source", "checkpoint"))
    if src.family != "rosinality":
        raise CheckpointError(f"{where}: expected a rosinality source, got family {src.family!r}")
    cfg = config_from_source(src.init, src.state_dict, where)
    return cfg, params_from_state_dict(cfg, src.state_dict, where)


# ---------------------------------------------------------------------------------------------
# Modules (the official module tree; B = batch, NHWC activations)


class EqualLinear(nnx.Module):
    """``EqualLinear(in, out, lr_mul, activation)``: [B, in] -> [B, out]. ``weight`` [in, out] and ``bias``
    [out] as stored (unscaled); the equalised-lr gains are applied in the forward."""

    def __init__(self, cin: int, cout: int, lr_mul: float = 1.0, activation: str = "linear") -> None:
        self.weight = param(cin, cout)
        self.bias = param(cout)
        self.lr_mul, self.activation = lr_mul, activation

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.fully_connected(x, self.weight[...], self.bias[...], lr_multiplier=self.lr_mul,
                                   activation=self.activation)


class ConstantInput(nnx.Module):
    """``ConstantInput``: the learned ``input`` [4, 4, C] broadcast to [B, 4, 4, C]."""

    def __init__(self, channel: int, size: int = 4) -> None:
        self.input = param(size, size, channel)

    def __call__(self, batch: int) -> jax.Array:
        c = self.input[...]
        return jnp.broadcast_to(c[None], (batch,) + c.shape)


class Blur(nnx.Module):
    """``Blur`` after the stride-2 transposed conv of an upsampling ModulatedConv2d. ``kernel`` is the normalised
    2-D filter [fk, fk] (the official buffer is it times ``factor**2``); ``pad`` = (pad0, pad1)."""

    def __init__(self, kernel: np.ndarray, pad: tuple[int, int]) -> None:
        self.kernel = const(kernel)
        self.pad = pad


class Upsample(nnx.Module):
    """``Upsample`` of ToRGB's skip image: [B, H, W, 3] -> [B, 2H, 2W, 3] (``kernel`` normalised, gain 4)."""

    def __init__(self, kernel: np.ndarray, factor: int = _UP) -> None:
        self.kernel = const(kernel)
        p = kernel.shape[0] - factor  # pads ((p+1)//2 + factor - 1, p//2), p = taps - factor
        self.factor, self.pad = factor, ((p + 1) // 2 + factor - 1, p // 2)

    def __call__(self, x: jax.Array) -> jax.Array:
        pad0, pad1 = self.pad
        return ops.upfirdn2d(x, self.kernel[...], up=self.factor, padding=[pad0, pad1, pad0, pad1],
                             gain=self.factor**2)


class ModulatedConv2d(nnx.Module):
    """``ModulatedConv2d(in, out, k, style_dim, demodulate, upsample)``: x [B, H, W, in], style [B, in]
    -> [B, H, W, out] (upsample: [B, 2H, 2W, out]). ``weight`` [k, k, in, out] HWIO, ``modulation`` an
    EqualLinear(style_dim, in) (bias 1 at init); the official ``scale`` 1/sqrt(in*k*k) multiplies the weight
    before the demodulation."""

    def __init__(self, cin: int, cout: int, kernel_size: int, style_dim: int, blur_kernel: np.ndarray,
                 demodulate: bool = True, upsample: bool = False) -> None:
        self.weight = param(kernel_size, kernel_size, cin, cout)
        self.modulation = EqualLinear(style_dim, cin)
        self.scale = float(1 / np.sqrt(cin * kernel_size * kernel_size))
        self.kernel_size, self.demodulate, self.upsample = kernel_size, demodulate, upsample
        if upsample:
            self.blur = Blur(blur_kernel, _blur_pads(blur_kernel.shape[0], kernel_size))

    def __call__(self, x: jax.Array, style: jax.Array, noise: jax.Array | None = None) -> jax.Array:
        """``style`` is the ``modulation`` output (S space); ``noise`` [1|B, H', W', 1] is added after the
        demodulation (the following NoiseInjection, fused)."""
        w = self.weight[...] * np.float32(self.scale)
        kh = self.kernel_size
        if not self.upsample:
            return ops.modulated_conv2d(x, w, style, noise=noise, padding=kh // 2, demodulate=self.demodulate)
        f = self.blur.kernel[...]
        fk = f.shape[0]
        pad0, pad1 = self.blur.pad
        # conv2d_resample pads ((fk+up-1)//2 - (k-1), (fk-up)//2 - (k-up)) around `padding`: solve for the padding
        # that gives rosinality's blur pads (transposed conv with padding 0, then blur).
        p0 = pad0 - (fk + _UP - 1) // 2 + (kh - 1)
        p1 = pad1 - (fk - _UP) // 2 + (kh - _UP)
        return ops.modulated_conv2d(x, w, style, noise=noise, up=_UP, padding=[p0, p1, p0, p1], resample_filter=f,
                                    flip_weight=False)


class NoiseInjection(nnx.Module):
    """``NoiseInjection``: noise (any shape) -> ``weight * noise``; ``weight`` is a scalar strength."""

    def __init__(self) -> None:
        self.weight = param()

    def __call__(self, noise: jax.Array) -> jax.Array:
        return noise * self.weight[...]


class FusedLeakyReLU(nnx.Module):
    """``FusedLeakyReLU(channel)``: ``leaky_relu(x + bias, 0.2) * sqrt(2)`` on [B, H, W, C]; ``bias`` [C]."""

    def __init__(self, channel: int) -> None:
        self.bias = param(channel)

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.bias_act(x, self.bias[...], act="lrelu", alpha=0.2, gain=float(np.sqrt(2)))


class StyledConv(nnx.Module):
    """``StyledConv(in, out, 3, style_dim, upsample)``: conv (ModulatedConv2d), noise (NoiseInjection),
    activate (FusedLeakyReLU). x [B, H, W, in] -> [B, H, W, out] (upsample: [B, 2H, 2W, out])."""

    def __init__(self, cin: int, cout: int, kernel_size: int, style_dim: int, blur_kernel: np.ndarray,
                 upsample: bool = False) -> None:
        self.conv = ModulatedConv2d(cin, cout, kernel_size, style_dim, blur_kernel, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout)

    def noise_input(self, stored: jax.Array, noise_mode: str, override: jax.Array | None,
                    fresh: jax.Array | None) -> jax.Array | None:
        """The weighted noise [1|B, R, R, 1]: ``override`` ([R, R] or [B, R, R]) if given, else by mode: 'const'
        the stored buffer [R, R] (``randomize_noise=False``), 'random' ``fresh`` [B, R, R, 1], 'none' None."""
        if override is not None:
            n = jnp.asarray(override, jnp.float32)
            n = n[None] if n.ndim == 2 else n  # [R, R] or [B, R, R]
            return self.noise(n[..., None])
        if noise_mode == "none":
            return None
        if noise_mode == "const":
            return self.noise(stored)[None, :, :, None]
        if fresh is None:  # noise_mode 'random' (randomize_noise=True): fresh N(0, 1) per sample
            raise ConfigError("noise_mode='random' needs a PRNG key")
        return self.noise(fresh)

    def __call__(self, x: jax.Array, style: jax.Array, noise: jax.Array | None) -> jax.Array:
        """``style`` [B, in] the modulation output; ``noise`` the weighted noise of `noise_input`."""
        return self.activate(self.conv(x, style, noise))


class ToRGB(nnx.Module):
    """``ToRGB(in, style_dim, upsample)``: conv (ModulatedConv2d 1x1 -> 3, no demodulation), ``bias`` [3],
    upsample (of the previous skip image). x [B, H, W, in], skip [B, H/2, W/2, 3] -> [B, H, W, 3]."""

    def __init__(self, cin: int, style_dim: int, blur_kernel: np.ndarray, upsample: bool = True) -> None:
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, blur_kernel, demodulate=False)
        self.bias = param(3)
        if upsample:
            self.upsample = Upsample(blur_kernel)

    def __call__(self, x: jax.Array, style: jax.Array, skip: jax.Array | None = None) -> jax.Array:
        y = self.conv(x, style) + self.bias[...]
        if skip is not None:
            y = y + self.upsample(skip)
        return y


class Generator(nnx.Module):
    """rosinality ``model.Generator``: style (PixelNorm + style.1 .. style.{n_mlp} EqualLinear), input
    (ConstantInput), conv1 / to_rgb1, convs.{2k} (upsampling) / convs.{2k+1} StyledConvs and to_rgbs.{k} per
    resolution 8 .. size, noises.noise_{j} [R, R] buffers, latent_avg [style_dim] when ``cfg.has_latent_avg``.

    z / w [B, style_dim]; latent [B, n_latent, style_dim]; images [B, size, size, 3].
    """

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        d, f, c4 = cfg.style_dim, cfg.filter, cfg.channel(4)
        self.style = nnx.Dict({str(i): EqualLinear(d, d, cfg.lr_mlp, "lrelu") for i in range(1, cfg.n_mlp + 1)})
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, d, f)
        self.to_rgb1 = ToRGB(c4, d, f, upsample=False)
        convs: dict[str, StyledConv] = {}
        to_rgbs: dict[str, ToRGB] = {}
        for name, kind, _, c_in, c_out, _res in cfg.layers[2:]:
            key = name.split(".")[1]
            if kind == "rgb":
                to_rgbs[key] = ToRGB(c_in, d, f)
            else:
                convs[key] = StyledConv(c_in, c_out, 3, d, f, upsample=kind == "up")
        self.convs = nnx.Dict(convs)
        self.to_rgbs = nnx.Dict(to_rgbs)
        self.noises = nnx.Dict({f"noise_{j}": buffer(res, res) for j, (_, res) in enumerate(cfg.noise_layers)})
        if cfg.has_latent_avg:
            self.latent_avg = buffer(d)

    def layer(self, name: str) -> nnx.Module:
        """The module of a layer name of ``cfg.layers`` ('conv1', 'to_rgb1', 'convs.3', 'to_rgbs.1')."""
        head, _, idx = name.partition(".")
        return getattr(self, head)[idx] if idx else getattr(self, head)

    def mapping(self, z: jax.Array, truncation: float | jax.Array = 1.0,
                truncation_latent: jax.Array | None = None) -> jax.Array:
        """``self.style(z)``: z [B, style_dim] -> w [B, style_dim] (then truncated if ``truncation < 1``)."""
        cfg = self.cfg
        if z.ndim != 2 or z.shape[1] != cfg.style_dim:
            raise ConfigError(f"z has shape {tuple(z.shape)}, expected [B, {cfg.style_dim}]")
        x = ops.normalize_2nd_moment(z.astype(jnp.float32))  # style.0, PixelNorm
        for i in range(1, cfg.n_mlp + 1):
            x = self.style[str(i)](x)
        return self.truncate(x, truncation, truncation_latent)

    def truncate(self, w: jax.Array, truncation: float | jax.Array = 1.0,
                 truncation_latent: jax.Array | None = None) -> jax.Array:
        """``truncation_latent + truncation * (w - truncation_latent)``, applied only when ``truncation < 1``
        (the official condition). ``truncation_latent`` defaults to the checkpoint's ``latent_avg``."""
        if isinstance(truncation, int | float) and truncation >= 1:
            return w
        if truncation_latent is None:
            if not self.cfg.has_latent_avg:
                what = "truncation < 1" if isinstance(truncation, int | float) else "a traced truncation"
                raise ConfigError(f"{what} needs truncation_latent (this checkpoint has no latent_avg; "
                                  "e.g. use mean_latent)")
            truncation_latent = self.latent_avg[...]
        t = jnp.asarray(truncation_latent, jnp.float32)
        trunc = t + truncation * (w - t)
        if isinstance(truncation, int | float):
            return trunc
        return jnp.where(jnp.asarray(truncation) < 1, trunc, w)

    def mean_latent(self, key: jax.Array, n_latent: int = 4096) -> jax.Array:
        """Official ``mean_latent``: mean of ``style(randn)`` over ``n_latent`` samples -> [1, style_dim]."""
        z = jax.random.normal(key, (n_latent, self.cfg.style_dim), jnp.float32)
        return jnp.mean(self.mapping(z), axis=0, keepdims=True)

    def make_latent(self, inputs: Sequence[jax.Array], *, truncation: float | jax.Array = 1.0,
                    truncation_latent: jax.Array | None = None, inject_index: int | jax.Array | None = None,
                    input_is_latent: bool = False, key: jax.Array | None = None) -> jax.Array:
        """The latent assembly of the official ``forward`` -> latent [B, n_latent, style_dim] (see `make_latent`)."""
        inputs = list(inputs)
        if not 1 <= len(inputs) <= 2:
            raise ConfigError(f"{len(inputs)} latent inputs: the official Generator uses one, or two for mixing")
        ws = [jnp.asarray(s, jnp.float32) for s in inputs]
        if not input_is_latent:
            ws = [self.mapping(s) for s in ws]
        ws = [self.truncate(w, truncation, truncation_latent) for w in ws]
        n = self.cfg.n_latent
        if len(ws) == 1:
            w = ws[0]
            if w.ndim == 2:
                return jnp.broadcast_to(w[:, None], (w.shape[0], n, w.shape[1]))
            if w.shape[1:] != (n, self.cfg.style_dim):
                raise ConfigError(f"latent has shape {tuple(w.shape)}, expected [B, {n}, {self.cfg.style_dim}]")
            return w
        if any(w.ndim != 2 for w in ws):
            raise ConfigError("style mixing needs two [B, style_dim] inputs (the official code repeats each over "
                              "layers)")
        if inject_index is None:
            if key is None:
                raise ConfigError("style mixing without inject_index needs a PRNG key to draw one")
            inject_index = jax.random.randint(key, (), 1, n)
        first = (jnp.arange(n) < inject_index)[None, :, None]
        return jnp.where(first, ws[0][:, None], ws[1][:, None])

    def styles(self, latent: jax.Array) -> dict[str, jax.Array]:
        """S space: latent [B, n_latent, style_dim] -> {layer name: modulation output [B, in_channels]}."""
        cfg = self.cfg
        if latent.ndim != 3 or latent.shape[1:] != (cfg.n_latent, cfg.style_dim):
            raise ConfigError(f"latent has shape {tuple(latent.shape)}, expected [B, {cfg.n_latent}, "
                              f"{cfg.style_dim}]")
        return {name: self.layer(name).conv.modulation(latent[:, idx]) for name, _, idx, *_ in cfg.layers}

    def random_noise(self, key: jax.Array, batch: int) -> dict[str, jax.Array]:
        """Fresh N(0, 1) maps [B, R, R, 1] for every noise layer, from one draw (one RNG op compiles fast)."""
        sizes = [batch * res * res for _, res in self.cfg.noise_layers]
        flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
        out, start = {}, 0
        for (name, res), n in zip(self.cfg.noise_layers, sizes, strict=True):
            out[name] = flat[start: start + n].reshape(batch, res, res, 1)
            start += n
        return out

    def synthesis(self, latent: jax.Array | None = None, *, styles: dict | None = None, noise_mode: str = "const",
                  noise: dict | None = None, key: jax.Array | None = None, return_layers: bool = False):
        """latent [B, n_latent, style_dim] (or S-space ``styles``) -> img [B, size, size, 3] (see `synthesis`)."""
        cfg = self.cfg
        if noise_mode not in ("const", "none", "random"):
            raise ConfigError(f"noise_mode={noise_mode!r}: expected 'const', 'none' or 'random'")
        if styles is None:
            if latent is None:
                raise ConfigError("synthesis needs a latent or styles")
            styles = self.styles(latent)
        batch = next(iter(styles.values())).shape[0]
        noise_index = {n: j for j, (n, _) in enumerate(cfg.noise_layers)}
        fresh = self.random_noise(key, batch) if noise_mode == "random" and key is not None else {}
        layers = {}
        x = self.input(batch)
        skip = None
        for name, kind, *_ in cfg.layers:
            mod = self.layer(name)
            if kind == "rgb":
                skip = out = mod(x, styles[name], skip)
            else:
                n = mod.noise_input(self.noises[f"noise_{noise_index[name]}"][...], noise_mode,
                                    None if noise is None else noise.get(name), fresh.get(name))
                x = out = mod(x, styles[name], n)
            if return_layers:
                layers[name] = out
        return (skip, layers) if return_layers else skip

    def __call__(self, zs: Sequence[jax.Array], truncation: float | jax.Array = 1.0,
                 truncation_latent: jax.Array | None = None, inject_index: int | jax.Array | None = None,
                 input_is_latent: bool = False, noise_mode: str = "const", noise: dict | None = None,
                 key: jax.Array | None = None, return_latents: bool = False):
        """The official ``G(styles, ...)`` call (see `generate`)."""
        mix_key = noise_key = None
        if key is not None:
            mix_key, noise_key = jax.random.split(key)
        latent = self.make_latent(zs, truncation=truncation, truncation_latent=truncation_latent,
                                  inject_index=inject_index, input_is_latent=input_is_latent, key=mix_key)
        img = self.synthesis(latent, noise_mode=noise_mode, noise=noise, key=noise_key)
        return (img, latent) if return_latents else img


# ---------------------------------------------------------------------------------------------
# The engine's free functions (one call into the bound module)


def _bound(cfg: Config, params: dict) -> Generator:
    """`Generator` holding ``params``. ``has_latent_avg`` follows the params (configs saved before the field
    existed, params assembled by hand): the optional entry is the checkpoint's, not an architecture choice."""
    has = isinstance(params, Mapping) and "latent_avg" in params
    if has != cfg.has_latent_avg:
        cfg = dataclasses.replace(cfg, has_latent_avg=has)
    return bind(Generator, cfg, params)


def mapping(cfg: Config, params: dict, z: jax.Array, truncation: float | jax.Array = 1.0,
            truncation_latent: jax.Array | None = None) -> jax.Array:
    """``G.style(z)``: z [B, style_dim] -> w [B, style_dim] (then truncated if ``truncation < 1``)."""
    return _bound(cfg, params).mapping(z, truncation, truncation_latent)


def truncate(cfg: Config, params: dict, w: jax.Array, truncation: float | jax.Array = 1.0,
             truncation_latent: jax.Array | None = None) -> jax.Array:
    """``truncation_latent + truncation * (w - truncation_latent)``, applied only when ``truncation < 1``
    (the official condition). ``truncation_latent`` defaults to the checkpoint's ``latent_avg``."""
    return _bound(cfg, params).truncate(w, truncation, truncation_latent)


def mean_latent(cfg: Config, params: dict, key: jax.Array, n_latent: int = 4096) -> jax.Array:
    """Official ``mean_latent``: mean of ``style(randn)`` over ``n_latent`` samples, shape [1, style_dim]."""
    return _bound(cfg, params).mean_latent(key, n_latent)


def make_latent(cfg: Config, params: dict, inputs: Sequence[jax.Array], *, truncation: float | jax.Array = 1.0,
                truncation_latent: jax.Array | None = None, inject_index: int | jax.Array | None = None,
                input_is_latent: bool = False, key: jax.Array | None = None) -> jax.Array:
    """The official latent assembly of ``Generator.forward`` -> latent [B, n_latent, style_dim].

    ``inputs``: one or two z's (or w's with ``input_is_latent``; a single input may also be a W+ latent
    [B, n_latent, style_dim]). Two inputs mix at ``inject_index`` (layers < index from the first); without
    an index one is drawn uniformly from [1, n_latent - 1] with ``key``, as the official random.randint.
    """
    return _bound(cfg, params).make_latent(inputs, truncation=truncation, truncation_latent=truncation_latent,
                                           inject_index=inject_index, input_is_latent=input_is_latent, key=key)


def styles(cfg: Config, params: dict, latent: jax.Array) -> dict[str, jax.Array]:
    """S space: every ``modulation`` output [B, in_channels] (ToRGB's before its 1/sqrt(in*k*k) scale)."""
    return _bound(cfg, params).styles(latent)


def _layer(params: dict, name: str) -> dict:
    """The params subtree of a layer name ('convs.3' -> params["convs"]["3"])."""
    node = params
    for key in name.split("."):
        node = node[key]
    return node


def _blur_pads(fk: int, kernel_size: int) -> tuple[int, int]:
    """Blur padding after the stride-2 transposed conv, as ``ModulatedConv2d(upsample=True)``."""
    p = (fk - _UP) - (kernel_size - 1)
    return (p + 1) // 2 + _UP - 1, p // 2 + 1


def synthesis(cfg: Config, params: dict, latent: jax.Array | None = None, *, styles: dict | None = None,
              noise_mode: str = "const", noise: dict | None = None, key: jax.Array | None = None,
              return_layers: bool = False):
    """latent [B, n_latent, style_dim] (or S-space ``styles``) -> img [B, size, size, 3].

    ``noise_mode``: 'const' (stored buffers, ``randomize_noise=False``), 'random' (needs ``key``) or 'none';
    ``noise`` optionally overrides per-layer maps by layer name ([R, R] or [B, R, R], scaled by the
    layer's ``noise.weight``). With ``return_layers`` also returns {layer name: output} (ToRGB outputs
    include the skip sum, as the official module returns them).
    """
    return _bound(cfg, params).synthesis(latent, styles=styles, noise_mode=noise_mode, noise=noise, key=key,
                                         return_layers=return_layers)


def generate(cfg: Config, params: dict, zs: Sequence[jax.Array], truncation: float | jax.Array = 1.0,
             truncation_latent: jax.Array | None = None, inject_index: int | jax.Array | None = None,
             input_is_latent: bool = False, noise_mode: str = "const", noise: dict | None = None,
             key: jax.Array | None = None, return_latents: bool = False):
    """The official ``G(styles, ...)`` call -> img [B, size, size, 3] (and the latent with ``return_latents``).

    ``noise_mode='const'`` is ``randomize_noise=False``; the official default ``randomize_noise=True`` is
    ``noise_mode='random'`` with a ``key``. ``key`` also draws ``inject_index`` when mixing without one.
    """
    return _bound(cfg, params)(zs, truncation, truncation_latent, inject_index, input_is_latent, noise_mode, noise,
                               key, return_latents)


def random_params(cfg: Config, seed: int = 0) -> dict:
    """Random params of the right shapes (full-size sanity checks, benchmarks): unit-normal weights."""
    rng = np.random.default_rng(seed)
    sd = {e.name: rng.standard_normal(e.shape).astype(np.float32) for e in param_table(cfg)}
    for name in sd:
        if name.endswith("modulation.bias"):
            sd[name] = np.ones_like(sd[name])  # bias_init=1 as the official
        elif name.endswith(".bias") or name.endswith("noise.weight"):
            sd[name] = np.zeros_like(sd[name])
    for name in kernel_buffer_names(cfg):
        sd[name] = cfg.filter * _UP**2
    if cfg.has_latent_avg:
        sd["latent_avg"] = rng.standard_normal(cfg.style_dim).astype(np.float32)
    return params_from_state_dict(cfg, sd, "random_params")
