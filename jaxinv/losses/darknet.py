"""Perceptual features from a real ImageNet CNN: Darknet "tiny" (ml5.js TF.js layers model).

The model is a Keras 2.2 Sequential-style graph stored as TF.js `model.json` + weight shards. The
loader reads the topology into a static `Config` (a tuple of layer specs, hashable for jit) and the
weights into params keyed by Keras layer name; `Darknet` (NNX) has one submodule per Keras layer at that name
(`darknet_forward` / `darknet_perceptual_features` bind it):
    params["conv2d_1"]["kernel"]                  [3, 3, 3, 16]  (HWIO, as stored)
    params["batch_normalization_1"]["gamma"|"beta"|"moving_mean"|"moving_variance"]
    params["conv2d_16"]["kernel"|"bias"]
Supported layers: InputLayer, Conv2D (stride 1 or more, same/valid, optional bias, linear activation),
BatchNormalization (inference), LeakyReLU, MaxPooling2D (same/valid), GlobalAveragePooling2D.
Preprocessing (as ml5.js): RGB / 255, bilinear resize to 224x224, no mean subtraction.

`darknet_perceptual_features` gives an LPIPS-style distance without learned heads: at each tap the
activations are unit-normalised over channels and divided by sqrt(h*w), so the squared distance of
the flat vectors is sum over taps of the spatial mean of ||n_a - n_b||^2. NOT LPIPS-calibrated.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import ops
from jaxinv.errors import CheckpointError
from jaxinv.losses.lpips import lpips_distance
from jaxinv.models.nn import bind, buffer, entry_table, param
from jaxinv.state_dict import fill
from weights_convert import tfjs as _tfjs

__all__ = [
    "Layer",
    "Config",
    "Darknet",
    "DEFAULT_TAPS",
    "load_darknet",
    "darknet_forward",
    "preprocess_darknet",
    "darknet_perceptual_features",
    "perceptual_distance",
]

# Last activation at each resolution (224, 112, 56, 28, 14 for a 224 input).
DEFAULT_TAPS: tuple[str, ...] = (
    "leaky_re_lu_1", "leaky_re_lu_2", "leaky_re_lu_6", "leaky_re_lu_10", "leaky_re_lu_14",
)


@dataclasses.dataclass(frozen=True)
class Layer:
    kind: str                       # Keras class name
    name: str                       # Keras layer name (= params key)
    kernel_size: tuple[int, int] = (1, 1)
    strides: tuple[int, int] = (1, 1)
    padding: str = "same"
    use_bias: bool = False
    alpha: float = 0.0              # LeakyReLU slope
    epsilon: float = 1e-3           # BatchNormalization
    pool_size: tuple[int, int] = (2, 2)
    filters: int = 0                # Conv2D output channels


@dataclasses.dataclass(frozen=True)
class Config:
    layers: tuple[Layer, ...]
    input_size: tuple[int, int] = (224, 224)
    in_channels: int = 3

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)


# ----------------------------------------------------------------------------------------------------
# Loading


def _parse_layers(topology: Any, src: str) -> Config:
    try:
        mc = topology["model_config"]
        cfg = mc["config"]
        layer_list = cfg["layers"] if isinstance(cfg, dict) else cfg
    except (KeyError, TypeError):
        raise CheckpointError(f"{src}: no modelTopology.model_config.config.layers") from None
    layers: list[Layer] = []
    prev_name = None
    in_channels = 3
    input_size = (224, 224)
    for entry in layer_list:
        kind, c = entry["class_name"], entry["config"]
        name = c["name"]
        inbound = entry.get("inbound_nodes") or []
        if prev_name is not None and inbound:
            srcs = [n[0] for node in inbound for n in node]
            if srcs != [prev_name]:
                raise CheckpointError(f"{src}: layer {name} is not sequential (inputs {srcs})")
        if kind == "InputLayer":
            shp = c["batch_input_shape"]
            if shp[1] is not None:
                input_size = (int(shp[1]), int(shp[2]))
            in_channels = int(shp[3])
            prev_name = name
            continue
        if kind == "Conv2D":
            if c.get("activation", "linear") != "linear" or tuple(c.get("dilation_rate", (1, 1))) != (1, 1):
                raise CheckpointError(f"{src}: {name}: only linear, undilated Conv2D is supported")
            if c.get("data_format", "channels_last") != "channels_last":
                raise CheckpointError(f"{src}: {name}: only channels_last is supported")
            k = tuple(int(v) for v in c["kernel_size"])
            layer = Layer(kind, name, kernel_size=k, strides=tuple(int(v) for v in c["strides"]),
                          padding=c["padding"], use_bias=bool(c["use_bias"]), filters=int(c["filters"]))
        elif kind == "BatchNormalization":
            if not (c.get("center", True) and c.get("scale", True)) or c.get("axis", -1) not in (-1, 3, [3], [-1]):
                raise CheckpointError(f"{src}: {name}: only centred+scaled, last-axis BatchNormalization")
            layer = Layer(kind, name, epsilon=float(c["epsilon"]))
        elif kind == "LeakyReLU":
            layer = Layer(kind, name, alpha=float(c["alpha"]))
        elif kind == "MaxPooling2D":
            layer = Layer(kind, name, pool_size=tuple(int(v) for v in c["pool_size"]),
                          strides=tuple(int(v) for v in c["strides"]), padding=c["padding"])
        elif kind == "GlobalAveragePooling2D":
            layer = Layer(kind, name)
        else:
            raise CheckpointError(f"{src}: unsupported layer {kind} ({name})")
        layers.append(layer)
        prev_name = name
    return Config(tuple(layers), input_size, in_channels)


def load_darknet(path: str | os.PathLike) -> tuple[Config, dict]:
    """(Config, params) from a TF.js layers-model `model.json` (or the folder holding it)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "model.json")
    model = _tfjs.read_json(path)
    if "modelTopology" not in model or "weightsManifest" not in model:
        raise CheckpointError(f"{path}: not a TF.js layers model (needs modelTopology and weightsManifest)")
    cfg = _parse_layers(model["modelTopology"], path)
    flat = _tfjs.read_weights_manifest(model["weightsManifest"], os.path.dirname(path), src=path)
    return cfg, fill(entry_table(Darknet, cfg), flat, path, what="Darknet TF.js weights")


