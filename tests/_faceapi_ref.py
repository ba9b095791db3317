"""Plain-numpy (float64) re-implementation of the face-api.js graphs, an oracle for jaxinv.models.faceapi.

Written from the face-api.js sources (TinyYolov2Base.runMobilenet, FaceFeatureExtractor, denseBlock4), on the
flat TF.js weight names straight from the manifest: padding is computed as TensorFlow does ('SAME': total
max((ceil(n / s) - 1) * s + k - n, 0), the smaller half first), convolutions are sums over kernel taps.
"""

from __future__ import annotations

import math

import numpy as np


def _same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, k: int, s: int, padding: str, value: float = 0.0) -> np.ndarray:
    if padding == "valid":
        return x
    ph, pw = _same_pads(x.shape[1], k, s), _same_pads(x.shape[2], k, s)
    return np.pad(x, ((0, 0), ph, pw, (0, 0)), constant_values=value)


def _out(n: int, k: int, s: int) -> int:
    return (n - k) // s + 1


def conv2d(x: np.ndarray, w: np.ndarray, s: int, padding: str) -> np.ndarray:
    """x [B, H, W, C], w [k, k, C, O] -> [B, H', W', O]; a sum over the k x k taps."""
    k = w.shape[0]
    x = _pad(x, k, s, padding)
    ho, wo = _out(x.shape[1], k, s), _out(x.shape[2], k, s)
    y = np.zeros((x.shape[0], ho, wo, w.shape[3]))
    for dy in range(k):
        for dx in range(k):
            patch = x[:, dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s]
            y += np.einsum("bhwc,co->bhwo", patch, w[dy, dx])
    return y


def depthwise(x: np.ndarray, w: np.ndarray, s: int, padding: str) -> np.ndarray:
    """x [B, H, W, C], w [k, k, C, 1] -> [B, H', W', C]."""
    k = w.shape[0]
    x = _pad(x, k, s, padding)
    ho, wo = _out(x.shape[1], k, s), _out(x.shape[2], k, s)
    y = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for dy in range(k):
        for dx in range(k):
            y += x[:, dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s] * w[dy, dx, :, 0]
    return y


def separable(x, weights, name, s, padding):
    y = depthwise(x, weights[f"{name}/depthwise_filter"], s, padding)
    return y @ weights[f"{name}/pointwise_filter"][0, 0] + weights[f"{name}/bias"]


def maxpool2(x: np.ndarray, s: int) -> np.ndarray:
    x = _pad(x, 2, s, "same", -np.inf)
    ho, wo = _out(x.shape[1], 2, s), _out(x.shape[2], 2, s)
    views = [x[:, dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s] for dy in (0, 1) for dx in (0, 1)]
    return np.max(np.stack(views), axis=0)


def leaky(x):
    return np.where(x > 0, x, 0.1 * x)


def relu(x):
    return np.maximum(x, 0.0)


def detector(weights: dict, img: np.ndarray) -> np.ndarray:
    """img [B, S, S, 3] 0..255 -> raw head [B, S/32, S/32, 25]."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    x = (np.asarray(img, np.float64) - np.array([117.001, 114.697, 97.404])) / 256.0
    x = leaky(conv2d(x, w["conv0/filters"], 1, "valid") + w["conv0/bias"])
    x = maxpool2(x, 2)
    for i in range(1, 6):
        x = leaky(separable(x, w, f"conv{i}", 1, "same"))
        x = maxpool2(x, 2 if i < 5 else 1)
    return conv2d(x, w["conv8/filters"], 1, "valid") + w["conv8/bias"]


def landmarks(weights: dict, img: np.ndarray) -> np.ndarray:
    """img [B, 112, 112, 3] 0..255 -> [B, 136]."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    x = (np.asarray(img, np.float64) - np.array([122.782, 117.001, 104.298])) / 255.0
    for b in range(4):
        p = f"dense{b}"
        if b == 0:
            out1 = relu(conv2d(x, w[f"{p}/conv0/filters"], 2, "same") + w[f"{p}/conv0/bias"])
        else:
            out1 = relu(separable(x, w, f"{p}/conv0", 2, "same"))
        out2 = separable(out1, w, f"{p}/conv1", 1, "same")
        out3 = separable(relu(out1 + out2), w, f"{p}/conv2", 1, "same")
        out4 = separable(relu(out1 + out2 + out3), w, f"{p}/conv3", 1, "same")
        x = relu(out1 + out2 + out3 + out4)
    x = x.mean(axis=(1, 2))  # avgPool 7x7 stride 2 'valid' on the 7x7 map
    return x @ w["fc/weights"] + w["fc/bias"]
