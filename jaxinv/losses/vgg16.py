"""VGG16 convolutional stack (torchvision `vgg16().features[0:30]`), NHWC, with the five LPIPS taps.

Module tree: `VGG16` (NNX) with `features` = {str(i): `Conv2d`}; `vgg16_features` binds it to the params.
Params (plain dict, torchvision names, jaxinv layouts):
    params["features"][str(i)] = {"weight": [3, 3, in, out] (HWIO), "bias": [out]}
for the conv indices i = 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28 of torchvision's `features`
Sequential. ReLUs follow every conv; 2x2 max-pools sit at indices 4, 9, 16, 23.

`winograd_params` adds ``"wino"`` (the F(4x4,3x3) transform of the weight, `jaxinv.winograd`) to the
convs with enough input channels; `vgg16_features` then runs those convs (forward and input gradient) with
4x fewer channel-mixing products, unless called with ``direct=True`` (the direct convs, e.g. for parity).

Two checkpoint layouts are read (both OIHW conv weights, transposed to HWIO here):
* torchvision state_dict: `features.{i}.weight` / `features.{i}.bias` (`classifier.*` ignored).
* NVlabs `vgg16.pt` (the TorchScript LPIPS-VGG16 of the stylegan2-ada-pytorch projector, sha256
  b437eb095feaeb0b83eb3fa11200ebca4548ee39a07fb944a417ddc516cc07c3): `layers.conv{k}.weight` /
  `layers.conv{k}.bias` for k = 1..13 (conv1_1 .. conv5_3 in order), classifier `layers.fc{1,2,3}.*`
  (ignored) and the LPIPS heads `lpips{0..4}` (read by `jaxinv.losses.lpips`). Evidence for these
  names: public code that loads that exact file (sha256 above) into a plain VGG16 by this name map and
  code that reaches its submodules as `vgg16.layers.conv1 .. conv13`, `pool1 .. pool5`, `fc1 .. fc3`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import download, ops, winograd
from jaxinv.errors import CheckpointError
from jaxinv.models.nn import bind, buffer, param
from jaxinv.state_dict import Entry, conv_hwio, fill
from weights_convert.torch_formats import load_torch
from weights_convert.torchscript import is_torchscript_archive, load_torchscript

__all__ = [
    "CONV_INDICES",
    "CONV_CHANNELS",
    "POOL_INDICES",
    "TAP_INDICES",
    "TAP_NAMES",
    "TAP_CHANNELS",
    "Config",
    "Conv2d",
    "VGG16",
    "vgg16_features",
    "winograd_params",
    "WINOGRAD_MIN_CIN",
    "vgg16_params_from_torchvision",
    "vgg16_params_from_nvlabs",
    "vgg16_params_from_state_dict",
    "load_state_dict",
    "load_vgg16",
    "procedural_vgg16_state_dict",
    "procedural_vgg16",
]

# torchvision `features` indices of the 13 convs and their (in, out) channels.
CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CONV_CHANNELS: tuple[tuple[int, int], ...] = (
    (3, 64), (64, 64),
    (64, 128), (128, 128),
    (128, 256), (256, 256), (256, 256),
    (256, 512), (512, 512), (512, 512),
    (512, 512), (512, 512), (512, 512),
)
POOL_INDICES: tuple[int, ...] = (4, 9, 16, 23)
# Outputs of the ReLUs at these indices are the LPIPS taps.
TAP_INDICES: tuple[int, ...] = (3, 8, 15, 22, 29)
TAP_NAMES: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
TAP_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 512)


# ----------------------------------------------------------------------------------------------------
# Module


@dataclass(frozen=True)
class Config:
    wino: tuple[int, ...] = ()  # `features` indices of the convs whose params carry "wino" (`winograd_params`)

    @staticmethod
    def of(params: Mapping[str, Any]) -> Config:
        """The config `params` (a VGG16 params dict) was made for: which convs have Winograd weights."""
        feats = params.get("features", {}) if isinstance(params, Mapping) else {}
        return Config(tuple(i for i in CONV_INDICES if "wino" in feats.get(str(i), {})))


def _maxpool2x2(x: jax.Array) -> jax.Array:
    # MaxPool2d(2, 2): floor mode, odd trailing rows/cols dropped. Pairwise maxima of strided slices: a
    # reduce over the 2x2 windows ran 1.4-2x slower on XLA:CPU (forward + backward).
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2, :]
    x = jnp.maximum(x[:, 0::2], x[:, 1::2])
    return jnp.maximum(x[:, :, 0::2], x[:, :, 1::2])


class Conv2d(nnx.Module):
    """torch Conv2d(cin, cout, 3, padding=1): `weight` [3, 3, cin, cout] (HWIO), `bias` [cout]; with `wino`,
    also `wino` [36, cin, cout], the F(4x4,3x3) Winograd transform of `weight` (derived at load time, a buffer)."""

    def __init__(self, cin: int, cout: int, wino: bool) -> None:
        self.weight = param(3, 3, cin, cout)
        self.bias = param(cout)
        self.has_wino = wino
        if wino:
            self.wino = buffer(winograd.F43.n ** 2, cin, cout)

    def __call__(self, x: jax.Array, direct: bool = False) -> jax.Array:
        """[B, H, W, cin] -> [B, H, W, cout]; the Winograd conv for float32 `x` unless `direct`."""
        if self.has_wino and not direct and x.dtype == jnp.float32:
            y = winograd.conv3x3_f43(x, self.wino[...])
        else:
            y = ops.conv2d(x, self.weight[...].astype(x.dtype), padding=1)
        return y + self.bias[...].astype(x.dtype)


class VGG16(nnx.Module):
    """torchvision `vgg16().features[0:30]`: `features.{i}` Conv2d at CONV_INDICES (each followed by a ReLU),
    2x2 max-pools at POOL_INDICES (no weights)."""

    def __init__(self, cfg: Config) -> None:
        self.features = nnx.Dict({str(i): Conv2d(cin, cout, i in cfg.wino)
                                  for i, (cin, cout) in zip(CONV_INDICES, CONV_CHANNELS, strict=True)})

    def __call__(self, x: jax.Array, taps: Sequence[str] = TAP_NAMES, *,
                 direct: bool = False) -> dict[str, jax.Array]:
        """x [B, H, W, 3] (already normalised) -> {tap: [B, H / 2^(block-1), W / 2^(block-1), C]} (the requested
        ReLU outputs relu{block}_{conv}). Stops after the deepest requested tap."""
        names = _relu_names()
        wanted = set(taps)
        unknown = wanted - set(names.values())
        if unknown:
            raise ValueError(f"unknown VGG16 taps {sorted(unknown)}; known: {list(names.values())}")
        last = max(i for i, n in names.items() if n in wanted)
        out: dict[str, jax.Array] = {}
        for i in range(last + 1):
            if i in CONV_INDICES:
                x = self.features[str(i)](x, direct)
            elif i in POOL_INDICES:
                x = _maxpool2x2(x)
            else:  # ReLU
                x = jax.nn.relu(x)
                if names[i] in wanted:
                    out[names[i]] = x
        return {n: out[n] for n in taps}


def vgg16_features(
    params: Mapping[str, Any], x: jax.Array, taps: Sequence[str] = TAP_NAMES, *, direct: bool = False
) -> dict[str, jax.Array]:
    """Run the conv stack on `x` [B, H, W, 3] (already normalised) and return the requested ReLU taps.

    Stops after the deepest requested tap. Tap names: relu{block}_{conv} (relu1_1 .. relu5_3).
    Convs whose params carry ``"wino"`` (`winograd_params`) use it for float32 `x` unless `direct`.
    """
    return bind(VGG16, Config.of(params), params)(x, taps, direct=direct)


# Convs with at least this many input channels get a Winograd weight. conv1_1 (3 channels) would spend its
# time in the tile transforms (57 vs 17 ms, value_and_grad of the layer). LPIPS value_and_grad at 256x256 on a
# 2-core AVX-512 EPYC: 1.4-1.5x faster than direct with 128. 64 was 2-15% faster still, but F(4x4,3x3) in the
# two 64-channel layers made the image gradient's error vs float64 5% (L2) instead of direct float32's 0.6%;
# 128 keeps 0.6%.
WINOGRAD_MIN_CIN = 128


def winograd_params(params: Mapping[str, Any], min_cin: int | None = WINOGRAD_MIN_CIN) -> dict:
    """A copy of VGG16 params with ``"wino"`` = `winograd.transform_weight(weight, F43)` ([36, I, O] float32,
    4x the weight's size) for every conv with ``>= min_cin`` input channels (None: for none, which strips any
    present). Done once, at load time, so
    no step re-transforms the fixed weights; ``"weight"`` stays for `vgg16_features(..., direct=True)`."""
    feats = {}
    for name, p in params["features"].items():
        p = dict(p)
        p.pop("wino", None)
        w = np.asarray(p["weight"])
        if min_cin is not None and w.shape[2] >= min_cin:
            p["wino"] = winograd.transform_weight(w.astype(np.float64), winograd.F43)
        feats[name] = p
    return {**params, "features": feats}


def _relu_names() -> dict[int, str]:
    names, block, k = {}, 1, 0
    for i in range(30):
        if i in POOL_INDICES:
            block, k = block + 1, 0
        elif i not in CONV_INDICES:
            k += 1
            names[i] = f"relu{block}_{k}"
    return names


# ----------------------------------------------------------------------------------------------------
# Loaders


def _convert(state_dict: Mapping[str, Any], names: Sequence[tuple[str, str]], src: str,
             allowed_extra: Sequence[str]) -> dict:
    table = []
    for (wn, bn), idx, (cin, cout) in zip(names, CONV_INDICES, CONV_CHANNELS, strict=True):
        table += [Entry(wn, (cout, cin, 3, 3), ("features", str(idx), "weight"), conv_hwio),
                  Entry(bn, (cout,), ("features", str(idx), "bias"))]
    return fill(table, state_dict, src, what="VGG16 state_dict", ignore=lambda k: k.startswith(tuple(allowed_extra)))


def vgg16_params_from_torchvision(state_dict: Mapping[str, Any], src: str = "state_dict") -> dict:
    """Params from a torchvision VGG16 state_dict (`features.{i}.weight` OIHW, `.bias`)."""
    names = [(f"features.{i}.weight", f"features.{i}.bias") for i in CONV_INDICES]
    return _convert(state_dict, names, src, allowed_extra=("classifier.",))


def vgg16_params_from_nvlabs(state_dict: Mapping[str, Any], src: str = "vgg16.pt") -> dict:
    """Params from the NVlabs `vgg16.pt` layout (`layers.conv{1..13}.weight` OIHW, `.bias`)."""
    names = [(f"layers.conv{k}.weight", f"layers.conv{k}.bias") for k in range(1, 14)]
    return _convert(state_dict, names, src, allowed_extra=("layers.fc", "lpips"))


def vgg16_params_from_state_dict(state_dict: Mapping[str, Any], src: str = "state_dict") -> dict:
    """Detect the layout (torchvision or NVlabs) by its names and convert."""
    if "features.0.weight" in state_dict:
        return vgg16_params_from_torchvision(state_dict, src)
    if "layers.conv1.weight" in state_dict:
        return vgg16_params_from_nvlabs(state_dict, src)
    raise CheckpointError(
        f"{src}: not a VGG16 checkpoint (neither 'features.0.weight' nor 'layers.conv1.weight' found)"
    )


def _flatten_state(obj: Any, prefix: str, out: dict[str, np.ndarray], depth: int = 0) -> None:
    """Collect arrays of a nested reader object (dicts / objects with state) under dotted names."""
    if depth > 8:
        return
    if isinstance(obj, np.ndarray):
        out[prefix] = obj
        return
    if isinstance(obj, Mapping):
        items = obj.items()
    elif hasattr(obj, "state_dict") and callable(obj.state_dict):
        for k, v in obj.state_dict().items():
            out[f"{prefix}.{k}" if prefix else k] = np.asarray(v)
        return
    elif hasattr(obj, "__dict__"):
        items = vars(obj).items()
    else:
        return
    for k, v in items:
        if isinstance(k, str) and not k.startswith("_"):
            _flatten_state(v, f"{prefix}.{k}" if prefix else k, out, depth + 1)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Flat `name -> array` dict from a `.npz`, a torch.save file or a TorchScript archive (no torch); a URL is
    downloaded once into the cache (`jaxinv.download`)."""
    path = os.fspath(download.local_path(path))
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: file not found")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot read npz ({e})") from None
    if is_torchscript_archive(path):  # e.g. the NVlabs vgg16.pt
        obj = load_torchscript(path)
    else:
        obj = load_torch(path)
    out: dict[str, np.ndarray] = {}
    _flatten_state(obj, "", out)
    if not out:
        raise CheckpointError(f"{path}: no tensors found")
    return out