# ----------------------------------------------------------------------------------------------------
# Module (one per Keras layer, named as in the model; weightless layers hold only their statics)


class Conv2D(nnx.Module):
    """Keras Conv2D (linear): `kernel` [kh, kw, cin, filters] (HWIO), `bias` [filters] when `use_bias`.
    [B, H, W, cin] -> [B, H', W', filters] (strides, same / valid padding)."""

    def __init__(self, spec: Layer, cin: int) -> None:
        self.kernel = param(*spec.kernel_size, cin, spec.filters)
        if spec.use_bias:
            self.bias = param(spec.filters)
        self.strides, self.padding, self.use_bias = spec.strides, spec.padding.upper(), spec.use_bias

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x, self.kernel[...].astype(x.dtype), window_strides=self.strides, padding=self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.bias[...] if self.use_bias else y


class BatchNormalization(nnx.Module):
    """Keras BatchNormalization, inference: `gamma`, `beta` [C] (params), `moving_mean`, `moving_variance` [C]
    (buffers). Shape-preserving."""

    def __init__(self, spec: Layer, channels: int) -> None:
        self.gamma = param(channels)
        self.beta = param(channels)
        self.moving_mean = buffer(channels)
        self.moving_variance = buffer(channels)
        self.epsilon = spec.epsilon

    def __call__(self, x: jax.Array) -> jax.Array:
        inv = self.gamma[...] / jnp.sqrt(self.moving_variance[...] + self.epsilon)
        return (x - self.moving_mean[...]) * inv + self.beta[...]


class LeakyReLU(nnx.Module):
    """Keras LeakyReLU(alpha). Shape-preserving."""

    def __init__(self, spec: Layer, channels: int) -> None:
        self.alpha = spec.alpha

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.where(x >= 0, x, self.alpha * x)


class MaxPooling2D(nnx.Module):
    """Keras MaxPooling2D(pool_size, strides, same / valid): [B, H, W, C] -> [B, H', W', C]."""

    def __init__(self, spec: Layer, channels: int) -> None:
        self.pool_size, self.strides, self.padding = spec.pool_size, spec.strides, spec.padding.upper()

    def __call__(self, x: jax.Array) -> jax.Array:
        (ph, pw), (sh, sw) = self.pool_size, self.strides
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, ph, pw, 1), (1, sh, sw, 1), self.padding)


class GlobalAveragePooling2D(nnx.Module):
    """Keras GlobalAveragePooling2D: [B, H, W, C] -> [B, C]."""

    def __init__(self, spec: Layer, channels: int) -> None:
        pass

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.mean(x, axis=(1, 2))


