"""NVlabs StyleGAN3 generator (``training.networks_stylegan3.Generator``, configs T and R) in JAX.

A Flax NNX module tree mirroring the official one (see ``jaxinv.models.nn``), so a weight's path is its
official name:

    Generator
      mapping: MappingNetwork       embed (c_dim > 0), fc0 .. fc{mapping_layers-1}, w_avg
      synthesis: SynthesisNetwork
        input: SynthesisInput       affine, weight, freqs, phases, transform
        L{idx}_{size}_{channels}: SynthesisLayer   affine, weight, bias, magnitude_ema (the last is ToRGB)

e.g. ``mapping.fc0.weight``, ``synthesis.input.freqs``, ``synthesis.L3_36_128.affine.bias`` (the 64 px
golden R model: ``L0_36_128`` .. ``L14_64_3``).

The alias-free design (per-layer cutoffs, sampling rates, transition bands, sizes, paddings and the Kaiser /
jinc low-pass filters) is computed once in numpy from the constructor kwargs, exactly as the official
``__init__`` does (``Config.input_spec`` / ``Config.layers``), and becomes the modules' static attributes and constants
(``up_filter`` / ``down_filter``) at build time. The stored ``up_filter`` / ``down_filter`` buffers of a
checkpoint are not weights: ``from_source`` checks them against the design. The family's functions
(``mapping``, ``styles``, ``synthesis``, ``generate``) bind the weights to the module and call it.

Tensors are NHWC; conv weights HWIO ``[k, k, in, out]``; dense weights ``[in, out]``. Everything runs in
float32 (the official forward on CPU / with ``force_fp32`` does the same).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models.nn import bind, buffer, const, param, shapes
from jaxinv.models.stylegan2 import FullyConnectedLayer, MappingNetwork  # the same modules in the official repo
from jaxinv.state_dict import Entry, as_is, conv_hwio, fill, linear_t

# ---------------------------------------------------------------------------------------------
# Filter design (numpy, build time)


def _kaiser_atten(numtaps: int, width: float) -> float:
    """Stopband attenuation (dB) of a Kaiser FIR with ``numtaps`` taps and normalised transition width."""
    return 2.285 * (numtaps - 1) * np.pi * width + 7.95


def _kaiser_beta(atten: float) -> float:
    """Kaiser's empirical window parameter for a given attenuation (dB)."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def _bessel_j1(x: np.ndarray) -> np.ndarray:
    """Bessel function of the first kind, order 1, by Bessel's integral ``1/pi int_0^pi cos(t - x sin t) dt``.

    The integrand is smooth, even and 2pi-periodic, so the trapezoidal rule converges exponentially;
    512 intervals are exact to float64 rounding for |x| well beyond the ~20 the filters need.
    """
    x = np.asarray(x, dtype=np.float64)
    n = 512
    t = np.linspace(0.0, np.pi, n + 1)
    wts = np.full(n + 1, 1.0 / n)
    wts[[0, -1]] = 0.5 / n
    vals = np.cos(t - x[..., None] * np.sin(t))
    return vals @ wts


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> np.ndarray | None:
    """The official ``SynthesisLayer.design_lowpass_filter``: None (identity), a separable Kaiser-windowed
    sinc (``scipy.signal.firwin`` semantics, low-pass, scaled to unit DC gain) or a radially symmetric
    Kaiser-windowed jinc (2-D). Returns float32 as the official buffer."""
    if numtaps < 1:
        raise ConfigError(f"stylegan3: filter with {numtaps} taps")
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = _kaiser_beta(_kaiser_atten(numtaps, width / nyq))
    window = np.kaiser(numtaps, beta)
    if not radial:
        c = cutoff / nyq  # normalised to Nyquist
        m = np.arange(numtaps, dtype=np.float64) - (numtaps - 1) / 2
        h = c * np.sinc(c * m) * window
        return _frozen(h / h.sum())
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = _bessel_j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    f = f * np.outer(window, window)
    return _frozen(f / f.sum())


