"""Identity loss on the dlib face-recognition ResNet (128-D descriptor), TF.js port of face-api.js.

Weights: `face_recognition_model-weights_manifest.json` + `face_recognition_model.bin` (uint8-quantised
TF.js tensors). Module tree `FaceRecognitionNet` (NNX; `face_descriptor` & co. bind it): `conv32_down`
(ConvLayer: `conv` {filters, bias}, `scale` {weights, biases}), `conv32_1` .. `conv256_down_out` (ResidualLayer:
`conv1`, `conv2` ConvLayers), `fc`. Params keep the TF.js names, nested at "/":
    params["conv32_down"]["conv"]["filters"]            [7, 7, 3, 32]  (HWIO, as stored)
    params["conv64_1"]["conv1"]["scale"]["weights"]     [64]
    params["fc"]                                        [256, 128]
Network (face-api.js `FaceRecognitionNet.forwardInput`): a conv unit is conv + bias, then a per-channel
affine (`scale`); `conv32_down` 7x7/2 VALID + ReLU, 3x3/2 VALID max-pool, plain residual blocks (3x3 SAME
conv+ReLU, 3x3 SAME conv, + input, ReLU) and down blocks (3x3/2 VALID conv+ReLU, 3x3 SAME conv; shortcut
2x2/2 average pool with zero channels appended; the main branch padded by one zero row/column at the
bottom/right when it is one pixel smaller; add; ReLU); spatial mean; `fc` without bias.

Input: 150x150 RGB in 0..255, minus the mean (122.782, 117.001, 104.298), divided by `input_divisor`.
face-api.js divides by 256; the golden in shared/realdata (SOURCE.md) divides by 255 (the default here,
see tests/test_identity.py for both).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import download
from jaxinv.models.nn import bind, entry_table, param
from jaxinv.state_dict import fill
from weights_convert import tfjs as _tfjs

__all__ = [
    "FACE_MEAN_RGB",
    "FACE_INPUT_SIZE",
    "BLOCKS",
    "Config",
    "FaceRecognitionNet",
    "load_face_id",
    "face_id_params_from_weights",
    "preprocess_face",
    "face_descriptor",
    "face_descriptor_from_image",
    "cosine_similarity",
    "identity_loss",
]

FACE_MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
FACE_INPUT_SIZE = 150
# (name, kind, channels) after the stem, in forward order.
BLOCKS: tuple[tuple[str, str, int], ...] = (
    ("conv32_1", "res", 32), ("conv32_2", "res", 32), ("conv32_3", "res", 32),
    ("conv64_down", "down", 64), ("conv64_1", "res", 64), ("conv64_2", "res", 64), ("conv64_3", "res", 64),
    ("conv128_down", "down", 128), ("conv128_1", "res", 128), ("conv128_2", "res", 128),
    ("conv256_down", "down", 256), ("conv256_1", "res", 256), ("conv256_2", "res", 256),
    ("conv256_down_out", "down", 256),
)


@dataclass(frozen=True)
class Config:
    blocks: tuple[tuple[str, str, int], ...] = BLOCKS  # (name, "res" | "down", channels) after the stem
    stem_channels: int = 32  # conv32_down: 7x7/2 conv, 3 -> 32
    descriptor: int = 128  # fc: [last channels, descriptor], no bias


CONFIG = Config()  # the face-api.js / dlib network (the only one there is)


# ----------------------------------------------------------------------------------------------------
# Module (face-api.js src/faceRecognitionNet: convLayer.ts, residualLayer.ts, FaceRecognitionNet.ts)


def _avgpool2(x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _maxpool3s2(x: jax.Array) -> jax.Array:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")


class ConvParams(nnx.Module):
    """tf.conv2d + bias: `filters` [k, k, cin, cout] (HWIO), `bias` [cout]."""

    def __init__(self, k: int, cin: int, cout: int, stride: int, padding: str) -> None:
        self.filters = param(k, k, cin, cout)
        self.bias = param(cout)
        self.stride, self.padding = stride, padding

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, H, W, cin] -> [B, H', W', cout] (H' = H for SAME / stride 1, (H - k) // stride + 1 for VALID)."""
        y = jax.lax.conv_general_dilated(
            x, self.filters[...].astype(x.dtype), window_strides=(self.stride, self.stride), padding=self.padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + self.bias[...]


class ScaleLayerParams(nnx.Module):
    """Per-channel affine: `weights`, `biases` [C]."""

    def __init__(self, channels: int) -> None:
        self.weights = param(channels)
        self.biases = param(channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.weights[...] + self.biases[...]


class ConvLayer(nnx.Module):
    """face-api.js convLayer: `conv` (ConvParams) then `scale` (ScaleLayerParams), then ReLU if `relu`."""

    def __init__(self, k: int, cin: int, cout: int, stride: int, padding: str, relu: bool) -> None:
        self.conv = ConvParams(k, cin, cout, stride, padding)
        self.scale = ScaleLayerParams(cout)
        self.relu = relu

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.scale(self.conv(x))
        return jax.nn.relu(y) if self.relu else y


class ResidualLayer(nnx.Module):
    """face-api.js residual / residualDown: `conv1` (3x3, ReLU; 2/VALID when `down`, else 1/SAME), `conv2` (3x3
    SAME); shortcut the input (`down`: 2x2/2 average pool, zero channels appended); + then ReLU.
    [B, H, W, cin] -> [B, H, W, cout] (res) or [B, ceil(H / 2), ceil(W / 2), cout] (down, cout = cin or 2 cin)."""

    def __init__(self, cin: int, cout: int, down: bool) -> None:
        self.conv1 = ConvLayer(3, cin, cout, 2 if down else 1, "VALID" if down else "SAME", True)
        self.conv2 = ConvLayer(3, cout, cout, 1, "SAME", False)
        self.down = down

    def __call__(self, x: jax.Array) -> jax.Array:
        out = self.conv2(self.conv1(x))
        if not self.down:
            return jax.nn.relu(out + x)
        pooled = _avgpool2(x)
        if pooled.shape[1:3] != out.shape[1:3]:
            # face-api.js appends one zero row (bottom) and one zero column (right) to the main branch.
            out = jnp.pad(out, ((0, 0), (0, 1), (0, 1), (0, 0)))
        if pooled.shape[3] != out.shape[3]:
            pooled = jnp.concatenate([pooled, jnp.zeros_like(pooled)], axis=3)
        return jax.nn.relu(pooled + out)


class FaceRecognitionNet(nnx.Module):
    """face-api.js FaceRecognitionNet (the dlib ResNet): `conv32_down` (7x7/2 VALID ConvLayer + ReLU), 3x3/2
    max-pool, the residual layers named in `cfg.blocks` (`conv32_1` .. `conv256_down_out`), spatial mean, `fc`
    [256, 128] without bias."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.conv32_down = ConvLayer(7, 3, cfg.stem_channels, 2, "VALID", True)
        cin = cfg.stem_channels
        for name, kind, ch in cfg.blocks:
            setattr(self, name, ResidualLayer(cin, ch, kind == "down"))
            cin = ch
        self.fc = param(cin, cfg.descriptor)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Preprocessed faces x [B, 150, 150, 3] (see `preprocess_face`) -> descriptors [B, 128]."""
        out = _maxpool3s2(self.conv32_down(x))
        for name, _, _ in self.cfg.blocks:
            out = getattr(self, name)(out)
        return jnp.mean(out, axis=(1, 2)) @ self.fc[...]

    def from_image(self, img: jax.Array, *, drange: tuple[float, float] = (-1.0, 1.0),
                   input_divisor: float = 255.0) -> jax.Array:
        """Images [B, H, W, 3] in `drange` -> descriptors [B, 128] (`preprocess_face` then the network)."""
        return self(preprocess_face(img, drange=drange, input_divisor=input_divisor))

    def identity_loss(self, img: jax.Array, target_descriptor: jax.Array, *,
                      drange: tuple[float, float] = (-1.0, 1.0), input_divisor: float = 255.0) -> jax.Array:
        """Per-item 1 - cos(descriptor(img), target_descriptor) [B]."""
        d = self.from_image(img, drange=drange, input_divisor=input_divisor)
        return 1.0 - cosine_similarity(d, target_descriptor)


# ----------------------------------------------------------------------------------------------------
# Loading


def face_id_params_from_weights(weights: Mapping[str, np.ndarray], src: str = "weights") -> dict:
    """Shape-check a flat TF.js `name -> array` map against `FaceRecognitionNet` and nest it into params."""
    return fill(entry_table(FaceRecognitionNet, CONFIG), weights, src, what="face-ID TF.js weights")


def load_face_id(path: str | os.PathLike) -> dict:
    """Params from the face-api.js weights manifest JSON (or the folder holding it), or the manifest's URL (it and
    its shards downloaded once into the cache, `jaxinv.download.fetch_tfjs`)."""
    path = os.fspath(download.fetch_tfjs(path) if download.is_url(path) else path)
    if os.path.isdir(path):
        path = os.path.join(path, "face_recognition_model-weights_manifest.json")
    manifest = _tfjs.read_json(path)
    weights = _tfjs.read_weights_manifest(manifest, os.path.dirname(path), src=path)
    return face_id_params_from_weights(weights, src=path)


# ----------------------------------------------------------------------------------------------------
# Forward


def face_descriptor(params: Mapping[str, Any], x: jax.Array) -> jax.Array:
    """128-D descriptors [B, 128] of preprocessed faces x [B, 150, 150, 3] (see `preprocess_face`)."""
    return bind(FaceRecognitionNet, CONFIG, params)(x)


def preprocess_face(
    img: jax.Array,
    *,
    drange: tuple[float, float] = (-1.0, 1.0),
    input_divisor: float = 255.0,
) -> jax.Array:
    """Images [B, H, W, 3] in `drange` -> network input: 0..255, bilinear resize to 150x150 (antialiased
    when shrinking; a no-op at 150), mean subtraction, division by `input_divisor`."""
    lo, hi = drange
    x = img.astype(jnp.float32)
    if (lo, hi) != (0.0, 255.0):
        x = (x - lo) * (255.0 / (hi - lo))
    b, h, w, c = x.shape
    if (h, w) != (FACE_INPUT_SIZE, FACE_INPUT_SIZE):
        x = jax.image.resize(x, (b, FACE_INPUT_SIZE, FACE_INPUT_SIZE, c), method="linear", antialias=True)
    return (x - jnp.asarray(FACE_MEAN_RGB, jnp.float32)) / input_divisor


def face_descriptor_from_image(params: Mapping[str, Any], img: jax.Array, *,
                               drange: tuple[float, float] = (-1.0, 1.0),
                               input_divisor: float = 255.0) -> jax.Array:
    """`face_descriptor(preprocess_face(img))`."""
    return bind(FaceRecognitionNet, CONFIG, params).from_image(img, drange=drange, input_divisor=input_divisor)


def cosine_similarity(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Cosine similarity along the last axis ([B, D] x [B or 1, D] -> [B])."""
    num = jnp.sum(a * b, axis=-1)
    den = jnp.sqrt(jnp.sum(a * a, axis=-1) * jnp.sum(b * b, axis=-1))
    return num / jnp.maximum(den, eps)


def identity_loss(params: Mapping[str, Any], img: jax.Array, target_descriptor: jax.Array, *,
                  drange: tuple[float, float] = (-1.0, 1.0), input_divisor: float = 255.0) -> jax.Array:
    """Per-item 1 - cos(descriptor(img), target_descriptor); compute the target descriptor once with
    `face_descriptor_from_image`."""
    return bind(FaceRecognitionNet, CONFIG, params).identity_loss(img, target_descriptor, drange=drange,
                                                                   input_divisor=input_divisor)
