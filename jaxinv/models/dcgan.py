"""DCGAN generator (the PyTorch DCGAN tutorial layout: `main` = ConvTranspose/BatchNorm/ReLU stack, tanh).

Official module (chien-liu/DCGAN-PyTorch, the same as the PyTorch DCGAN tutorial):

    main.0  ConvTranspose2d(z_dim, c0, 4, 1, 0, bias=False)  -> 4x4
    main.1  BatchNorm2d(c0); main.2 ReLU
    main.3  ConvTranspose2d(c0, c1, 4, 2, 1, bias=False)      -> 8x8
    ...
    main.3k ConvTranspose2d(c_{k-1}, img_channels, 4, 2, 1)   -> 4 * 2^k, then tanh

Channel counts come from the weight shapes. BatchNorm runs in eval mode (running statistics), so it is folded
into a per-channel scale/shift when the weights are loaded.

Params (NHWC images, HWIO kernels): params["main"][str(i)] = {"weight": [4, 4, in, out]} for each
transposed conv, already flipped spatially (a transposed conv is a stride-1 conv of the dilated input with the
flipped kernel), and {"scale": [C], "shift": [C]} for each folded BatchNorm.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models.nn import bind, param
from jaxinv.state_dict import Entry, fill

KERNEL = 4  # every transposed conv of the official module is 4x4
BN_EPS = 1e-5  # torch.nn.BatchNorm2d default
DEFAULT_ASSET = "dcgan_digiface64"


@dataclass(frozen=True)
class Config:
    z_dim: int = 100  # Latent size (nz in the official code).
    channels: tuple[int, ...] = (512, 256, 128, 64)  # Output channels of each hidden transposed conv.
    img_channels: int = 3  # Output channels (nc).

    @property
    def num_layers(self) -> int:
        return len(self.channels) + 1

    @property
    def img_resolution(self) -> int:
        return 4 * 2 ** len(self.channels)

    @property
    def num_ws(self) -> None:  # No W space: the DCGAN is driven by z only.
        return None


def _conv_index(layer: int) -> int:
    return 3 * layer  # main.{0,3,6,9,12}: each block is ConvTranspose, BatchNorm, ReLU


def _bn_index(layer: int) -> int:
    return 3 * layer + 1


def _flip_hwio(w: np.ndarray) -> np.ndarray:
    """torch ConvTranspose2d [in, out, kh, kw] -> the flipped HWIO kernel of the equivalent stride-1 conv."""
    return w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)


def from_source(src: Any) -> tuple[Config, dict]:
    """Build (Config, params) from an official DCGAN state_dict (`src.state_dict` or a plain dict)."""
    sd = src.state_dict if hasattr(src, "state_dict") else src
    prov = getattr(src, "provenance", None) or {}
    where = prov.get("path") or prov.get("source") or "dcgan state_dict"
    num_layers = 0
    while f"main.{_conv_index(num_layers)}.weight" in sd:
        num_layers += 1
    if num_layers < 2:
        raise CheckpointError(f"{where}: no DCGAN transposed convs 'main.0.weight', 'main.3.weight' found")
    shapes = [tuple(np.shape(sd[f"main.{_conv_index(i)}.weight"])) for i in range(num_layers)]
    for i, s in enumerate(shapes):
        if len(s) != 4 or s[2:] != (KERNEL, KERNEL):
            raise CheckpointError(f"{where}: main.{_conv_index(i)}.weight has shape {s}, expected (in, out, 4, 4)")
        if i > 0 and s[0] != shapes[i - 1][1]:
            raise CheckpointError(f"{where}: main.{_conv_index(i)}.weight takes {s[0]} channels, previous layer "
                                  f"gives {shapes[i - 1][1]}")
    cfg = Config(z_dim=shapes[0][0], channels=tuple(s[1] for s in shapes[:-1]), img_channels=shapes[-1][1])

    bn_fields = ("weight", "bias", "running_mean", "running_var")
    table = [Entry(f"main.{_conv_index(i)}.weight", shapes[i], ("main", str(_conv_index(i)), "weight"), _flip_hwio)
             for i in range(num_layers)]
    # BatchNorms are folded into scale / shift below (four tensors per param): checked here, not stored
    table += [Entry(f"main.{_bn_index(i)}.{f}", (cfg.channels[i],), None) for i in range(num_layers - 1)
              for f in bn_fields]
    optional = {f"main.{_bn_index(i)}.num_batches_tracked" for i in range(num_layers - 1)}
    params = fill(table, sd, where, what="DCGAN state_dict", ignore=optional)
    for i in range(num_layers - 1):
        p = f"main.{_bn_index(i)}"
        vals = {f: np.asarray(sd[f"{p}.{f}"], dtype=np.float64) for f in bn_fields}
        scale = vals["weight"] / np.sqrt(vals["running_var"] + BN_EPS)
        shift = vals["bias"] - vals["running_mean"] * scale
        params["main"][str(_bn_index(i))] = {"scale": jnp.asarray(scale, jnp.float32),
                                              "shift": jnp.asarray(shift, jnp.float32)}
    return cfg, params


class ConvTranspose2d(nnx.Module):
    """torch ConvTranspose2d(in, out, 4, stride, padding, bias=False); `weight` [4, 4, in, out], flipped HWIO."""

    def __init__(self, cin: int, cout: int, stride: int, padding: int) -> None:
        self.weight = param(KERNEL, KERNEL, cin, cout)
        self.stride, self.padding = stride, padding

    def __call__(self, x: jax.Array) -> jax.Array:
        """[B, H, W, in] -> [B, 2H, 2W, out] (stride 2, padding 1)."""
        return ops.conv_transpose2d(x, self.weight[...], self.stride, (self.padding,) * 2, flip_weight=False)

    def from_vector(self, z: jax.Array) -> jax.Array:
        """[B, in] as a 1x1 input (stride 1, padding 0) -> [B, 4, 4, out]: a matmul with the unflipped kernel."""
        return jnp.einsum("bi,yxio->byxo", z, self.weight[...][::-1, ::-1])


class BatchNorm2d(nnx.Module):
    """Eval-mode torch BatchNorm2d, folded at conversion into `scale`, `shift` [C]."""

    def __init__(self, channels: int) -> None:
        self.scale = param(channels)
        self.shift = param(channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x * self.scale[...] + self.shift[...]


class Generator(nnx.Module):
    """The official `main` Sequential: main.{3i} ConvTranspose2d, main.{3i+1} BatchNorm2d (then ReLU), tanh."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        chans = (cfg.z_dim, *cfg.channels, cfg.img_channels)
        layers: dict[str, nnx.Module] = {}
        for i in range(cfg.num_layers):
            layers[str(_conv_index(i))] = ConvTranspose2d(chans[i], chans[i + 1], 1 if i == 0 else 2,
                                                          0 if i == 0 else 1)
            if i < cfg.num_layers - 1:
                layers[str(_bn_index(i))] = BatchNorm2d(chans[i + 1])
        self.main = nnx.Dict(layers)

    def __call__(self, z: jax.Array) -> jax.Array:
        """z [B, z_dim] -> images [B, R, R, img_channels] in [-1, 1]."""
        z = jnp.asarray(z, jnp.float32)
        if z.ndim != 2 or z.shape[1] != self.cfg.z_dim:
            raise ConfigError(f"dcgan.Generator: z must be [B, {self.cfg.z_dim}], got {list(z.shape)}")
        return self.blocks(z, 1, self.cfg.num_layers)

    def blocks(self, x: jax.Array, first: int, last: int) -> jax.Array:
        """Blocks first..last (1-based; block i = main.{3(i-1)} conv, then BatchNorm + ReLU, or tanh after the last
        block): block 1 takes z [B, z_dim], block i > 1 the features [B, 2^i, 2^i, channels[i-2]] of block i - 1
        (the split forward of the multi-code prior, `jaxinv.mgan`)."""
        for i in range(first - 1, last):
            x = self.main["0"].from_vector(x) if i == 0 else self.main[str(_conv_index(i))](x)
            if i < self.cfg.num_layers - 1:
                x = jax.nn.relu(self.main[str(_bn_index(i))](x))
        return jnp.tanh(x) if last == self.cfg.num_layers else x


