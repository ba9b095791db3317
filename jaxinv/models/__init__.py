"""Model families and the `Model` handle (family + static config + params)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

# family key -> module with Config, from_source(src), its NNX module tree and the engine's functions (one bind each).
FAMILIES = {
    "stylegan2": "jaxinv.models.stylegan2",
    "stylegan3": "jaxinv.models.stylegan3",
    "rosinality": "jaxinv.models.rosinality",
    "biggan": "jaxinv.models.biggan",
    "dcgan": "jaxinv.models.dcgan",
    "pggan": "jaxinv.models.pggan",
    "stylegan1": "jaxinv.models.stylegan1",
    "e4e": "jaxinv.models.encoders",
    "psp": "jaxinv.models.encoders",
}


def family_module(family: str) -> ModuleType:
    from jaxinv.errors import CheckpointError

    if family not in FAMILIES:
        raise CheckpointError(f"unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    return importlib.import_module(FAMILIES[family])


@dataclass(frozen=True)
class Model:
    family: str
    cfg: Any  # the family's frozen Config dataclass (static under jit)
    params: Any = field(compare=False)  # pytree of arrays
    provenance: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def module(self) -> ModuleType:
        return family_module(self.family)


# What a family converter may raise on a parseable checkpoint whose values make no sense (junk constructor
# kwargs, config.json values of the wrong type, ...) before one of its own checks names the problem.
_MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError, ZeroDivisionError,
              RecursionError, MemoryError)


def from_source(src) -> Model:
    """Model from a `weights_convert.source.Source`; for one read from a file, every failure is one
    CheckpointError line that names the file."""
    from jaxinv.errors import CheckpointError, JaxinvError

    module = family_module(src.family)
    where = str((getattr(src, "provenance", None) or {}).get("source") or "")
    if not where:  # built in code, not read from a file: failures are the caller's
        cfg, params = module.from_source(src)
        return Model(src.family, cfg, params, dict(src.provenance))
    try:
        cfg, params = module.from_source(src)
    except JaxinvError as e:
        if where in str(e):
            raise
        raise CheckpointError(f"{where}: {e}") from None
    except _MALFORMED as e:
        detail = " ".join(str(e).split())[:300]
        raise CheckpointError(f"{where}: checkpoint does not fit the {src.family} model ({type(e).__name__}: "
                              f"{detail})") from None
    return Model(src.family, cfg, params, dict(src.provenance))
