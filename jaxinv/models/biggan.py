"""BigGAN-deep generator as in huggingface/pytorch-pretrained-BigGAN (`BigGAN` + `BigGANConfig`).

Layout: NHWC activations, HWIO conv weights, [in, out] dense weights. Spectral norm is evaluated once at load
time from the stored `weight_orig`, `weight_u`, `weight_v` (eval mode does no power iteration), so params hold
the normalised weights `W / sigma`.

The model is the NNX module tree `BigGAN` (embeddings: SNLinear; generator: `Generator` with gen_z, layers.<k>
= `GenBlock` (bn_0..bn_3 `BigGANBatchNorm`, conv_0..conv_3 `SNConv2d`) or `SelfAttn`, bn, conv_to_rgb), which
mirrors the official one; the free functions `embed`, `cond_vector`, `generator`, `generate` bind it to params.
Trained weights are `nnx.Param`s, the BN statistics `Buffer`s.

Params pytree (names follow the official modules; `layers` keyed by the official ModuleList index):
    embeddings.weight                                  [num_classes, z_dim]
    generator.gen_z.{weight [2*z_dim, 4*4*16*ch], bias}
    generator.layers.<k>.bn_{0..3}.{running_means, running_vars [n_stats, C], scale.weight, offset.weight [2*z_dim, C]}
    generator.layers.<k>.conv_{0..3}.{weight HWIO, bias}          (GenBlock)
    generator.layers.<k>.snconv1x1_{theta,phi,g,o_conv}.weight [1, 1, in, out], gamma [1]   (SelfAttn)
    generator.bn.{running_means, running_vars, weight, bias}
    generator.conv_to_rgb.{weight [3, 3, ch, ch], bias [ch]}

Truncation is a static Python float: it selects (and interpolates) the per-truncation BN statistics, so every
distinct value compiles its own graph under `jax.jit(generate, static_argnums=(0, 4))`. `z` must already be
sampled at that truncation (the official `truncated_noise_sample` multiplies by it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models.nn import bind, buffer, param, shapes
from jaxinv.state_dict import Entry, as_is, conv_hwio, fill, linear_t

Params = dict[str, Any]

_HIGHEST = jax.lax.Precision.HIGHEST
_CONFIG_KEYS = ("output_dim", "z_dim", "class_embed_dim", "channel_width", "num_classes", "layers",
                "attention_layer_position", "eps", "n_stats")


# ----------------------------------------------------------------------------------------------------------
# Config


@dataclasses.dataclass(frozen=True)
class Config:
    output_dim: int                              # Image resolution the layout produces (4 * 2**num_upsamples).
    z_dim: int                                   # Latent size; the class embedding has the same size.
    class_embed_dim: int                         # Stored by BigGANConfig; the official model sizes by z_dim.
    channel_width: int                           # ch: block channels are ch * layer multipliers.
    num_classes: int                             # Length of the (soft) class vector.
    layers: tuple[tuple[bool, int, int], ...]    # Per GenBlock: (up_sample, in_mult, out_mult).
    attention_layer_position: int                # SelfAttn is inserted before GenBlock number this.
    eps: float                                   # BN epsilon (also the unused power-iteration eps).
    n_stats: int                                 # Number of stored per-truncation BN statistics.

    def __post_init__(self) -> None:
        layers = tuple((bool(u), int(i), int(o)) for u, i, o in self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise ConfigError("BigGAN config: 'layers' is empty")
        if layers[0][1] != 16:
            raise ConfigError(f"BigGAN config: first layer in_mult must be 16 (gen_z gives 16*ch channels), "
                              f"got {layers[0][1]}")
        for n, ((_, _, o), (_, i, _)) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
            if o != i:
                raise ConfigError(f"BigGAN config: layers[{n}] out_mult {o} != layers[{n + 1}] in_mult {i}")
        for n, (_, i, o) in enumerate(layers):
            cin, cout = i * self.channel_width, o * self.channel_width
            if cin != cout and cout != cin // 2:
                raise ConfigError(f"BigGAN config: layers[{n}] changes channels {cin}->{cout}; the official "
                                  "GenBlock only supports keeping or halving them")
            if cin // 4 == 0:
                raise ConfigError(f"BigGAN config: layers[{n}] has {cin} channels (< 4, no bottleneck)")
        res = 4 * 2 ** sum(u for u, _, _ in layers)
        if res != self.output_dim:
            raise ConfigError(f"BigGAN config: layers produce {res}x{res} images but output_dim={self.output_dim}")
        if self.has_attention and self.attention_channels % 8 != 0:
            raise ConfigError(f"BigGAN config: attention needs channels divisible by 8, got "
                              f"{self.attention_channels}")
        if self.n_stats < 2:
            raise ConfigError(f"BigGAN config: n_stats must be >= 2, got {self.n_stats}")

    @classmethod
    def from_hf(cls, config: dict) -> Config:
        """From the HF `config.json` dict (`BigGANConfig.to_dict()`; layers may be JSON lists), or a golden
        `init_kwargs.json` dict that wraps it as {"family", "class_name", "config"}."""
        if isinstance(config, dict) and "layers" not in config and isinstance(config.get("config"), dict):
            config = config["config"]
        if not isinstance(config, dict):
            raise ConfigError(f"BigGAN config: expected a dict, got {type(config).__name__}")
        missing = [k for k in _CONFIG_KEYS if k not in config]
        if missing:
            raise ConfigError(f"BigGAN config: missing keys {missing}")
        try:
            layers = tuple(tuple(layer) for layer in config["layers"])
            if any(len(layer) != 3 for layer in layers):
                raise ValueError("each layer must be [up_sample, in_mult, out_mult]")
            return cls(output_dim=int(config["output_dim"]), z_dim=int(config["z_dim"]),
                       class_embed_dim=int(config["class_embed_dim"]),
                       channel_width=int(config["channel_width"]), num_classes=int(config["num_classes"]),
                       layers=layers, attention_layer_position=int(config["attention_layer_position"]),
                       eps=float(config["eps"]), n_stats=int(config["n_stats"]))
        except (TypeError, ValueError) as e:
            raise ConfigError(f"BigGAN config: invalid value ({e})") from None

    def to_hf(self) -> dict:
        """The HF config dict (layers as lists, as `config.json` stores them)."""
        d = dataclasses.asdict(self)
        d["layers"] = [list(layer) for layer in self.layers]
        return d

    @property
    def cond_dim(self) -> int:
        return 2 * self.z_dim

    @property
    def img_resolution(self) -> int:
        return self.output_dim

    @property
    def has_attention(self) -> bool:
        return 0 <= self.attention_layer_position < len(self.layers)

    @property
    def attention_channels(self) -> int:
        return self.channel_width * self.layers[self.attention_layer_position][1]

    def module_index(self, block: int) -> int:
        """Official `generator.layers` index of GenBlock number `block` (SelfAttn shifts the later ones)."""
        return block + 1 if self.has_attention and block >= self.attention_layer_position else block

    @property
    def attention_index(self) -> int | None:
        return self.attention_layer_position if self.has_attention else None


# ----------------------------------------------------------------------------------------------------------
# Load-time helpers (numpy)


def spectral_sigma(weight_orig: np.ndarray, weight_u: np.ndarray, weight_v: np.ndarray) -> np.float32:
    """Eval-mode spectral norm estimate `u . (W_mat v)`, W_mat = weight_orig.reshape(out, -1)."""
    w = np.asarray(weight_orig, np.float64).reshape(weight_orig.shape[0], -1)
    return np.float32(np.dot(np.asarray(weight_u, np.float64), w @ np.asarray(weight_v, np.float64)))


def bn_stat_interpolation(truncation: float, n_stats: int) -> tuple[int, float]:
    """(start_idx, coef) as the official BigGANBatchNorm: modf(truncation / step) in float64.

    Statistics = stats[start]*coef + stats[start+1]*(1-coef) when coef != 0 (coef weights the LOWER index),
    else stats[start].
    """
    if not isinstance(truncation, (int, float, np.floating)) or isinstance(truncation, bool):
        raise ConfigError(f"truncation must be a static Python float (it selects BN statistics), "
                          f"got {type(truncation).__name__}")
    truncation = float(truncation)
    if not 0.0 < truncation <= 1.0:
        raise ConfigError(f"truncation={truncation}: must be in (0, 1]")
    coef, start = math.modf(truncation / (1.0 / (n_stats - 1)))
    start = int(start)
    if start > n_stats - 1 or (coef != 0.0 and start + 1 > n_stats - 1):
        raise ConfigError(f"truncation={truncation}: selects BN statistics beyond the {n_stats} stored")
    return start, coef


# ----------------------------------------------------------------------------------------------------------
# Modules (the official hierarchy; cfg and truncation static). Activations NHWC.


def _upsample2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour x2 (F.interpolate(scale_factor=2, mode='nearest')): [B, H, W, C] -> [B, 2H, 2W, C]."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


def _maxpool2x(x: jax.Array) -> jax.Array:
    """F.max_pool2d(x, 2, 2): [B, H, W, C] -> [B, H/2, W/2, C]."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class SNLinear(nnx.Module):
    """Official `snlinear` / `nn.Linear`: `weight` [in, out] (spectral norm folded in at conversion), `bias` [out]
    when `bias`. [..., in] -> [..., out]."""

    def __init__(self, cin: int, cout: int, bias: bool = True) -> None:
        self.weight = param(cin, cout)
        self.bias = param(cout) if bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jnp.matmul(x, self.weight[...], precision=_HIGHEST)
        return y if self.bias is None else y + self.bias[...]