def _frozen(f: np.ndarray) -> np.ndarray:
    """float32 as the official buffer, read-only (the design is shared through the cached Config)."""
    f = f.astype(np.float32)
    f.setflags(write=False)
    return f


# ---------------------------------------------------------------------------------------------
# Static configuration


@dataclasses.dataclass(frozen=True, eq=False)
class InputSpec:
    """``SynthesisInput`` design: Fourier features of ``channels`` frequencies on a ``size`` grid."""

    channels: int
    size: tuple[int, int]      # (width, height)
    sampling_rate: float       # s[0]
    bandwidth: float           # f_c[0]


@dataclasses.dataclass(frozen=True, eq=False)
class LayerSpec:
    """One ``SynthesisLayer``: the numbers the official ``__init__`` derives (meta.json["layers"])."""

    name: str
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool                      # recorded only: jaxinv computes in float32
    in_channels: int
    out_channels: int
    in_size: tuple[int, int]            # (width, height)
    out_size: tuple[int, int]
    in_sampling_rate: int               # s
    out_sampling_rate: int
    tmp_sampling_rate: int              # rate of the leaky ReLU
    in_cutoff: float                    # f_c
    out_cutoff: float
    in_half_width: float                # f_h
    out_half_width: float
    conv_kernel: int
    up_factor: int
    down_factor: int
    up_taps: int
    down_taps: int
    down_radial: bool
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1) w.r.t. the upsampled image
    up_filter: np.ndarray | None        # [taps] float32 or None (identity)
    down_filter: np.ndarray | None      # [taps], [taps, taps] (radial) or None


