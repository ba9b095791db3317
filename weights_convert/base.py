"""The neutral `Source` every reader returns, and the checks all readers share.

A `Source` is the official state_dict (official names and layouts, numpy) plus the constructor information the
official code would need. `jaxinv` turns it into a model; nothing here knows how.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weights_convert.errors import CheckpointError
from weights_convert.torch_formats import sha256_file


@dataclass
class Source:
    family: str  # key of jaxinv.models.FAMILIES
    init: dict[str, Any]  # constructor information, JSON-able
    state_dict: dict[str, np.ndarray]  # official names and layouts
    provenance: dict[str, Any] = field(default_factory=dict)


def provenance(path: Path, fmt: str, **extra: Any) -> dict[str, Any]:
    """Where a Source came from: resolved path, sha256 of the file, format (+ reader-specific fields)."""
    return {"source": str(path.resolve()), "sha256": sha256_file(path), "format": fmt, **extra}


def jsonable(v: Any) -> Any:
    """Pickled option values (train.py args, e4e/pSp opts) as JSON values; anything else by its repr."""
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, np.ndarray) and v.size <= 16:
        return v.tolist()
    return repr(v)


def options(raw: Any) -> dict[str, Any]:
    """A pickled options record (a dict, the reader's argparse.Namespace stand-in, or a real Namespace) as JSON."""
    items = raw.items() if hasattr(raw, "items") else vars(raw).items()
    return {str(k): jsonable(v) for k, v in items}


def is_options(raw: Any) -> bool:
    return hasattr(raw, "items") or hasattr(raw, "__dict__")


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
