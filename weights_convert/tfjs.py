"""Torch-free, TF-free reader for TensorFlow.js weight files (weights manifest + binary shards).

Format: a manifest is a list of groups `{"paths": [shard files], "weights": [{"name", "shape", "dtype",
"quantization"?}]}`; a group's shards concatenated hold its tensors back to back in manifest order.
Quantised tensors (`quantization: {"dtype": "uint8"|"uint16", "scale", "min"}`) decode as
`q * scale + min` (TF.js computes this in double precision and stores float32; so do we).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from weights_convert.errors import CheckpointError

__all__ = ["read_weights_manifest", "read_json"]

_DTYPES = {"float32": np.float32, "int32": np.int32, "uint8": np.uint8, "bool": np.bool_}
_QDTYPES = {"uint8": np.uint8, "uint16": np.uint16}


def read_json(path: str | os.PathLike) -> Any:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read JSON ({e})") from None


def read_weights_manifest(manifest: list, base_dir: str | os.PathLike, src: str) -> dict[str, np.ndarray]:
    """Decode every tensor of a weights manifest; returns `name -> array` in manifest order."""
    out: dict[str, np.ndarray] = {}
    if not isinstance(manifest, list):
        raise CheckpointError(f"{src}: weights manifest is not a list of groups")
    for group in manifest:
        try:
            paths, entries = group["paths"], group["weights"]
        except (KeyError, TypeError):
            raise CheckpointError(f"{src}: weights manifest group without 'paths'/'weights'") from None
        chunks = []
        for p in paths:
            fp = os.path.join(os.fspath(base_dir), p)
            try:
                with open(fp, "rb") as f:
                    chunks.append(f.read())
            except OSError as e:
                raise CheckpointError(f"{fp}: cannot read weight shard ({e.strerror})") from None
        buf = b"".join(chunks)
        pos = 0
        for e in entries:
            name, shape = e["name"], tuple(int(s) for s in e["shape"])
            n = int(np.prod(shape)) if shape else 1
            q = e.get("quantization")
            if q is not None:
                qdt = _QDTYPES.get(q.get("dtype"))
                if qdt is None:
                    raise CheckpointError(f"{src}: {name}: unsupported quantization dtype {q.get('dtype')!r}")
                nbytes = n * np.dtype(qdt).itemsize
                raw = np.frombuffer(buf, dtype=np.dtype(qdt).newbyteorder("<"), count=n, offset=pos) \
                    if pos + nbytes <= len(buf) else None
                if raw is None:
                    raise CheckpointError(f"{src}: {name}: weight data truncated")
                vals = raw.astype(np.float64) * float(q["scale"]) + float(q["min"])
                arr = vals.astype(_DTYPES.get(e.get("dtype", "float32"), np.float32))
            else:
                dt = _DTYPES.get(e.get("dtype", "float32"))
                if dt is None:
                    raise CheckpointError(f"{src}: {name}: unsupported dtype {e.get('dtype')!r}")
                nbytes = n * np.dtype(dt).itemsize
                if pos + nbytes > len(buf):
                    raise CheckpointError(f"{src}: {name}: weight data truncated")
                arr = np.frombuffer(buf, dtype=np.dtype(dt).newbyteorder("<"), count=n, offset=pos).astype(dt)
            pos += nbytes
            out[name] = arr.reshape(shape)
        if pos != len(buf):
            raise CheckpointError(f"{src}: {len(buf) - pos} unused bytes after the tensors of group {paths}")
    return out
