"""Model families and the `Model` handle (family + static config + params)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

# family key -> module with Config, from_source(src) and pure forward functions.
FAMILIES = {
    "stylegan2": "jaxinv.models.stylegan2",
    "stylegan3": "jaxinv.models.stylegan3",
    "rosinality": "jaxinv.models.rosinality",
    "biggan": "jaxinv.models.biggan",
    "dcgan": "jaxinv.models.dcgan",
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


def from_source(src) -> Model:
    cfg, params = family_module(src.family).from_source(src)
    return Model(src.family, cfg, params, dict(src.provenance))
