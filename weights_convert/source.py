"""One entry point that reads any supported official checkpoint into `Source`s (`weights_convert.base`).

Formats are detected from the file's bytes, never from pickled code. `jaxinv.load` is the way in for users; this
module imports nothing from jaxinv.
"""

from __future__ import annotations

import json
import numbers
import re
from pathlib import Path
from typing import Any

import numpy as np

from weights_convert.base import Source, check_tensors, malformed_checkpoint, provenance
from weights_convert.encoders import is_encoder_checkpoint, split_checkpoint
from weights_convert.errors import CheckpointError
from weights_convert.hf_biggan import read_biggan
from weights_convert.rosinality import source_from_checkpoint as _read_rosinality
from weights_convert.tf_pickles import from_snapshot, is_tf_snapshot
from weights_convert.torch_formats import PersistentObj, detect_format, load_nvlabs_pickle, load_torch

__all__ = ["Source", "check_tensors", "family_from_init", "malformed_checkpoint", "read_golden_npz", "read_source",
           "read_sources", "source_from_torch"]

# init_kwargs.json "family" / "class_name" of the golden cases -> our family key.
_GOLDEN_FAMILIES = {
    "stylegan2-ada-pytorch": "stylegan2",
    "rosinality/stylegan2-pytorch": "rosinality",
    "huggingface/pytorch-pretrained-BigGAN": "biggan",
    "encoder4editing": "e4e",
    "pixel2style2pixel": "psp",
}


def family_from_init(init: dict[str, Any]) -> str | None:
    """Family key from a golden `<case>.init_kwargs.json` (or a Source.init that carries its fields)."""
    cls = init.get("class_name", "")
    if cls.startswith("training.networks_stylegan3"):
        return "stylegan3"
    if cls.startswith("training.networks_stylegan2") or cls == "training.networks.Generator":
        return "stylegan2"
    return _GOLDEN_FAMILIES.get(init.get("family", ""))


def read_golden_npz(weights_path: str | Path, init_path: str | Path | None = None) -> Source:
    """`<case>.weights.npz` + `<case>.init_kwargs.json` (the golden format)."""
    weights_path = Path(weights_path)
    if init_path is None:
        stem = weights_path.name[: -len(".weights.npz")] if weights_path.name.endswith(".weights.npz") else None
        init_path = weights_path.with_name(f"{stem}.init_kwargs.json") if stem else None
    if init_path is None or not Path(init_path).exists():
        raise CheckpointError(f"{weights_path}: no <case>.init_kwargs.json beside it (needed to build the model)")
    try:
        init = json.loads(Path(init_path).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{init_path}: cannot read constructor JSON ({e})") from None
    family = family_from_init(init)
    if family is None:
        raise CheckpointError(
            f"{init_path}: unsupported model family {init.get('family')!r} / {init.get('class_name')!r}")
    try:
        with np.load(weights_path, allow_pickle=False) as z:
            sd = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / ValueError on corrupt data
        raise CheckpointError(f"{weights_path}: not a readable npz file ({type(e).__name__}: {e})") from None
    return Source(family, init, sd, provenance(weights_path, "golden_npz", init_kwargs=str(init_path)))


def _submodule(path: Path, net: Any, dotted: str) -> Any:
    """`G_ema.<dotted>` as a persistence record, or one line saying which module is missing."""
    obj = net
    for part in dotted.split("."):
        child = obj.children().get(part)
        if child is None:
            names = sorted(map(str, obj.children()))
            raise CheckpointError(f"{path}: G_ema has no '{dotted}' module ({obj.class_name} record holds "
                                  f"{'modules ' + str(names) if names else 'no modules: empty _modules'})")
        obj = child
    return obj


def _sg2_resolved(path: Path, net: Any) -> dict[str, Any]:
    """Per-layer attributes as the pickle stores them: authoritative where the two repos' defaults differ."""
    synthesis = _submodule(path, net, "synthesis")
    blocks = {n: m for n, m in synthesis.children().items() if re.fullmatch(r"b[0-9]+", str(n))}
    if not blocks:
        raise CheckpointError(f"{path}: G_ema.synthesis has no blocks b4, b8, ... "
                              f"(modules: {sorted(map(str, synthesis.children()))})")
    name = min(blocks, key=lambda n: int(n[1:]))
    first = blocks[name]
    conv_clamp = _submodule(path, net, f"synthesis.{name}.conv1").state.get("conv_clamp")
    architecture = first.state.get("architecture")
    if conv_clamp is not None and (not isinstance(conv_clamp, numbers.Real) or isinstance(conv_clamp, bool)):
        raise CheckpointError(f"{path}: G_ema.synthesis.{name}.conv1.conv_clamp is {conv_clamp!r}, expected a number")
    if not isinstance(architecture, str):
        raise CheckpointError(f"{path}: G_ema.synthesis.{name}.architecture is {architecture!r}, expected a string")
    return {"conv_clamp": None if conv_clamp is None else float(conv_clamp), "architecture": architecture,
            "repo": "stylegan2-ada-pytorch" if "synthesis_kwargs" in net.init_kwargs else "stylegan3"}


def _read_nvlabs(path: Path) -> Source:
    data = load_nvlabs_pickle(path)
    if is_tf_snapshot(data):
        family, init, sd = from_snapshot(path, data)
        return Source(family, init, sd, provenance(path, "tf_pkl", network="Gs"))
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: NVlabs pickle top level is {type(data).__name__}, expected a dict")
    net = data.get("G_ema")
    if net is None:
        raise CheckpointError(f"{path}: NVlabs pickle has no 'G_ema' network (keys: {sorted(map(str, data))})")
    if not isinstance(net, PersistentObj):
        raise CheckpointError(f"{path}: 'G_ema' is a {type(net).__name__}, expected a network (persistence record)")
    synthesis = _submodule(path, net, "synthesis")
    _submodule(path, net, "mapping")
    sd = check_tensors(path, net.state_dict(), "G_ema")
    init: dict[str, Any] = {"class_name": net.class_name, "init_args": list(net.init_args),
                            "init_kwargs": net.init_kwargs}
    # stylegan3's synthesis holds `input` (SynthesisInput) and layers L<i>_<size>_<channels>; stylegan2's blocks b<res>
    sg3 = any(n == "input" or re.fullmatch(r"L[0-9]+_[0-9]+_[0-9]+", str(n)) for n in synthesis.children())
    family = "stylegan3" if "synthesis.input.freqs" in sd or sg3 else "stylegan2"
    if family == "stylegan2":
        init["resolved"] = _sg2_resolved(path, net)
    return Source(family, init, sd, provenance(path, "nvlabs_pkl", network="G_ema"))


def source_from_torch(path: Path, fmt: str, obj: Any = None) -> Source:
    """The Source of a torch.save file (`obj`: its already-read top-level object, else read here)."""
    return _sources_from_torch(path, fmt, obj)[0]


def _sources_from_torch(path: Path, fmt: str, obj: Any = None) -> tuple[Source, ...]:
    obj = load_torch(path) if obj is None else obj
    with malformed_checkpoint(path):
        srcs = _sources_from_torch_object(path, fmt, obj)
        for src in srcs:
            check_tensors(path, src.state_dict)
    return srcs


def _sources_from_torch_object(path: Path, fmt: str, obj: Any) -> tuple[Source, ...]:
    if isinstance(obj, dict) and "g_ema" in obj:
        return (_read_rosinality(path, obj, provenance(path, fmt, key="g_ema")),)
    if isinstance(obj, dict) and "netG_state_dict" in obj:
        sd = {k: np.asarray(v) for k, v in obj["netG_state_dict"].items()}
        return (Source("dcgan", {"class_name": "Generator"}, sd, provenance(path, fmt, key="netG_state_dict")),)
    if is_encoder_checkpoint(obj):
        encoder, decoder = split_checkpoint(path, obj)
        return (encoder, decoder) if decoder.state_dict else (encoder,)  # an encoder saved without its decoder
    if isinstance(obj, dict) and any(k.startswith("generator.") for k in obj):
        return (read_biggan(path, loaded=obj),)
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path}: torch file with an unknown layout (top level: {keys})")


