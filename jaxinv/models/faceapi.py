"""face-api.js networks for face alignment: the tiny face detector and the 68-point landmark net.

Both are the TF.js models of face-api.js (MIT; weights `tiny_face_detector_model` and `face_landmark_68_model`,
uint8-quantized manifest + bin, read by `weights_convert.tfjs`). Graphs as in face-api.js
(src/tinyYolov2/TinyYolov2Base.ts `runMobilenet`, src/faceFeatureExtractor/FaceFeatureExtractor.ts, denseBlock.ts):

    TinyFaceDetector (YOLO-v2 head on a MobileNet-style trunk), input [B, S, S, 3] in 0..255, S % 32 == 0:
        (x - MEAN_RGB_DETECTOR) / 256
        conv0     3x3 conv, VALID, + bias, leaky 0.1          -> S-2
        maxpool   2x2 / 2, SAME                               (S-2)/2, then /2 (ceil) ... down to S/32
        conv1..5  pad 1, depthwise 3x3 + pointwise 1x1 + bias, leaky 0.1, each followed by
                  maxpool 2x2 / 2 SAME (after conv5: 2x2 / 1 SAME)
        conv8     1x1 conv + bias -> [B, S/32, S/32, 5 anchors x (tx, ty, tw, th, t_score)]

    FaceLandmark68Net, input [B, 112, 112, 3] in 0..255:
        (x - MEAN_RGB_LANDMARKS) / 255
        dense0..3 four dense blocks (first conv strided 2): out1 = relu(c0(x)); out2 = c1(out1);
                  out3 = c2(relu(out1 + out2)); out4 = c3(relu(out1 + out2 + out3));
                  relu(out1 + out2 + out3 + out4); c0 of dense0 a full 3x3 conv, all others depthwise-separable
                  3x3 (SAME, + bias); 112 -> 56 -> 28 -> 14 -> 7
        avgpool   7x7 / 2 VALID -> [B, 256]
        fc        [256, 136] + bias -> (x0, y0, x1, y1, ...) relative to the padded square input

Params mirror the TF.js names: `conv1/depthwise_filter` is params["conv1"]["depthwise_filter"] (HWIO as stored,
depthwise [3, 3, C, 1]). Pre- and post-processing (padding to a square, anchors, box decoding, NMS, landmark
un-padding) are in `jaxinv.align`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from jaxinv.models.nn import bind, const, entry_table, param
from jaxinv.state_dict import fill
from weights_convert import tfjs as _tfjs

MEAN_RGB_DETECTOR = (117.001, 114.697, 97.404)  # tinyFaceDetector/const.ts
MEAN_RGB_LANDMARKS = (122.782, 117.001, 104.298)  # FaceFeatureExtractor.ts
BOX_ANCHORS = ((1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061), (4.266906, 5.178857),
               (9.041765, 10.66308))  # (w, h) in grid cells, tinyFaceDetector/const.ts
LEAKY_SLOPE = 0.10000000149011612  # tinyYolov2/leaky.ts (float32 0.1)
LANDMARK_INPUT = 112
DETECTOR_MODEL = "tiny_face_detector_model"
LANDMARK_MODEL = "face_landmark_68_model"

_DN = ("NHWC", "HWIO", "NHWC")


@dataclass(frozen=True)
class DetectorConfig:
    channels: tuple[int, ...] = (16, 32, 64, 128, 256, 512)  # Outputs of conv0 (full conv) and conv1..conv5.
    num_anchors: int = len(BOX_ANCHORS)  # Boxes per cell (5 numbers each, one class: no class scores).


@dataclass(frozen=True)
class LandmarkConfig:
    channels: tuple[int, ...] = (32, 64, 128, 256)  # Outputs of dense0..dense3.
    num_points: int = 68  # Landmarks (2 numbers each).


def _leaky(x: jax.Array) -> jax.Array:
    return jnp.maximum(x, LEAKY_SLOPE * x)


def _maxpool2(x: jax.Array, stride: int) -> jax.Array:
    """tf.maxPool(x, [2, 2], [stride, stride], 'same'): the SAME padding (bottom / right) never wins."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, stride, stride, 1), "SAME")


class Conv(nnx.Module):
    """A full conv + bias (`filters` [k, k, in, out] HWIO, `bias` [out])."""

    def __init__(self, k: int, cin: int, cout: int) -> None:
        self.filters = param(k, k, cin, cout)
        self.bias = param(cout)

    def __call__(self, x: jax.Array, stride: int = 1, padding: str = "SAME") -> jax.Array:
        y = jax.lax.conv_general_dilated(x, self.filters[...], (stride, stride), padding, dimension_numbers=_DN)
        return y + self.bias[...]


class SeparableConv(nnx.Module):
    """tf.separableConv2d + bias: depthwise 3x3 (`depthwise_filter` [3, 3, C, 1], stride, SAME), pointwise 1x1
    (`pointwise_filter` [1, 1, C, out])."""

    def __init__(self, cin: int, cout: int) -> None:
        self.depthwise_filter = param(3, 3, cin, 1)
        self.pointwise_filter = param(1, 1, cin, cout)
        self.bias = param(cout)

    def __call__(self, x: jax.Array, stride: int = 1) -> jax.Array:
        c = x.shape[-1]
        dw = self.depthwise_filter[...].reshape(3, 3, 1, c)  # [3, 3, C, 1] -> HWIO with one input per group
        y = jax.lax.conv_general_dilated(x, dw, (stride, stride), "SAME", dimension_numbers=_DN,
                                         feature_group_count=c)
        return jnp.einsum("bhwc,co->bhwo", y, self.pointwise_filter[...][0, 0]) + self.bias[...]