def load_vgg16(source: str | os.PathLike | Mapping[str, Any]) -> dict:
    """VGG16 params from a file path (.npz/.pth/.pt) or an in-memory state_dict of numpy arrays."""
    if isinstance(source, Mapping):
        return vgg16_params_from_state_dict(source)
    return vgg16_params_from_state_dict(load_state_dict(source), src=os.fspath(source))


# ----------------------------------------------------------------------------------------------------
# Procedural weights of the projector golden (shared/golden/README.md sections 6 and 9)


def procedural_vgg16_state_dict(seed: str = "vgg16-lpips-golden") -> dict[str, np.ndarray]:
    """torchvision-layout state_dict of the golden's procedural LPIPS backbone (OIHW, float32).

    Weight scale sqrt(3/fan_in)*sqrt(2) (He-uniform, fan_in = Cin*9), bias scale 0.01, offset 0.
    """
    from jaxinv.procedural import proc_tensor

    sd = {}
    for idx, (cin, cout) in zip(CONV_INDICES, CONV_CHANNELS, strict=True):
        scale = math.sqrt(3.0 / (cin * 9)) * math.sqrt(2.0)
        sd[f"features.{idx}.weight"] = proc_tensor(seed, f"features.{idx}.weight", (cout, cin, 3, 3),
                                                   scale, 0.0)
        sd[f"features.{idx}.bias"] = proc_tensor(seed, f"features.{idx}.bias", (cout,), 0.01, 0.0)
    return sd


def procedural_vgg16(seed: str = "vgg16-lpips-golden") -> dict:
    """jaxinv VGG16 params (HWIO) of the projector golden's procedural backbone."""
    return vgg16_params_from_torchvision(procedural_vgg16_state_dict(seed), src=f"procedural:{seed}")
