"""The one converter helper: an official state_dict -> our params tree, by a table of `Entry`s.

Every family and loss network describes its official names once (`Entry`: official name, official shape, where
the tensor goes in our params, how its layout changes) and calls `fill`, which reports what is missing, what is
extra and what has the wrong shape, by name, in one `CheckpointError` line.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxinv.errors import CheckpointError


# Layout fixes shared by the families. Pure index shuffles (they also map shapes under jax.eval_shape); `fill` makes
# the result float32 and contiguous.
def as_is(a: Any) -> Any:
    return a


def linear_t(a: Any) -> Any:
    """torch Linear weight [out, in] -> [in, out]."""
    return a.T


def conv_hwio(a: Any) -> Any:
    """torch conv weight OIHW -> HWIO."""
    return a.transpose(2, 3, 1, 0)


@dataclass(frozen=True)
class Entry:
    name: str  # official state_dict name
    shape: tuple[int, ...]  # official shape
    path: tuple[str, ...] | None  # where it goes in params; None: checked here, used by the caller (e.g. filters)
    fix: Callable[[Any], Any] = as_is  # official layout -> ours


def short(names: Sequence[str], n: int = 8) -> str:
    return f"{list(names[:n])}{f'... ({len(names)})' if len(names) > n else ''}"


def fill(table: Iterable[Entry], state: Mapping[str, Any], where: str, *, what: str = "state_dict",
         ignore: Collection[str] | Callable[[str], bool] = ()) -> dict:
    """Params (nested dicts along each `Entry.path`, float32 numpy leaves) from `state`. `ignore`: names `state`
    may hold that the table does not (a set, or a predicate). Missing / unexpected names and shape mismatches are
    one error naming them."""
    table = list(table)
    known = {e.name for e in table}
    ignored = ignore if callable(ignore) else set(ignore).__contains__
    missing = [e.name for e in table if e.name not in state]
    extra = sorted(k for k in state if k not in known and not ignored(k))
    if missing or extra:
        raise CheckpointError(f"{where}: {what} does not match the config: missing {short(missing)}, "
                              f"unexpected {short(extra)}")
    params: dict = {}
    for e in table:
        value = np.asarray(state[e.name])
        if tuple(value.shape) != tuple(e.shape):
            raise CheckpointError(f"{where}: {e.name} has shape {tuple(value.shape)}, expected {tuple(e.shape)}")
        if e.path is None:
            continue
        node = params
        for key in e.path[:-1]:
            node = node.setdefault(key, {})
        node[e.path[-1]] = np.array(e.fix(value), dtype=np.float32, order="C")  # (ascontiguousarray makes 0-d 1-d)
    return params