def _read_dcgan_npz(path: Path) -> Source:
    """An npz of the official DCGAN state_dict (e.g. the realdata netG.npz)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            sd = {k: data[k] for k in data.files}
    except Exception as e:  # zipfile / ValueError on corrupt data
        raise CheckpointError(f"{path}: not a readable npz file ({type(e).__name__}: {e})") from None
    return Source("dcgan", {"class_name": "Generator"}, sd, provenance(path, "npz"))


def read_source(path: str | Path) -> Source:
    """Read an official checkpoint (NVlabs .pkl, torch .pt/.bin, HF BigGAN folder, golden npz); of an e4e / pSp
    checkpoint, the encoder.

    Every problem with the file raises one `CheckpointError` line that names it."""
    return read_sources(path)[0]


def read_sources(path: str | Path) -> tuple[Source, ...]:
    """Every network of an official checkpoint, read once: one Source, or (encoder, decoder) of an e4e / pSp
    checkpoint that holds its decoder."""
    path = Path(path)
    with malformed_checkpoint(path):
        srcs = _read_sources(path)
        for src in srcs:
            check_tensors(path, src.state_dict)
    return srcs


def _read_sources(path: Path) -> tuple[Source, ...]:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "pytorch_model.bin").exists():
            return (read_biggan(path),)
        raise CheckpointError(
            f"{path}: directory without a known checkpoint (expected pytorch_model.bin + config.json)")
    fmt = detect_format(path)
    if fmt == "npz":
        if path.name.endswith(".weights.npz"):
            return (read_golden_npz(path),)
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
        if "main.0.weight" in names:
            return (_read_dcgan_npz(path),)
        raise CheckpointError(f"{path}: npz file of unknown layout (expected <case>.weights.npz or a DCGAN netG.npz)")
    if fmt == "nvlabs_pkl":
        return (_read_nvlabs(path),)
    if fmt in ("torch_zip", "torch_legacy"):
        return _sources_from_torch(path, fmt)
    raise CheckpointError(f"{path}: unsupported checkpoint format {fmt!r}")