def generate(cfg: Config, params: dict, z: jax.Array) -> jax.Array:
    """z [B, z_dim] -> images [B, R, R, img_channels] in [-1, 1] (eval-mode BatchNorm)."""
    return bind(Generator, cfg, params)(z)


def _asset_dir(name: str = DEFAULT_ASSET):
    return resources.files("jaxinv") / "assets" / name


def load_default():
    """The embedded default model as a `jaxinv.models.Model` (real DCGAN face GAN, DigiFace-1M, MIT; see
    assets/dcgan_digiface64/PROVENANCE.json). Needs no files outside the installed package."""
    from jaxinv.models import Model

    f = _asset_dir() / "netG.npz"
    if not f.is_file():
        raise CheckpointError(f"{f}: embedded default DCGAN weights are missing from the installed package")
    raw = f.read_bytes()
    prov = default_provenance()
    if hashlib.sha256(raw).hexdigest() != prov["files"]["netG.npz"]["sha256"]:
        raise CheckpointError(f"{f}: sha256 does not match PROVENANCE.json (damaged package data)")
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        sd = {k: data[k] for k in data.files}
    cfg, params = from_source(sd)
    return Model("dcgan", cfg, params, {"source": f"jaxinv:assets/{DEFAULT_ASSET}/netG.npz",
                                        "sha256": prov["files"]["netG.npz"]["sha256"], "format": "npz",
                                        "origin": prov["origin"], "license": prov["license"]})


def default_provenance() -> dict:
    return json.loads((_asset_dir() / "PROVENANCE.json").read_text())
