"""The one way in: `load(path_or_name)`. Converted models on disk are an orbax-checkpoint directory of params plus
`jaxinv.json` (config, provenance); official files are read by `weights_convert` into `Source`s and built here."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxinv import download
from jaxinv.errors import CheckpointError, JaxinvError
from jaxinv.models import Model, dcgan, family_module, from_source
from weights_convert.source import read_sources

FORMAT_VERSION = 1
META_NAME = "jaxinv.json"
# Names of the embedded DCGAN face GAN (jaxinv/assets/dcgan_digiface64), as the CLI's --model accepts them.
DEFAULT_NAMES = ("default", dcgan.DEFAULT_ASSET)


def _jsonable(x: Any) -> Any:
    if isinstance(x, tuple | list):
        return [_jsonable(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.generic):
        return x.item()
    return x


def _tuplify(x: Any) -> Any:
    if isinstance(x, list):
        return tuple(_tuplify(v) for v in x)
    if isinstance(x, dict):
        return {k: _tuplify(v) for k, v in x.items()}
    return x


def config_to_json(cfg: Any) -> dict:
    return {f.name: _jsonable(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def config_from_json(cls: type, data: dict) -> Any:
    return cls(**{k: _tuplify(v) for k, v in data.items()})


def save(model: Model, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write params (orbax) and jaxinv.json; the directory is complete only once jaxinv.json exists."""
    import orbax.checkpoint as ocp

    out_dir = Path(out_dir).resolve()
    if (out_dir / META_NAME).exists() and not overwrite:
        raise CheckpointError(f"{out_dir}: already holds a converted model (use overwrite=True)")
    params_dir = out_dir / "params"
    if params_dir.exists():
        shutil.rmtree(params_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = jax.tree_util.tree_map(np.asarray, model.params)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(params_dir, params)
    meta = {"format_version": FORMAT_VERSION, "family": model.family, "config": config_to_json(model.cfg),
            "provenance": _jsonable(model.provenance)}
    tmp = out_dir / (META_NAME + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    tmp.replace(out_dir / META_NAME)
    return out_dir


def load(path_or_name: str | Path) -> Model:
    """"default" (the embedded DCGAN), a converted directory (jaxinv.json + params/), or any official checkpoint
    (converted on the fly; of an e4e / pSp checkpoint or pair directory, the encoder), as a path or a URL."""
    return load_models(path_or_name)[0]


def load_models(path_or_name: str | Path, decoder: bool = True) -> tuple[Model, ...]:
    """Every network `path_or_name` holds: (model,), or (encoder, decoder) of an e4e / pSp checkpoint or of a
    directory with `encoder/` + `decoder/`. `decoder=False` leaves the decoder out (not even converted). An
    `https://` / `http://` URL of a file is downloaded once into the cache (`jaxinv.download`)."""
    if isinstance(path_or_name, str) and path_or_name in DEFAULT_NAMES:
        return (dcgan.load_default(),)
    path_or_name = download.local_path(path_or_name)
    path = Path(path_or_name)
    if path.is_dir() and not (path / META_NAME).exists() and (path / "encoder").is_dir():
        encoder = _load_converted(path / "encoder")
        if decoder and (path / "decoder").is_dir():
            return encoder, _load_converted(path / "decoder")
        return (encoder,)
    if path.is_dir() and (path / META_NAME).exists():
        return (_load_converted(path),)
    srcs = read_sources(path)
    return tuple(from_source(src) for src in (srcs if decoder else srcs[:1]))


def _load_converted(path: Path) -> Model:
    import orbax.checkpoint as ocp

    try:
        meta = json.loads((path / META_NAME).read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path / META_NAME}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path / META_NAME}: holds a {type(meta).__name__}, expected a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: jaxinv checkpoint format {meta.get('format_version')} not supported")
    try:
        module = family_module(meta["family"])
        cfg = config_from_json(module.Config, meta["config"])
    except (JaxinvError, KeyError, TypeError, ValueError, AttributeError) as e:  # hand-edited or damaged
        raise CheckpointError(f"{path / META_NAME}: unusable model description ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]})") from None
    try:
        with ocp.StandardCheckpointer() as ckptr:
            params = ckptr.restore((path / "params").resolve())
    except Exception as e:  # orbax raises several types for damaged directories
        raise CheckpointError(f"{path / 'params'}: cannot restore params ({type(e).__name__}: {e})") from None
    params = jax.tree_util.tree_map(np.asarray, params)
    return Model(meta["family"], cfg, params, meta.get("provenance", {}))