_LAYERS: dict[str, type[nnx.Module]] = {
    "Conv2D": Conv2D, "BatchNormalization": BatchNormalization, "LeakyReLU": LeakyReLU,
    "MaxPooling2D": MaxPooling2D, "GlobalAveragePooling2D": GlobalAveragePooling2D,
}


class Darknet(nnx.Module):
    """The Keras Sequential: one submodule per layer of `cfg.layers`, at its Keras name (`conv2d_1.kernel`,
    `batch_normalization_1.gamma`, `leaky_re_lu_1`, ..., `conv2d_16.bias`), applied in order."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        channels = cfg.in_channels
        for layer in cfg.layers:
            if layer.kind not in _LAYERS:
                raise ValueError(f"unsupported layer {layer.kind}")
            setattr(self, layer.name, _LAYERS[layer.kind](layer, channels))
            channels = layer.filters if layer.kind == "Conv2D" else channels

    def __call__(self, x: jax.Array, taps: Sequence[str] = ()) -> tuple[jax.Array | None, dict[str, jax.Array]]:
        """Preprocessed x [B, H, W, 3] -> (logits [B, 1000] or None, {tap: activation [B, h, w, C]}) (see
        `darknet_forward`)."""
        cfg = self.cfg
        wanted = set(taps)
        unknown = wanted - set(cfg.layer_names)
        if unknown:
            raise ValueError(f"unknown Darknet taps {sorted(unknown)}")
        last = max((i for i, layer in enumerate(cfg.layers) if layer.name in wanted), default=len(cfg.layers) - 1)
        feats: dict[str, jax.Array] = {}
        for layer in cfg.layers[: last + 1]:
            x = getattr(self, layer.name)(x)
            if layer.name in wanted:
                feats[layer.name] = x
        out = x if not taps or last == len(cfg.layers) - 1 else None
        return out, {n: feats[n] for n in taps}

    def perceptual_features(self, img: jax.Array, *, taps: Sequence[str] = DEFAULT_TAPS,
                            drange: tuple[float, float] = (-1.0, 1.0),
                            size: tuple[int, int] | None = (224, 224)) -> jax.Array:
        """Images [B, H, W, 3] in `drange` -> [B, D] (see `darknet_perceptual_features`)."""
        x = preprocess_darknet(img, drange=drange, size=size)
        _, feats = self(x, taps)
        out = []
        for n in taps:
            f = ops.normalize_channels(feats[n])
            _, h, w, _ = f.shape
            out.append((f / np.float32(np.sqrt(h * w))).reshape(f.shape[0], -1))
        return jnp.concatenate(out, axis=1)


def darknet_forward(cfg: Config, params: Mapping[str, Any], x: jax.Array,
                    taps: Sequence[str] = ()) -> tuple[jax.Array | None, dict[str, jax.Array]]:
    """Run the network on preprocessed `x` [B, H, W, 3]; returns (output, {tap name: activation}).

    Stops after the deepest tap when `taps` is given (output is then None); with no taps runs the
    whole model and returns the logits [B, 1000].
    """
    return bind(Darknet, cfg, params)(x, taps)


def preprocess_darknet(img: jax.Array, *, drange: tuple[float, float] = (-1.0, 1.0),
                       size: tuple[int, int] | None = (224, 224)) -> jax.Array:
    """Images in `drange` -> [0, 1], bilinear-resized to `size` (None keeps the size: the net is fully
    convolutional up to the global pooling)."""
    lo, hi = drange
    x = (img.astype(jnp.float32) - lo) / (hi - lo)
    if size is not None and tuple(x.shape[1:3]) != tuple(size):
        x = jax.image.resize(x, (x.shape[0], *size, x.shape[3]), method="linear", antialias=True)
    return x


def darknet_perceptual_features(cfg: Config, params: Mapping[str, Any], img: jax.Array, *,
                                taps: Sequence[str] = DEFAULT_TAPS,
                                drange: tuple[float, float] = (-1.0, 1.0),
                                size: tuple[int, int] | None = (224, 224)) -> jax.Array:
    """Flat per-image features [B, D]: per tap, channel-normalised activations / sqrt(h*w)."""
    return bind(Darknet, cfg, params).perceptual_features(img, taps=taps, drange=drange, size=size)


perceptual_distance = lpips_distance  # per-item squared distance of flat features, as LPIPS