class SNConv2d(nnx.Module):
    """Official `snconv2d` (stride 1, 'same' padding): `weight` [k, k, in, out] HWIO (spectral norm folded in),
    `bias` [out] when `bias`. [B, H, W, in] -> [B, H, W, out]; 1x1 convs run as a matmul."""

    def __init__(self, cin: int, cout: int, kernel: int, bias: bool = True) -> None:
        self.weight = param(kernel, kernel, cin, cout)
        self.bias = param(cout) if bias else None
        self.kernel = kernel

    def __call__(self, x: jax.Array, out_channels: int | None = None) -> jax.Array:
        """`out_channels`: keep only the first ones (the weight is sliced, not the output)."""
        w = self.weight[...] if out_channels is None else self.weight[..., :out_channels]
        b = None if self.bias is None else (self.bias[...] if out_channels is None else self.bias[:out_channels])
        if self.kernel == 1:
            y = jnp.matmul(x, w[0, 0], precision=_HIGHEST)
        else:
            y = ops.conv2d(x, w, padding=(self.kernel // 2, self.kernel // 2))
        return y if b is None else y + b


class BigGANBatchNorm(nnx.Module):
    """Official `BigGANBatchNorm` in eval mode, statistics picked (and interpolated) by the static truncation.

    Buffers `running_means`, `running_vars` [n_stats, C]. Conditional: `scale`, `offset` = SNLinear(2*z_dim, C,
    no bias), out = norm(x) * (1 + scale(cond)) + offset(cond); else params `weight`, `bias` [C].
    [B, H, W, C] (+ cond [B, 2*z_dim]) -> [B, H, W, C].
    """

    def __init__(self, cfg: Config, channels: int, conditional: bool) -> None:
        self.running_means = buffer(cfg.n_stats, channels)
        self.running_vars = buffer(cfg.n_stats, channels)
        if conditional:
            self.scale = SNLinear(cfg.cond_dim, channels, bias=False)
            self.offset = SNLinear(cfg.cond_dim, channels, bias=False)
        else:
            self.weight = param(channels)
            self.bias = param(channels)
        self.conditional, self.n_stats, self.eps = conditional, cfg.n_stats, cfg.eps

    def stats(self, truncation: float) -> tuple[jax.Array, jax.Array]:
        """(mean, var) [C] for this truncation (see `bn_stat_interpolation`)."""
        start, coef = bn_stat_interpolation(truncation, self.n_stats)
        means, variances = self.running_means[...], self.running_vars[...]
        if coef != 0.0:
            # Same float32 roundings as the official: each row times a (float32-cast) Python float.
            return (means[start] * coef + means[start + 1] * (1.0 - coef),
                    variances[start] * coef + variances[start + 1] * (1.0 - coef))
        return means[start], variances[start]

    def __call__(self, x: jax.Array, truncation: float, cond_vector: jax.Array | None = None) -> jax.Array:
        mean, var = self.stats(truncation)
        if not self.conditional:
            return (x - mean) / jnp.sqrt(var + self.eps) * self.weight[...] + self.bias[...]
        weight = 1.0 + self.scale(cond_vector)
        bias = self.offset(cond_vector)
        x = (x - mean) / jnp.sqrt(var + self.eps)
        return x * weight[:, None, None, :] + bias[:, None, None, :]


class GenBlock(nnx.Module):
    """Official BigGAN-deep bottleneck residual `GenBlock(in, out, up_sample)`, mid = in // 4:
    bn_0 conv_0 (1x1 in->mid), bn_1 [up x2] conv_1 (3x3), bn_2 conv_2 (3x3), bn_3 conv_3 (1x1 mid->out), each
    conv after ReLU(bn); skip: first `out` channels of x [up x2]. [B, H, W, in] -> [B, H*(2 if up), W*(..), out].
    """

    def __init__(self, cfg: Config, cin: int, cout: int, up_sample: bool) -> None:
        mid = cin // 4
        self.bn_0 = BigGANBatchNorm(cfg, cin, conditional=True)
        self.conv_0 = SNConv2d(cin, mid, 1)
        self.bn_1 = BigGANBatchNorm(cfg, mid, conditional=True)
        self.conv_1 = SNConv2d(mid, mid, 3)
        self.bn_2 = BigGANBatchNorm(cfg, mid, conditional=True)
        self.conv_2 = SNConv2d(mid, mid, 3)
        self.bn_3 = BigGANBatchNorm(cfg, mid, conditional=True)
        self.conv_3 = SNConv2d(mid, cout, 1)
        self.up_sample, self.drop_channels = up_sample, cin != cout

    def __call__(self, x: jax.Array, cond_vector: jax.Array, truncation: float) -> jax.Array:
        x0 = x
        x = self.conv_0(jax.nn.relu(self.bn_0(x, truncation, cond_vector)))
        x = jax.nn.relu(self.bn_1(x, truncation, cond_vector))
        if self.up_sample:
            x = _upsample2x(x)
        x = self.conv_1(x)
        x = self.conv_2(jax.nn.relu(self.bn_2(x, truncation, cond_vector)))
        x = self.conv_3(jax.nn.relu(self.bn_3(x, truncation, cond_vector)))
        if self.drop_channels:
            x0 = x0[..., : x0.shape[-1] // 2]  # the official drops the second half of the channels
        if self.up_sample:
            x0 = _upsample2x(x0)
        return x + x0


class SelfAttn(nnx.Module):
    """Official SAGAN `SelfAttn(C)`: 1x1 snconvs theta, phi (C -> C/8), g (C -> C/2), o_conv (C/2 -> C), no bias;
    keys/values max-pooled 2x2, softmax over the pooled positions; x + gamma * o. [B, H, W, C] -> same."""

    def __init__(self, cfg: Config, channels: int) -> None:
        c = channels
        self.snconv1x1_theta = SNConv2d(c, c // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv2d(c, c // 8, 1, bias=False)
        self.snconv1x1_g = SNConv2d(c, c // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv2d(c // 2, c, 1, bias=False)
        self.gamma = param(1)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        theta = self.snconv1x1_theta(x).reshape(b, h * w, c // 8)
        phi = _maxpool2x(self.snconv1x1_phi(x)).reshape(b, h * w // 4, c // 8)
        g = _maxpool2x(self.snconv1x1_g(x)).reshape(b, h * w // 4, c // 2)
        attn = jax.nn.softmax(jnp.einsum("bqc,bkc->bqk", theta, phi, precision=_HIGHEST), axis=-1)
        attn_g = jnp.einsum("bqk,bkc->bqc", attn, g, precision=_HIGHEST).reshape(b, h, w, c // 2)
        return x + self.gamma[...] * self.snconv1x1_o_conv(attn_g)


class Generator(nnx.Module):
    """Official `Generator`: gen_z (SNLinear 2*z_dim -> 4*4*16*ch), layers.<k> (GenBlock, with SelfAttn inserted
    at attention_layer_position), bn (unconditional BigGANBatchNorm(ch)), conv_to_rgb (3x3 ch -> ch, first 3
    kept). cond_vector [B, 2*z_dim] -> image [B, R, R, 3] in (-1, 1)."""

    def __init__(self, cfg: Config) -> None:
        ch = cfg.channel_width
        self.cfg = cfg
        self.gen_z = SNLinear(cfg.cond_dim, 4 * 4 * 16 * ch)
        layers: dict[str, nnx.Module] = {}
        for block, (up_sample, in_mult, out_mult) in enumerate(cfg.layers):
            if block == cfg.attention_index:
                layers[str(block)] = SelfAttn(cfg, ch * in_mult)
            layers[str(cfg.module_index(block))] = GenBlock(cfg, ch * in_mult, ch * out_mult, up_sample)
        self.layers = nnx.Dict(layers)
        self.num_layers = len(layers)
        self.bn = BigGANBatchNorm(cfg, ch, conditional=False)
        self.conv_to_rgb = SNConv2d(ch, ch, 3)

    @property
    def num_blocks(self) -> int:
        """Blocks of the split forward (`blocks`): gen_z, each of layers.<k>, the output head."""
        return self.num_layers + 2

    def blocks(self, x: jax.Array | None, cond_vector: jax.Array, truncation: float, first: int,
               last: int) -> jax.Array:
        """Blocks first..last (1-based): block 1 = gen_z (from cond_vector; x = None), block k + 2 = layers.<k>,
        block num_blocks = bn, ReLU, conv_to_rgb, tanh: the split forward of the multi-code prior (`jaxinv.mgan`)."""
        for b in range(first, last + 1):
            if b == 1:  # the official view(-1, 4, 4, 16*ch) is NHWC already (TF weight order)
                x = self.gen_z(cond_vector).reshape(-1, 4, 4, 16 * self.cfg.channel_width)
            elif b < self.num_blocks:
                layer = self.layers[str(b - 2)]
                x = layer(x) if isinstance(layer, SelfAttn) else layer(x, cond_vector, truncation)
            else:
                # Only the first 3 output channels of conv_to_rgb are kept: slice the weight, not the output.
                x = jnp.tanh(self.conv_to_rgb(jax.nn.relu(self.bn(x, truncation)), out_channels=3))
        return x

    def __call__(self, cond_vector: jax.Array, truncation: float) -> jax.Array:
        return self.blocks(None, cond_vector, truncation, 1, self.num_blocks)


class BigGAN(nnx.Module):
    """Official `BigGAN`: embeddings (Linear num_classes -> z_dim, no bias), generator (`Generator`)."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.embeddings = SNLinear(cfg.num_classes, cfg.z_dim, bias=False)
        self.generator = Generator(cfg)

    def embed(self, class_vector: jax.Array) -> jax.Array:
        """(Soft) class vectors [B, num_classes] -> [B, z_dim]."""
        return self.embeddings(jnp.asarray(class_vector, jnp.float32))

    def cond_vector(self, z: jax.Array, class_vector: jax.Array) -> jax.Array:
        """cat(z, embed(class_vector)) -> [B, 2*z_dim]."""
        return jnp.concatenate([jnp.asarray(z, jnp.float32), self.embed(class_vector)], axis=1)

    def __call__(self, z: jax.Array, class_vector: jax.Array, truncation: float) -> jax.Array:
        """z [B, z_dim], class_vector [B, num_classes], static truncation -> [B, R, R, 3] NHWC float32."""
        bn_stat_interpolation(truncation, self.cfg.n_stats)  # validate early with a clear error
        return self.generator(self.cond_vector(z, class_vector), truncation)


# ----------------------------------------------------------------------------------------------------------
# The engine's free functions (cfg and truncation static)


def embed(cfg: Config, params: Params, class_vector: jax.Array) -> jax.Array:
    """Class embedding of (soft) class vectors [B, num_classes] -> [B, z_dim] (Linear without bias)."""
    return bind(BigGAN, cfg, params).embed(class_vector)


def cond_vector(cfg: Config, params: Params, z: jax.Array, class_vector: jax.Array) -> jax.Array:
    """cat(z, embed(class_vector)) -> [B, 2*z_dim]."""
    return bind(BigGAN, cfg, params).cond_vector(z, class_vector)


def generator(cfg: Config, params: Params, cond: jax.Array, truncation: float) -> jax.Array:
    """`BigGAN.generator`: cond_vector [B, 2*z_dim] -> image [B, H, W, 3] in (-1, 1), NHWC float32."""
    return bind(BigGAN, cfg, params).generator(cond, truncation)


def generate(cfg: Config, params: Params, z: jax.Array, class_vector: jax.Array, truncation: float) -> jax.Array:
    """`BigGAN.forward(z, class_vector, truncation)` -> [B, H, W, 3] NHWC float32.

    z: [B, z_dim] (already truncated-normal * truncation); class_vector: [B, num_classes] (one-hot or soft);
    truncation: static Python float in (0, 1] (selects BN statistics; jit with it static).
    """
    return bind(BigGAN, cfg, params)(z, class_vector, truncation)


def one_hot(labels: Any, num_classes: int) -> np.ndarray:
    """Integer class labels -> one-hot float32 class vectors [B, num_classes]."""
    labels = np.atleast_1d(np.asarray(labels))
    if labels.dtype.kind not in "iu" or labels.ndim != 1 or (labels < 0).any() or (labels >= num_classes).any():
        raise ConfigError(f"class labels must be integers in [0, {num_classes}), got {labels.tolist()}")
    out = np.zeros((labels.shape[0], num_classes), np.float32)
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


# ----------------------------------------------------------------------------------------------------------
# Conversion from the official state_dict (declarative table)

# Layout fixes (`fill` applies them). Spectral-normed weights: <stem>.weight_orig goes to the
# param leaf (laid out, then divided by sigma), <stem>.weight_u / weight_v are checked and give sigma.
_AS_IS, _DENSE, _CONV = as_is, linear_t, conv_hwio
_ORIG = ".weight_orig"


def _sn_names(stem: str) -> tuple[str, str, str]:
    return stem + _ORIG, stem + ".weight_u", stem + ".weight_v"


def param_table(cfg: Config) -> list[Entry]:
    """Every official state_dict name with its official shape, param path and layout fix."""
    ch, cond = cfg.channel_width, cfg.cond_dim
    t: list[Entry] = []

    def copy(path: tuple[str, ...], name: str, shape: tuple[int, ...], fix: Any = _AS_IS) -> None:
        t.append(Entry(name, shape, path, fix))

    def sn(path: tuple[str, ...], stem: str, shape: tuple[int, ...]) -> None:
        orig, u, v = _sn_names(stem)
        t.append(Entry(orig, shape, path, _DENSE if len(shape) == 2 else _CONV))
        t.append(Entry(u, (shape[0],), None))
        t.append(Entry(v, (int(np.prod(shape[1:])),), None))

    copy(("embeddings", "weight"), "embeddings.weight", (cfg.z_dim, cfg.num_classes), _DENSE)
    sn(("generator", "gen_z", "weight"), "generator.gen_z", (4 * 4 * 16 * ch, cond))
    copy(("generator", "gen_z", "bias"), "generator.gen_z.bias", (4 * 4 * 16 * ch,))

    def bn(path: tuple[str, ...], stem: str, c: int, conditional: bool) -> None:
        copy(path + ("running_means",), stem + ".running_means", (cfg.n_stats, c))
        copy(path + ("running_vars",), stem + ".running_vars", (cfg.n_stats, c))
        if conditional:
            sn(path + ("scale", "weight"), stem + ".scale", (c, cond))
            sn(path + ("offset", "weight"), stem + ".offset", (c, cond))
        else:
            copy(path + ("weight",), stem + ".weight", (c,))
            copy(path + ("bias",), stem + ".bias", (c,))

    def conv(path: tuple[str, ...], stem: str, cin: int, cout: int, k: int, bias: bool = True) -> None:
        sn(path + ("weight",), stem, (cout, cin, k, k))
        if bias:
            copy(path + ("bias",), stem + ".bias", (cout,))

    for block, (_, in_mult, out_mult) in enumerate(cfg.layers):
        cin, cout = ch * in_mult, ch * out_mult
        if block == cfg.attention_index:
            k = str(block)
            path, stem = ("generator", "layers", k), f"generator.layers.{k}"
            conv(path + ("snconv1x1_theta",), stem + ".snconv1x1_theta", cin, cin // 8, 1, bias=False)
            conv(path + ("snconv1x1_phi",), stem + ".snconv1x1_phi", cin, cin // 8, 1, bias=False)
            conv(path + ("snconv1x1_g",), stem + ".snconv1x1_g", cin, cin // 2, 1, bias=False)
            conv(path + ("snconv1x1_o_conv",), stem + ".snconv1x1_o_conv", cin // 2, cin, 1, bias=False)
            copy(path + ("gamma",), stem + ".gamma", (1,))
        k = str(cfg.module_index(block))
        path, stem = ("generator", "layers", k), f"generator.layers.{k}"
        mid = cin // 4
        for n, (c_bn, c_in, c_out, ks) in enumerate([(cin, cin, mid, 1), (mid, mid, mid, 3),
                                                     (mid, mid, mid, 3), (mid, mid, cout, 1)]):
            bn(path + (f"bn_{n}",), f"{stem}.bn_{n}", c_bn, conditional=True)
            conv(path + (f"conv_{n}",), f"{stem}.conv_{n}", c_in, c_out, ks)
    bn(("generator", "bn"), "generator.bn", ch, conditional=False)
    conv(("generator", "conv_to_rgb"), "generator.conv_to_rgb", ch, ch, 3)
    return t


def state_dict_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Official state_dict names and shapes for this config (what a checkpoint must contain)."""
    return {e.name: e.shape for e in param_table(cfg)}


def spectral_norm_modules(cfg: Config) -> list[str]:
    """Official names of the spectral-normed modules (e.g. 'generator.layers.0.conv_0')."""
    return [e.name[: -len(_ORIG)] for e in param_table(cfg) if e.name.endswith(_ORIG)]


def param_shapes(cfg: Config) -> Params:
    """The params pytree as jax.ShapeDtypeStruct leaves (for eval_shape / allocation checks): what `BigGAN(cfg)`
    declares, which is what `convert_state_dict` writes."""
    return jax.tree.map(lambda x: x, shapes(BigGAN, cfg))  # a fresh dict (the built one is cached)


def convert_state_dict(cfg: Config, state_dict: dict[str, np.ndarray], source: str = "state_dict") -> Params:
    """Official state_dict -> params pytree; names and shapes checked, spectral norm applied."""
    table = param_table(cfg)
    params = fill(table, state_dict, source, what="BigGAN state_dict")
    for e in table:
        if not e.name.endswith(_ORIG):
            continue
        stem = e.name[: -len(_ORIG)]
        orig, u, v = (np.asarray(state_dict[n], np.float32) for n in _sn_names(stem))
        sigma = spectral_sigma(orig, u, v)
        if not np.isfinite(sigma) or sigma == 0:
            raise CheckpointError(f"{source}: spectral norm of {stem} is {sigma} (bad weight_u/weight_v)")
        node = params
        for key in e.path[:-1]:
            node = node[key]
        node[e.path[-1]] = np.asarray(node[e.path[-1]], np.float32) / sigma  # the official weight_orig / sigma
    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.array(a, np.float32, order="C")), params)


def from_source(src: Any) -> tuple[Config, Params]:
    """Config + params from a `weights_convert.source.Source` with family 'biggan'.

    src.init is the HF config dict (config.json); src.state_dict the official names/layouts.
    """
    if getattr(src, "family", None) != "biggan":
        raise CheckpointError(f"{_source_name(src)}: expected a BigGAN source, got family {src.family!r}")
    cfg = Config.from_hf(src.init)
    return cfg, convert_state_dict(cfg, src.state_dict, _source_name(src))


def _source_name(src: Any) -> str:
    prov = getattr(src, "provenance", None) or {}
    return str(prov.get("source") or prov.get("path") or "BigGAN source")
