"""Procedural (hash-based) weight generator of the golden e4e / pSp cases.

Full-size encoder weights are too large to ship, so the goldens define them by a counter-based hash
(golden README section 6). Everything here is numpy with wrapping uint32 arithmetic, hence bit-exact
on every platform.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from jaxinv.errors import ConfigError

__all__ = ["lowbias32", "proc_uniform", "proc_tensor", "procedural_state_dict", "verify_recipe"]


def lowbias32(x: np.ndarray) -> np.ndarray:
    """The `lowbias32` integer hash (uint32 in, uint32 out; products wrap mod 2**32)."""
    x = np.asarray(x, dtype=np.uint32)
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def proc_uniform(key: str, n: int) -> np.ndarray:
    """`n` float64 values in [-1, 1): hash of the element index mixed with crc32(key)."""
    k = np.uint32(zlib.crc32(key.encode("utf-8")) & 0xFFFFFFFF)
    h = lowbias32(lowbias32(np.arange(n, dtype=np.uint32)) ^ k)
    # Top 24 bits -> a float in [0, 1) exactly representable in float32.
    return 2.0 * ((h >> np.uint32(8)).astype(np.float64) * 2.0**-24) - 1.0


def proc_tensor(seed: str, name: str, shape: Sequence[int], scale: float, offset: float) -> np.ndarray:
    """float32 tensor `offset + scale * U[-1, 1)` filled in C order; rounded to float32 once."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape)) if len(shape) else 1
    return (offset + scale * proc_uniform(f"{seed}:{name}", n)).astype(np.float32).reshape(shape)


def _entry_tensor(seed: str, entry: dict) -> np.ndarray:
    shape = tuple(entry["shape"])
    dtype = np.dtype(entry.get("dtype", "float32"))
    if "const" in entry:
        return np.full(shape, entry["const"], dtype=dtype)
    t = proc_tensor(seed, entry["name"], shape, entry["scale"], entry["offset"])
    return t.astype(dtype, copy=False)


def procedural_state_dict(recipe: dict) -> dict[str, np.ndarray]:
    """Every tensor of a `meta["procedural_weights"]` recipe (official names, official layouts).

    `latent_avg` is included under its own name when the recipe defines it.
    """
    try:
        seed = recipe["seed_string"]
        entries = recipe["tensors"]
    except (KeyError, TypeError) as e:
        raise ConfigError(f"procedural_weights recipe: missing field {e}") from None
    out: dict[str, np.ndarray] = {}
    for entry in entries:
        out[entry["name"]] = _entry_tensor(seed, entry)
    if recipe.get("latent_avg") is not None:
        la = recipe["latent_avg"]
        out[la.get("name", "latent_avg")] = _entry_tensor(seed, la)
    return out


def verify_recipe(recipe: dict, state_dict: dict[str, np.ndarray], rtol: float = 1e-6) -> list[str]:
    """Names whose tensor disagrees with the recipe's `check_sum` / `check_first` (empty list = all good)."""
    bad = []
    for entry in recipe["tensors"]:
        if "check_sum" not in entry:
            continue
        t = state_dict[entry["name"]]
        s = float(t.astype(np.float64).sum())
        first = t.reshape(-1)[: len(entry["check_first"])].astype(np.float64)
        ok_sum = abs(s - entry["check_sum"]) <= rtol * max(1.0, abs(entry["check_sum"]), float(t.size))
        if not ok_sum or not np.array_equal(first, np.asarray(entry["check_first"], np.float64)):
            bad.append(entry["name"])
    return bad
