"""One entry point that reads any supported official checkpoint into a `Source`.

A `Source` is the official state_dict (official names and layouts, numpy) plus the constructor
information the official code would need; the family modules in `jaxinv.models` turn it into
Flax params. Formats are detected from the file's bytes, never from pickled code.
"""

from __future__ import annotations

import json
import numbers
import re
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxinv.errors import CheckpointError
from weights_convert.tf_pickles import from_snapshot, is_tf_snapshot

# init_kwargs.json "family" / "class_name" of the golden cases -> our family key.
_GOLDEN_FAMILIES = {
    "stylegan2-ada-pytorch": "stylegan2",
    "rosinality/stylegan2-pytorch": "rosinality",
    "huggingface/pytorch-pretrained-BigGAN": "biggan",
    "encoder4editing": "e4e",
    "pixel2style2pixel": "psp",
}


@dataclass
class Source:
    family: str  # key of jaxinv.models.FAMILIES
    init: dict[str, Any]  # constructor information, JSON-able
    state_dict: dict[str, np.ndarray]  # official names and layouts
    provenance: dict[str, Any] = field(default_factory=dict)


def family_from_init(init: dict[str, Any]) -> str | None:
    """Family key from a golden `<case>.init_kwargs.json` (or a Source.init that carries its fields)."""
    cls = init.get("class_name", "")
    if cls.startswith("training.networks_stylegan3"):
        return "stylegan3"
    if cls.startswith("training.networks_stylegan2") or cls == "training.networks.Generator":
        return "stylegan2"
    return _GOLDEN_FAMILIES.get(init.get("family", ""))


def _provenance(path: Path, fmt: str, **extra: Any) -> dict[str, Any]:
    from weights_convert.torch_formats import sha256_file

    return {"source": str(path.resolve()), "sha256": sha256_file(path), "format": fmt, **extra}


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
    return Source(family, init, sd, _provenance(weights_path, "golden_npz", init_kwargs=str(init_path)))


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
    from weights_convert.torch_formats import PersistentObj, load_nvlabs_pickle

    data = load_nvlabs_pickle(path)
    if is_tf_snapshot(data):
        family, init, sd = from_snapshot(path, data)
        return Source(family, init, sd, _provenance(path, "tf_pkl", network="Gs"))
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
    return Source(family, init, sd, _provenance(path, "nvlabs_pkl", network="G_ema"))


def source_from_torch(path: Path, fmt: str, obj: Any = None) -> Source:
    """The Source of a torch.save file (`obj`: its already-read top-level object, else read here)."""
    from weights_convert.torch_formats import load_torch

    obj = load_torch(path) if obj is None else obj
    with malformed_checkpoint(path):
        src = _source_from_torch_object(path, fmt, obj)
        check_tensors(path, src.state_dict)
    return src


def _source_from_torch_object(path: Path, fmt: str, obj: Any) -> Source:
    if isinstance(obj, dict) and "g_ema" in obj:
        from jaxinv.models import rosinality

        return rosinality.source_from_checkpoint(path, obj, _provenance(path, fmt, key="g_ema"))
    if isinstance(obj, dict) and "netG_state_dict" in obj:
        sd = {k: np.asarray(v) for k, v in obj["netG_state_dict"].items()}
        return Source("dcgan", {"class_name": "Generator"}, sd, _provenance(path, fmt, key="netG_state_dict"))
    from weights_convert.encoders import is_encoder_checkpoint, split_checkpoint

    if is_encoder_checkpoint(obj):
        return split_checkpoint(path, obj)[0]
    if isinstance(obj, dict) and any(k.startswith("generator.") for k in obj):
        from weights_convert.hf_biggan import read_biggan

        return read_biggan(path, loaded=obj)
    keys = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path}: torch file with an unknown layout (top level: {keys})")


# What interpreting a parseable but malformed file may raise before a check of ours names the problem.
_MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, ZeroDivisionError,
              RecursionError, MemoryError, EOFError, struct.error, zipfile.BadZipFile, UnicodeError)


@contextmanager
def malformed_checkpoint(path: str | Path) -> Iterator[None]:
    """Turn any failure of interpreting an untrusted file into one CheckpointError line naming it."""
    try:
        yield
    except CheckpointError:
        raise
    except _MALFORMED as e:
        detail = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{path}: malformed checkpoint ({type(e).__name__}: {detail})") from None


def check_tensors(path: str | Path, state_dict: Any, what: str = "state_dict") -> dict[str, np.ndarray]:
    """A state_dict of numeric tensors: floating point (BatchNorm step counters: integer), string names."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: {what} is a {type(state_dict).__name__}, expected a state_dict")
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{path}: {what} has a non-string tensor name {name!r}")
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: {what}[{name!r}] is a {type(value).__name__}, expected a tensor")
        if name.endswith("num_batches_tracked"):
            ok = value.dtype.kind in "iuf"
        else:  # bfloat16 / float8 come from ml_dtypes (numpy kind 'V')
            ok = value.dtype.kind == "f" or value.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")
        if not ok:
            raise CheckpointError(f"{path}: {what}[{name!r}] has dtype {value.dtype}, expected floating point")
    return state_dict


def read_source(path: str | Path) -> Source:
    """Read an official checkpoint (NVlabs .pkl, torch .pt/.bin, HF BigGAN folder, golden npz).

    Every problem with the file raises one `CheckpointError` line that names it."""
    path = Path(path)
    with malformed_checkpoint(path):
        src = _read_source(path)
        check_tensors(path, src.state_dict)
    return src


def _read_source(path: Path) -> Source:
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        if (path / "pytorch_model.bin").exists():
            from weights_convert.hf_biggan import read_biggan

            return read_biggan(path)
        raise CheckpointError(
            f"{path}: directory without a known checkpoint (expected pytorch_model.bin + config.json)")
    from weights_convert.torch_formats import detect_format

    fmt = detect_format(path)
    if fmt == "npz":
        if path.name.endswith(".weights.npz"):
            return read_golden_npz(path)
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
        if "main.0.weight" in names:
            from jaxinv.models import dcgan

            return dcgan.source_from_npz(path)
        raise CheckpointError(f"{path}: npz file of unknown layout (expected <case>.weights.npz or a DCGAN netG.npz)")
    if fmt == "nvlabs_pkl":
        return _read_nvlabs(path)
    if fmt in ("torch_zip", "torch_legacy"):
        return source_from_torch(path, fmt)
    raise CheckpointError(f"{path}: unsupported checkpoint format {fmt!r}")
