"""Reader for HF pytorch-pretrained-BigGAN checkpoints (torch-free).

Accepted inputs (`read_biggan(path)`):
  * a folder with `pytorch_model.bin` + `config.json` (what `BigGAN.from_pretrained(folder)` reads),
  * a `pytorch_model.bin` (torch zip or legacy pre-1.6 stream) with `config.json` beside it,
  * a golden `<case>.weights.npz` with `<case>.config.json` (or `<case>.init_kwargs.json`) beside it.
The config can also be given explicitly (`config=` dict or JSON path).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from weights_convert.base import Source
from weights_convert.errors import CheckpointError
from weights_convert.torch_formats import load_torch, sha256_file

WEIGHTS_NAME = "pytorch_model.bin"
CONFIG_NAME = "config.json"
# Keys every BigGANConfig JSON has; used to recognise one.
_CONFIG_MARKERS = ("channel_width", "layers", "n_stats", "attention_layer_position")
_STATE_MARKER = "generator.gen_z.weight_orig"


def _is_biggan_config(d: Any) -> bool:
    return isinstance(d, dict) and all(k in d for k in _CONFIG_MARKERS)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read JSON ({e})") from None


def _config_dict(d: Any, path: Path) -> dict:
    """A BigGANConfig dict from config.json or a golden init_kwargs.json ({'config': {...}})."""
    if isinstance(d, dict) and not _is_biggan_config(d) and _is_biggan_config(d.get("config")):
        d = d["config"]
    if not _is_biggan_config(d):
        raise CheckpointError(f"{path}: not a BigGAN config (needs keys {list(_CONFIG_MARKERS)})")
    return dict(d)


def _config_candidates(weights: Path) -> list[Path]:
    """Where the config of a weights file may sit, in order of preference."""
    out = []
    if weights.name.endswith(".weights.npz"):
        stem = weights.name[: -len(".weights.npz")]
        out += [weights.with_name(stem + ".config.json"), weights.with_name(stem + ".init_kwargs.json")]
    out.append(weights.with_name(CONFIG_NAME))
    return out


def _resolve(path: Path) -> tuple[Path, Path | None]:
    """(weights file, config file or None)."""
    if path.is_dir():
        weights = path / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{path}: folder has no {WEIGHTS_NAME}")
        config = path / CONFIG_NAME
        return weights, config if config.is_file() else None
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file or folder")
    return path, next((c for c in _config_candidates(path) if c.is_file()), None)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: cannot read npz ({e})") from None


def _load_state_dict(path: Path, loaded: Any = None) -> tuple[dict[str, np.ndarray], str]:
    if path.suffix == ".npz" and loaded is None:
        return _load_npz(path), "golden_npz"
    fmt = "torch_zip" if zipfile.is_zipfile(path) else "torch_legacy"
    obj = load_torch(path) if loaded is None else loaded
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: expected a BigGAN state_dict (name -> tensor), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, np.ndarray)]
    if bad:
        raise CheckpointError(f"{path}: not a plain state_dict; entries that are not tensors: {bad[:5]}")
    return dict(obj), fmt


def read_biggan(path: str | Path, config: dict | str | Path | None = None, loaded: Any = None) -> Source:
    """Read a HF BigGAN checkpoint (folder, .bin or golden .npz) into a `Source(family='biggan')`.

    `config`: the BigGANConfig dict or a JSON path; default: the config.json found next to the weights.
    `loaded`: what `load_torch(path)` already returned for a torch file (skips reading it twice).
    """
    path = Path(path)
    weights, config_file = _resolve(path)
    if config is None:
        if config_file is None:
            raise CheckpointError(f"{weights}: no BigGAN config found (looked for "
                                  f"{', '.join(c.name for c in _config_candidates(weights))} beside it)")
        init = _config_dict(_read_json(config_file), config_file)
    elif isinstance(config, dict):
        init, config_file = _config_dict(config, weights), None
    else:
        config_file = Path(config)
        init = _config_dict(_read_json(config_file), config_file)
    state_dict, fmt = _load_state_dict(weights, loaded)
    if _STATE_MARKER not in state_dict:
        raise CheckpointError(f"{weights}: not a BigGAN state_dict (no '{_STATE_MARKER}')")
    provenance = {"source": str(weights.resolve()), "sha256": sha256_file(weights), "format": fmt,
                  "reader": "weights_convert.hf_biggan",
                  "config": str(config_file.resolve()) if config_file is not None else "given"}
    return Source(family="biggan", init=init, state_dict=state_dict, provenance=provenance)


def looks_like_biggan(path: str | Path) -> bool:
    """Cheap format check (reads at most a JSON file or an npz directory, never tensor data)."""
    path = Path(path)
    try:
        if path.is_dir():
            return (path / WEIGHTS_NAME).is_file() and _is_biggan_config(_read_json(path / CONFIG_NAME))
        if not path.is_file():
            return False
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                return _STATE_MARKER in f.files
        for c in _config_candidates(path):
            if c.is_file():
                d = _read_json(c)
                return _is_biggan_config(d) or (isinstance(d, dict) and _is_biggan_config(d.get("config")))
    except (CheckpointError, OSError, ValueError, zipfile.BadZipFile):
        return False
    return False