_MAPPING_KEYS = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier",
                 "w_avg_beta": "w_avg_beta"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Constructor kwargs of ``Generator`` (flat synthesis kwargs + ``mapping_kwargs``), official defaults."""

    z_dim: int                              # Input latent (Z) dimensionality.
    c_dim: int                              # Conditioning label (C) dimensionality, 0 = none.
    w_dim: int                              # Intermediate latent (W) dimensionality.
    img_resolution: int                     # Output resolution.
    img_channels: int                       # Number of output colour channels.
    # MappingNetwork
    mapping_layers: int = 2                 # Number of mapping layers.
    mapping_lr_multiplier: float = 0.01     # Learning-rate multiplier of the mapping layers.
    w_avg_beta: float = 0.998               # Training-time EMA decay of W (unused by the forward).
    # SynthesisNetwork
    channel_base: int = 32768               # Overall multiplier for the number of channels.
    channel_max: int = 512                  # Maximum number of channels in any layer.
    num_layers: int = 14                    # Layers excluding Fourier features and ToRGB.
    num_critical: int = 2                   # Critically sampled layers at the end.
    first_cutoff: float = 2.0               # f_{c,0}
    first_stopband: float = 2 ** 2.1        # f_{t,0}
    last_stopband_rel: float = 2 ** 0.3     # f_{t,N} / f_{c,N}
    margin_size: int = 10                   # Extra pixels outside the image.
    output_scale: float = 0.25              # Scale factor of the output image.
    num_fp16_res: int = 4                   # Recorded only (jaxinv computes in float32).
    # SynthesisLayer
    conv_kernel: int = 3                    # Conv kernel size (T: 3, R: 1); ToRGB uses 1.
    filter_size: int = 6                    # Low-pass taps relative to the lower resolution.
    lrelu_upsampling: int = 2               # Relative sampling rate of the leaky ReLU.
    use_radial_filters: bool = False        # Radially symmetric downsampling filters (R).
    conv_clamp: float | None = 256.0        # Clamp of the layer outputs, None = off.
    magnitude_ema_beta: float = 0.999       # Training-time EMA decay of input magnitudes (unused).

    def __post_init__(self) -> None:
        ints = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_layers",
                "channel_base", "channel_max", "num_layers", "num_critical", "margin_size", "num_fp16_res",
                "conv_kernel", "filter_size", "lrelu_upsampling")
        floats = ("mapping_lr_multiplier", "w_avg_beta", "first_cutoff", "first_stopband",
                  "last_stopband_rel", "output_scale", "magnitude_ema_beta")
        # Normalise numeric types so that equal configs hash equal (jit static argument).
        for name in ints:
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in floats:
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "use_radial_filters", bool(self.use_radial_filters))
        if self.conv_clamp is not None:
            object.__setattr__(self, "conv_clamp", float(self.conv_clamp))
        if self.z_dim <= 0 or self.w_dim <= 0 or self.c_dim < 0:
            raise ConfigError(f"stylegan3: need z_dim > 0, w_dim > 0, c_dim >= 0 (got {self.z_dim}, "
                              f"{self.w_dim}, {self.c_dim})")
        if self.num_layers <= self.num_critical:
            raise ConfigError(f"stylegan3: num_layers ({self.num_layers}) must exceed num_critical "
                              f"({self.num_critical})")

    @classmethod
    def from_init_kwargs(cls, init: Mapping[str, Any]) -> Config:
        """Build from ``G.init_kwargs`` (pickle ``_init_kwargs``); unknown kwargs raise ConfigError."""
        init = dict(init)
        if "init_kwargs" in init:  # a whole init record (golden init_kwargs.json, Source.init)
            if init.get("init_args"):
                raise ConfigError(f"stylegan3: positional init_args are not supported ({init['init_args']})")
            init = dict(init["init_kwargs"])
        kwargs: dict[str, Any] = {}
        mapping = dict(init.pop("mapping_kwargs", None) or {})
        synthesis = dict(init.pop("synthesis_kwargs", None) or {})  # tolerated nesting
        for key, value in mapping.items():
            if key not in _MAPPING_KEYS:
                raise ConfigError(f"stylegan3: unknown mapping_kwargs entry {key!r}")
            kwargs[_MAPPING_KEYS[key]] = value
        fields = {f.name for f in dataclasses.fields(cls)} - set(_MAPPING_KEYS.values())
        for key, value in {**init, **synthesis}.items():
            if key == "class_name":
                continue
            if key not in fields:
                raise ConfigError(f"stylegan3: unknown Generator kwarg {key!r}")
            kwargs[key] = value
        missing = [k for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels") if k not in kwargs]
        if missing:
            raise ConfigError(f"stylegan3: init kwargs lack {', '.join(missing)}")
        return cls(**kwargs)

    @property
    def num_ws(self) -> int:
        return self.num_layers + 2

    @property
    def mapping_activation(self) -> str:  # the mapping FCs' activation (read by generators)
        return "lrelu"

    @functools.cached_property
    def input_spec(self) -> InputSpec:
        return _design(self)[0]

    @functools.cached_property
    def layers(self) -> tuple[LayerSpec, ...]:
        return _design(self)[1]

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)


def _design(cfg: Config) -> tuple[InputSpec, tuple[LayerSpec, ...]]:
    """The official ``SynthesisNetwork.__init__`` / ``SynthesisLayer.__init__`` arithmetic, float64."""
    res = cfg.img_resolution
    last_cutoff = res / 2                                            # f_{c,N}
    last_stopband = last_cutoff * cfg.last_stopband_rel              # f_{t,N}
    exponents = np.minimum(np.arange(cfg.num_layers + 1) / (cfg.num_layers - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents           # f_c[i]
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents   # f_t[i]
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))          # s[i]
    half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs                     # f_h[i]
    sizes = sampling_rates + cfg.margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels

    input_spec = InputSpec(channels=int(channels[0]), size=(int(sizes[0]), int(sizes[0])),
                           sampling_rate=float(sampling_rates[0]), bandwidth=float(cutoffs[0]))
    layers = []
    for idx in range(cfg.num_layers + 1):
        prev = max(idx - 1, 0)
        is_torgb = idx == cfg.num_layers
        is_crit = idx >= cfg.num_layers - cfg.num_critical
        in_sr, out_sr = int(sampling_rates[prev]), int(sampling_rates[idx])
        in_size, out_size = int(sizes[prev]), int(sizes[idx])
        tmp_sr = max(in_sr, out_sr) * (1 if is_torgb else cfg.lrelu_upsampling)
        kernel = 1 if is_torgb else cfg.conv_kernel
        up = int(np.rint(tmp_sr / in_sr))
        down = int(np.rint(tmp_sr / out_sr))
        if in_sr * up != tmp_sr or out_sr * down != tmp_sr:
            raise ConfigError(f"stylegan3: layer {idx}: sampling rates {in_sr}/{tmp_sr}/{out_sr} not integer ratios")
        up_taps = cfg.filter_size * up if up > 1 and not is_torgb else 1
        down_taps = cfg.filter_size * down if down > 1 and not is_torgb else 1
        down_radial = cfg.use_radial_filters and not is_crit
        up_filter = design_lowpass_filter(up_taps, float(cutoffs[prev]), float(half_widths[prev]) * 2, tmp_sr)
        down_filter = design_lowpass_filter(down_taps, float(cutoffs[idx]), float(half_widths[idx]) * 2, tmp_sr,
                                            radial=down_radial)
        # Padding so that the output has out_size samples (symmetric interpretation, Appendix C.3).
        pad_total = (out_size - 1) * down + 1
        pad_total -= (in_size + kernel - 1) * up
        pad_total += up_taps + down_taps - 2
        pad_lo = (pad_total + up) // 2
        pad_hi = pad_total - pad_lo
        out_channels = int(channels[idx])
        layers.append(LayerSpec(
            name=f"L{idx}_{out_size}_{out_channels}", is_torgb=is_torgb, is_critically_sampled=is_crit,
            use_fp16=bool(sampling_rates[idx] * (2 ** cfg.num_fp16_res) > res),
            in_channels=int(channels[prev]), out_channels=out_channels,
            in_size=(in_size, in_size), out_size=(out_size, out_size),
            in_sampling_rate=in_sr, out_sampling_rate=out_sr, tmp_sampling_rate=tmp_sr,
            in_cutoff=float(cutoffs[prev]), out_cutoff=float(cutoffs[idx]),
            in_half_width=float(half_widths[prev]), out_half_width=float(half_widths[idx]),
            conv_kernel=kernel, up_factor=up, down_factor=down, up_taps=up_taps, down_taps=down_taps,
            down_radial=down_radial, padding=(pad_lo, pad_hi, pad_lo, pad_hi),
            up_filter=up_filter, down_filter=down_filter))
    return input_spec, tuple(layers)


# ---------------------------------------------------------------------------------------------
# Modules (the official hierarchy: Generator.mapping / Generator.synthesis.{input, L0_36_512, ...})


class SynthesisInput(nnx.Module):
    """``SynthesisInput``: ``affine`` (w -> [r_c, r_s, t_x, t_y]), the fixed random ``freqs`` [C, 2] and
    ``phases`` [C], the user ``transform`` [3, 3] (buffers) and the trained ``weight`` [C, C] ([in, out]).
    The sampling grid (pixel centres of the official ``affine_grid``) is a build-time constant."""

    def __init__(self, cfg: Config) -> None:
        spec = cfg.input_spec
        self.channels, self.size = spec.channels, spec.size
        self.sampling_rate, self.bandwidth = spec.sampling_rate, spec.bandwidth
        self.affine = FullyConnectedLayer(cfg.w_dim, 4)
        self.weight = param(spec.channels, spec.channels)
        self.transform = buffer(3, 3)
        self.freqs = buffer(spec.channels, 2)
        self.phases = buffer(spec.channels)
        width, height = spec.size
        gx = (0.5 * width / spec.sampling_rate) * ((2 * np.arange(width) + 1) / width - 1)
        gy = (0.5 * height / spec.sampling_rate) * ((2 * np.arange(height) + 1) / height - 1)
        self.grid_x = const(gx[None, None, :, None])   # [1, 1, W, 1]
        self.grid_y = const(gy[None, :, None, None])   # [1, H, 1, 1]

    def __call__(self, t: jax.Array) -> jax.Array:
        """Affine output t [B, 4] (not yet normalised) -> Fourier features [B, H, W, C], rotated/translated
        by t and then by the stored (user) inverse ``transform``."""
        t = t / jnp.sqrt(jnp.sum(jnp.square(t[:, :2]), axis=1, keepdims=True))
        cos, sin, tx, ty = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
        zero, one = jnp.zeros_like(cos), jnp.ones_like(cos)
        m_r = jnp.stack([jnp.stack([cos, -sin, zero], -1), jnp.stack([sin, cos, zero], -1),
                         jnp.stack([zero, zero, one], -1)], axis=1)          # inverse rotation [B, 3, 3]
        m_t = jnp.stack([jnp.stack([one, zero, -tx], -1), jnp.stack([zero, one, -ty], -1),
                         jnp.stack([zero, zero, one], -1)], axis=1)          # inverse translation
        transforms = m_r @ m_t @ self.transform[...][None]                 # [B, 3, 3]

        freqs = self.freqs[...][None]                                       # [1, C, 2]
        phases = self.phases[...][None] + (freqs @ transforms[:, :2, 2:])[..., 0]  # [B, C]
        freqs = freqs @ transforms[:, :2, :2]                               # [B, C, 2]
        # Dampen frequencies the user transform pushed out of band.
        amplitudes = jnp.clip(1 - (jnp.sqrt(jnp.sum(jnp.square(freqs), axis=2)) - self.bandwidth)
                              / (self.sampling_rate / 2 - self.bandwidth), 0, 1)  # [B, C]

        gx, gy = jnp.asarray(self.grid_x[...]), jnp.asarray(self.grid_y[...])
        x = gx * freqs[:, None, None, :, 0] + gy * freqs[:, None, None, :, 1]  # [B, H, W, C]
        x = jnp.sin((x + phases[:, None, None, :]) * np.float32(2 * np.pi))
        x = x * amplitudes[:, None, None, :]
        return x @ (self.weight[...] * np.float32(1 / np.sqrt(self.channels)))


def modulated_conv2d(x: jax.Array, weight: jax.Array, s: jax.Array, *, demodulate: bool,
                     padding: int, input_gain: jax.Array) -> jax.Array:
    """SG3 ``modulated_conv2d``: pre-normalised weight and styles (fp16 range), demodulation, then the
    ``input_gain`` (magnitude EMA) applied to the input only (it does not enter the demodulation)."""
    if demodulate:
        weight = weight * lax.rsqrt(jnp.mean(jnp.square(weight), axis=(0, 1, 2), keepdims=True))
        s = s * lax.rsqrt(jnp.mean(jnp.square(s)))  # over the whole batch, as the official
    return ops.modulated_conv2d(x * input_gain, weight, s, demodulate=demodulate, padding=padding)


class SynthesisLayer(nnx.Module):
    """``SynthesisLayer`` (ToRGB when ``is_torgb``): ``affine`` (w -> styles [in_channels]), ``weight``
    [k, k, in, out] (HWIO), ``bias`` [out], the ``magnitude_ema`` buffer []; the design of
    :class:`LayerSpec` as static attributes and the ``up_filter`` / ``down_filter`` as constants (absent,
    None, where the official buffer is None: identity)."""

    def __init__(self, cfg: Config, spec: LayerSpec) -> None:
        for field in dataclasses.fields(spec):
            if field.name not in ("up_filter", "down_filter"):
                setattr(self, field.name, getattr(spec, field.name))
        self.up_filter = None if spec.up_filter is None else const(spec.up_filter)
        self.down_filter = None if spec.down_filter is None else const(spec.down_filter)
        self.conv_clamp = cfg.conv_clamp
        self.affine = FullyConnectedLayer(cfg.w_dim, spec.in_channels)
        self.weight = param(spec.conv_kernel, spec.conv_kernel, spec.in_channels, spec.out_channels)
        self.bias = param(spec.out_channels)
        self.magnitude_ema = buffer()

    def __call__(self, x: jax.Array, s: jax.Array) -> jax.Array:
        """x [B, in_size, in_size, in_channels], styles s [B, in_channels] (raw affine output)
        -> [B, out_size, out_size, out_channels]."""
        input_gain = lax.rsqrt(self.magnitude_ema[...])
        if self.is_torgb:
            s = s * np.float32(1 / np.sqrt(self.in_channels * self.conv_kernel ** 2))
        x = modulated_conv2d(x, self.weight[...], s, demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
                             input_gain=input_gain)
        return ops.filtered_lrelu(
            x, None if self.up_filter is None else self.up_filter[...],
            None if self.down_filter is None else self.down_filter[...], self.bias[...],
            up=self.up_factor, down=self.down_factor, padding=self.padding,
            gain=1.0 if self.is_torgb else float(np.sqrt(2)), slope=1.0 if self.is_torgb else 0.2,
            clamp=self.conv_clamp)


class SynthesisNetwork(nnx.Module):
    """``SynthesisNetwork``: ``input`` (:class:`SynthesisInput`), then one :class:`SynthesisLayer` per name of
    ``cfg.layer_names`` (``L0_36_512`` .. ``L{N}_{res}_{img_channels}``, the last one ToRGB)."""

    def __init__(self, cfg: Config) -> None:
        self.w_dim, self.num_ws, self.output_scale = cfg.w_dim, cfg.num_ws, cfg.output_scale
        self.layer_names = cfg.layer_names
        self.input = SynthesisInput(cfg)
        for spec in cfg.layers:
            setattr(self, spec.name, SynthesisLayer(cfg, spec))

    def styles(self, ws: jax.Array) -> dict[str, jax.Array]:
        """ws [B, num_ws, w_dim] -> raw affine outputs (S space): ``"input"`` [B, 4] and each layer name
        [B, in_channels] (ToRGB's ``1/sqrt(in)`` gain not applied)."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ConfigError(f"stylegan3: ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.astype(jnp.float32)
        out = {"input": self.input.affine(ws[:, 0])}
        for idx, name in enumerate(self.layer_names):
            out[name] = getattr(self, name).affine(ws[:, idx + 1])
        return out

    def blocks(self, x: jax.Array | None, styles: Mapping[str, jax.Array], first: int, last: int,
               out: dict | None = None) -> jax.Array:
        """Layers first..last of (input, L0, L1, ...) (1-based: block 1 is ``input``, taking x = None; the last
        one's output scaled by ``output_scale``): the whole synthesis, or the split forward of the multi-code prior
        (`jaxinv.mgan`). `out`: a dict that receives each layer's output (before ``output_scale``) by name."""
        for i in range(first - 1, last):
            name = "input" if i == 0 else self.layer_names[i - 1]
            s = styles[name].astype(jnp.float32)
            x = self.input(s) if i == 0 else getattr(self, name)(x, s)
            if out is not None:
                out[name] = x
        if last == len(self.layer_names) + 1 and self.output_scale != 1:
            x = x * np.float32(self.output_scale)
        return x

    def __call__(self, ws: jax.Array | None = None, *, styles: Mapping[str, jax.Array] | None = None,
                 noise_mode: str = "const", noise: Mapping[str, jax.Array] | None = None,
                 key: jax.Array | None = None,
                 return_layers: bool = False) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
        """ws [B, num_ws, w_dim] (or S-space ``styles``) -> image [B, H, W, img_channels] (times
        ``output_scale``); with ``return_layers`` also every layer's output (before ``output_scale``)."""
        if noise_mode not in ("const", "none", "random"):
            raise ConfigError(f"stylegan3.synthesis: noise_mode must be const/none/random, got {noise_mode!r}")
        if noise:
            raise ConfigError("stylegan3.synthesis: StyleGAN3 has no noise inputs (noise must be empty)")
        del key
        if styles is None:
            if ws is None:
                raise ConfigError("stylegan3.synthesis: give ws or styles")
            styles = self.styles(ws)
        missing = [n for n in ("input", *self.layer_names) if n not in styles]
        if missing:
            raise ConfigError(f"stylegan3.synthesis: styles lack {', '.join(missing)}")
        layer_outs: dict | None = {} if return_layers else None
        img = self.blocks(None, styles, 1, len(self.layer_names) + 1, layer_outs)
        return (img, layer_outs) if return_layers else img


class Generator(nnx.Module):
    """``Generator``: ``mapping`` (:class:`MappingNetwork`) and ``synthesis`` (:class:`SynthesisNetwork`)."""

    def __init__(self, cfg: Config) -> None:
        self.mapping = MappingNetwork(cfg)
        self.synthesis = SynthesisNetwork(cfg)

    def __call__(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: Any = 1.0,
                 truncation_cutoff: int | None = None, noise_mode: str = "const",
                 key: jax.Array | None = None) -> jax.Array:
        """z [B, z_dim] (+ c [B, c_dim]) -> image [B, H, W, img_channels]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, key=key)


# ---------------------------------------------------------------------------------------------
# The family's functions (the engine calls these): one-liners on the bound module (mapping / synthesis
# read only params["mapping"] / params["synthesis"], as G.mapping / G.synthesis)


def mapping(cfg: Config, params: Mapping[str, Any], z: jax.Array, c: jax.Array | None = None,
            truncation_psi: Any = 1.0, truncation_cutoff: int | None = None) -> jax.Array:
    """``G.mapping``: z [B, z_dim] (+ c [B, c_dim]) -> ws [B, num_ws, w_dim], truncated towards ``w_avg`` by
    ``truncation_psi`` for the first ``truncation_cutoff`` ws (None = all)."""
    return bind(MappingNetwork, cfg, params["mapping"])(z, c, truncation_psi, truncation_cutoff)


def styles(cfg: Config, params: Mapping[str, Any], ws: jax.Array) -> dict[str, jax.Array]:
    """Raw affine outputs (S space): ``"input"`` -> [B, 4] (rotation/translation of the Fourier
    features) and each layer name -> [B, in_channels] (ToRGB's ``1/sqrt(in)`` gain not applied)."""
    return bind(SynthesisNetwork, cfg, params["synthesis"]).styles(ws)


def synthesis(cfg: Config, params: Mapping[str, Any], ws: jax.Array | None = None, *,
              styles: Mapping[str, jax.Array] | None = None, noise_mode: str = "const",
              noise: Mapping[str, jax.Array] | None = None, key: jax.Array | None = None,
              return_layers: bool = False) -> jax.Array | tuple[jax.Array, dict[str, jax.Array]]:
    """``G.synthesis``: ws [B, num_ws, w_dim] (or S-space ``styles`` as from :func:`styles`) ->
    image [B, H, W, img_channels] (NHWC, times ``output_scale``).

    StyleGAN3 has no noise inputs: ``noise_mode`` is accepted for API symmetry with StyleGAN2 and
    ``noise`` must be empty. ``return_layers`` also returns every layer's output (``"input"`` and the
    layer names; before ``output_scale``)."""
    return bind(SynthesisNetwork, cfg, params["synthesis"])(ws, styles=styles, noise_mode=noise_mode, noise=noise,
                                                            key=key, return_layers=return_layers)


def generate(cfg: Config, params: Mapping[str, Any], z: jax.Array, c: jax.Array | None = None,
             truncation_psi: Any = 1.0, truncation_cutoff: int | None = None, noise_mode: str = "const",
             key: jax.Array | None = None) -> jax.Array:
    """``Generator.forward``: z (+ c) -> image [B, H, W, img_channels]."""
    return bind(Generator, cfg, params)(z, c, truncation_psi, truncation_cutoff, noise_mode, key)


# ---------------------------------------------------------------------------------------------
# Checkpoint conversion (declarative name table)

# Layout fixes from the official (torch) layout to ours.
_AS_IS, _DENSE, _CONV = as_is, linear_t, conv_hwio


def _dense(prefix: str, path: tuple[str, ...], n_in: int, n_out: int) -> list[Entry]:
    return [Entry(f"{prefix}.weight", (n_out, n_in), (*path, "weight"), _DENSE),
            Entry(f"{prefix}.bias", (n_out,), (*path, "bias"), _AS_IS)]


def param_table(cfg: Config) -> list[Entry]:
    """Every name of the official ``Generator.state_dict()`` with its shape and where it goes (filters: checked
    against the design, not stored)."""
    spec = cfg.input_spec
    entries = [
        Entry("synthesis.input.weight", (spec.channels, spec.channels), ("synthesis", "input", "weight"), _DENSE),
        Entry("synthesis.input.transform", (3, 3), ("synthesis", "input", "transform"), _AS_IS),
        Entry("synthesis.input.freqs", (spec.channels, 2), ("synthesis", "input", "freqs"), _AS_IS),
        Entry("synthesis.input.phases", (spec.channels,), ("synthesis", "input", "phases"), _AS_IS),
        *_dense("synthesis.input.affine", ("synthesis", "input", "affine"), cfg.w_dim, 4),
    ]
    for layer in cfg.layers:
        pre, path = f"synthesis.{layer.name}", ("synthesis", layer.name)
        k = layer.conv_kernel
        entries += [
            Entry(f"{pre}.weight", (layer.out_channels, layer.in_channels, k, k), (*path, "weight"), _CONV),
            Entry(f"{pre}.bias", (layer.out_channels,), (*path, "bias"), _AS_IS),
            Entry(f"{pre}.magnitude_ema", (), (*path, "magnitude_ema"), _AS_IS),
        ]
        for kind in ("up_filter", "down_filter"):
            f = getattr(layer, kind)
            if f is not None:
                entries.append(Entry(f"{pre}.{kind}", f.shape, None))
        entries += _dense(f"{pre}.affine", (*path, "affine"), cfg.w_dim, layer.in_channels)
    entries.append(Entry("mapping.w_avg", (cfg.w_dim,), ("mapping", "w_avg"), _AS_IS))
    if cfg.c_dim > 0:
        entries += _dense("mapping.embed", ("mapping", "embed"), cfg.c_dim, cfg.w_dim)
    features = [cfg.z_dim + (cfg.w_dim if cfg.c_dim > 0 else 0)] + [cfg.w_dim] * cfg.mapping_layers
    for idx in range(cfg.mapping_layers):
        entries += _dense(f"mapping.fc{idx}", ("mapping", f"fc{idx}"), features[idx], features[idx + 1])
    return entries


def _design_constant(cfg: Config, name: str) -> np.ndarray:
    layer_name, kind = name.split(".")[1:3]
    return getattr(next(layer for layer in cfg.layers if layer.name == layer_name), kind)


def param_shapes(cfg: Config) -> dict[str, Any]:
    """The params pytree as ``jax.ShapeDtypeStruct`` leaves (our layouts), without allocating: the weights the
    :class:`Generator` module tree declares (the converter's table above writes the same tree)."""
    return jax.tree.map(lambda s: s, shapes(Generator, cfg))


def from_source(src: Any) -> tuple[Config, dict[str, Any]]:
    """``weights_convert.source.Source`` of family "stylegan3" -> (Config, params).

    Every official name must be present with its official shape and nothing else may be; the
    ``up_filter`` / ``down_filter`` buffers must equal the filters designed from the kwargs."""
    where = str((getattr(src, "provenance", None) or {}).get("source", "<stylegan3 source>"))
    try:
        cfg = Config.from_init_kwargs(src.init)
    except ConfigError as err:
        raise CheckpointError(f"{where}: {err}") from None
    table = param_table(cfg)
    params = fill(table, src.state_dict, where, what="stylegan3 state_dict")
    for e in table:
        if e.path is None:
            designed = _design_constant(cfg, e.name)
            err = float(np.abs(np.asarray(src.state_dict[e.name], np.float64) - designed).max())
            if err > 1e-6 * float(np.abs(designed).max()):
                raise CheckpointError(f"{where}: {e.name} differs from the filter designed from the init kwargs "
                                      f"(max abs diff {err:.3g})")
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(np.array(a, dtype=np.float32, order="C")), params)
    return cfg, params