class TinyFaceDetector(nnx.Module):
    """face-api.js TinyFaceDetector (`runMobilenet` with isFirstLayerConv2d, 7 filter sizes: no conv6 / conv7)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        ch = cfg.channels
        self.conv0 = Conv(3, 3, ch[0])
        for i in range(1, len(ch)):
            setattr(self, f"conv{i}", SeparableConv(ch[i - 1], ch[i]))
        self.conv8 = Conv(1, ch[-1], 5 * cfg.num_anchors)
        self.mean = const(MEAN_RGB_DETECTOR)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, S, S, 3] in 0..255 (S % 32 == 0) -> raw head [B, S/32, S/32, anchors * 5]."""
        b, s, s2, c = x.shape
        if s != s2 or s % 32 or c != 3:
            raise ValueError(f"TinyFaceDetector: input must be [B, S, S, 3] with S % 32 == 0, got {x.shape}")
        x = (x.astype(jnp.float32) - self.mean[...]) / 256.0
        x = _maxpool2(_leaky(self.conv0(x, padding="VALID")), 2)
        n = len(self.cfg.channels)
        for i in range(1, n):
            x = _leaky(getattr(self, f"conv{i}")(x))
            x = _maxpool2(x, 2 if i < n - 1 else 1)
        return self.conv8(x)  # [B, S/32, S/32, A*5]


class DenseBlock(nnx.Module):
    """denseBlock4: conv0 (stride 2; a full conv in the first block) then three separable convs, dense sums."""

    def __init__(self, cin: int, cout: int, first: bool) -> None:
        self.conv0 = Conv(3, cin, cout) if first else SeparableConv(cin, cout)
        self.conv1 = SeparableConv(cout, cout)
        self.conv2 = SeparableConv(cout, cout)
        self.conv3 = SeparableConv(cout, cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        out1 = jax.nn.relu(self.conv0(x, 2))
        out2 = self.conv1(out1)
        out3 = self.conv2(jax.nn.relu(out1 + out2))
        out4 = self.conv3(jax.nn.relu(out1 + out2 + out3))
        return jax.nn.relu(out1 + out2 + out3 + out4)


class FC(nnx.Module):
    def __init__(self, cin: int, cout: int) -> None:
        self.weights = param(cin, cout)
        self.bias = param(cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.weights[...] + self.bias[...]


class FaceLandmark68Net(nnx.Module):
    """face-api.js FaceLandmark68Net: FaceFeatureExtractor (dense0..3, avgpool) + fc."""

    def __init__(self, cfg: LandmarkConfig) -> None:
        self.cfg = cfg
        ch = (3, *cfg.channels)
        for i in range(len(cfg.channels)):
            setattr(self, f"dense{i}", DenseBlock(ch[i], ch[i + 1], i == 0))
        self.fc = FC(ch[-1], 2 * cfg.num_points)
        self.mean = const(MEAN_RGB_LANDMARKS)

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, 112, 112, 3] in 0..255 -> [B, 136]: (x, y) per point, in units of the input side."""
        if x.shape[1:] != (LANDMARK_INPUT, LANDMARK_INPUT, 3):
            raise ValueError(f"FaceLandmark68Net: input must be [B, 112, 112, 3], got {x.shape}")
        x = (x.astype(jnp.float32) - self.mean[...]) / 255.0
        for i in range(len(self.cfg.channels)):
            x = getattr(self, f"dense{i}")(x)
        x = jnp.mean(x, axis=(1, 2))  # avgPool 7x7 / 2 VALID on the 7x7 map
        return self.fc(x)


# ----------------------------------------------------------------------------------------------------
# Loading


def _manifest(path: str | os.PathLike, model: str) -> str:
    path = os.fspath(path)
    return os.path.join(path, f"{model}-weights_manifest.json") if os.path.isdir(path) else path


def params_from_weights(cls: type[nnx.Module], cfg, weights: dict, src: str) -> dict:
    """Shape-check a flat TF.js `name -> array` map against `cls(cfg)` and nest it into params."""
    return fill(entry_table(cls, cfg), weights, src, what=f"{cls.__name__} TF.js weights")


def load_detector(path: str | os.PathLike) -> tuple[DetectorConfig, dict]:
    """(cfg, params) from `tiny_face_detector_model-weights_manifest.json` (or the folder holding it)."""
    f = _manifest(path, DETECTOR_MODEL)
    w = _tfjs.read_weights_manifest(_tfjs.read_json(f), os.path.dirname(f), src=f)
    cfg = DetectorConfig()
    return cfg, params_from_weights(TinyFaceDetector, cfg, w, f)


def load_landmarks(path: str | os.PathLike) -> tuple[LandmarkConfig, dict]:
    """(cfg, params) from `face_landmark_68_model-weights_manifest.json` (or the folder holding it)."""
    f = _manifest(path, LANDMARK_MODEL)
    w = _tfjs.read_weights_manifest(_tfjs.read_json(f), os.path.dirname(f), src=f)
    cfg = LandmarkConfig()
    return cfg, params_from_weights(FaceLandmark68Net, cfg, w, f)


def detector_forward(cfg: DetectorConfig, params: dict, x: jax.Array) -> jax.Array:
    """x [B, S, S, 3] in 0..255 -> raw head [B, S/32, S/32, anchors * 5]."""
    return bind(TinyFaceDetector, cfg, params)(x)


def landmarks_forward(cfg: LandmarkConfig, params: dict, x: jax.Array) -> jax.Array:
    """x [B, 112, 112, 3] in 0..255 -> [B, 136] (x, y interleaved, relative to the input side)."""
    return bind(FaceLandmark68Net, cfg, params)(x)
