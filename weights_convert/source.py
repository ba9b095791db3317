"""One entry point that reads any supported official checkpoint into a `Source`.

A `Source` is the official state_dict (official names and layouts, numpy) plus the constructor
information the official code would need; the family modules in `jaxinv.models` turn it into
Flax params. Formats are detected from the file's bytes, never from pickled code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jaxinv.errors import CheckpointError

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


def _read_nvlabs(path: Path) -> Source:
    from weights_convert.torch_formats import load_nvlabs_pickle

    data = load_nvlabs_pickle(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: NVlabs pickle top level is {type(data).__name__}, expected a dict")
    net = data.get("G_ema")
    if net is None:
        raise CheckpointError(f"{path}: NVlabs pickle has no 'G_ema' network (keys: {sorted(data)})")
    sd = net.state_dict()
    init: dict[str, Any] = {"class_name": net.class_name, "init_args": list(net.init_args),
                            "init_kwargs": net.init_kwargs}
    family = "stylegan3" if "synthesis.input.freqs" in sd else "stylegan2"
    if family == "stylegan2":
        # Per-layer attributes as the pickle stores them: authoritative where the two repos' defaults differ.
        blocks = net.state["_modules"]["synthesis"].state["_modules"]
        first = blocks[min(blocks, key=lambda n: int(n[1:]))].state
        conv_clamp = first["_modules"]["conv1"].state.get("conv_clamp")
        init["resolved"] = {
            "conv_clamp": None if conv_clamp is None else float(conv_clamp),
            "architecture": str(first["architecture"]),
            "repo": "stylegan2-ada-pytorch" if "synthesis_kwargs" in net.init_kwargs else "stylegan3",
        }
    return Source(family, init, sd, _provenance(path, "nvlabs_pkl", network="G_ema"))


def source_from_torch(path: Path, fmt: str, obj: Any = None) -> Source:
    """The Source of a torch.save file (`obj`: its already-read top-level object, else read here)."""
    from weights_convert.torch_formats import load_torch

    obj = load_torch(path) if obj is None else obj
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


def read_source(path: str | Path) -> Source:
    """Read an official checkpoint (NVlabs .pkl, torch .pt/.bin, HF BigGAN folder, golden npz)."""
    path = Path(path)
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
