"""Parity tool core: read a golden case, let the family handler recompute its outputs, compare.

Criterion (golden README section 5): ``max|out - ref| <= 1e-4 * max(1, max|ref|)`` unless the handler
states another tolerance (e.g. the projector's free-running trajectory). `parity_tol` is the one place the
formula is written; tests compare through `assert_parity`, i.e. exactly as the tool does.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

# Handler modules in jaxinv/parity/, tried in order; each has detect(case) and run(case).
HANDLERS = ("projector", "stylegan2", "tf_era", "rosinality", "stylegan3", "biggan", "encoders")


# ~50-100x the float32 noise floor the golden README (section 5) measured for every case.
PARITY_RTOL = 1e-4


def parity_tol(ref: ArrayLike) -> float:
    """Tolerance of the golden criterion for ``ref``: ``1e-4 * max(1, max|ref|)`` (golden README section 5)."""
    return PARITY_RTOL * max(1.0, float(np.abs(np.asarray(ref, np.float64)).max(initial=0.0)))


class CaseError(Exception):
    """Missing files or an unsupported family: the tool exits with status 2."""


@dataclass
class Case:
    prefix: Path
    name: str
    io: dict[str, np.ndarray]
    meta: dict[str, Any]
    init: dict[str, Any]
    weights: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, suffix: str) -> Path:
        p = Path(f"{self.prefix}{suffix}")
        if not p.exists():
            raise CaseError(f"{p}: missing case file")
        return p

    def nchw(self, img) -> np.ndarray:
        """Our NHWC image -> the golden NCHW layout."""
        return np.asarray(img).transpose(0, 3, 1, 2)


@dataclass
class Check:
    name: str
    out: np.ndarray
    ref: np.ndarray
    tol: float | None = None

    def result(self) -> tuple[float, float, bool]:
        out, ref = np.asarray(self.out, np.float64), np.asarray(self.ref, np.float64)
        tol = self.tol if self.tol is not None else parity_tol(ref)
        if out.shape != ref.shape:
            return float("inf"), tol, False
        err = float(np.abs(out - ref).max(initial=0.0))
        return err, tol, bool(np.isfinite(err) and err <= tol)


def assert_parity(out: ArrayLike, ref: ArrayLike, name: str = "output", tol: float | None = None) -> float:
    """Raise AssertionError unless ``out`` passes the parity tool's own check against ``ref``; returns max|out-ref|.

    ``tol`` replaces the golden criterion where a comparison deliberately uses another tolerance.
    """
    check = Check(name, out, ref, tol)
    err, tol, ok = check.result()
    if not ok:  # raised, not asserted: the check must hold under python -O too
        if np.shape(out) != np.shape(ref):
            raise AssertionError(f"{name}: shape {np.shape(out)} != {np.shape(ref)}")
        raise AssertionError(f"{name}: max abs err {err:.3e} > tol {tol:.3e}")
    return err


def load_case(prefix: str | Path, weights: str | Path | None = None) -> Case:
    prefix = Path(str(prefix).removesuffix(".io.npz").removesuffix(".meta.json"))
    io_path, meta_path = Path(f"{prefix}.io.npz"), Path(f"{prefix}.meta.json")
    init_path = Path(f"{prefix}.init_kwargs.json")
    for p in (io_path, meta_path):
        if not p.exists():
            raise CaseError(f"{p}: missing case file")
    try:
        with np.load(io_path, allow_pickle=False) as z:
            io = {k: z[k] for k in z.files}
        meta = json.loads(meta_path.read_text())
        init = json.loads(init_path.read_text()) if init_path.exists() else {}
    except (OSError, ValueError) as e:
        raise CaseError(f"{prefix}: unreadable case files ({e})") from None
    if weights is not None and not Path(weights).exists():
        raise CaseError(f"{weights}: no such weights file")
    return Case(prefix, prefix.name, io, meta, init, Path(weights) if weights else None)


def find_handler(case: Case):
    for name in HANDLERS:
        try:
            mod = importlib.import_module(f"jaxinv.parity.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"jaxinv.parity.{name}":
                continue
            raise
        if mod.detect(case):
            return mod
    fam = case.init.get("family") or case.meta.get("family")
    raise CaseError(f"{case.prefix}: unsupported model family {fam!r} ({case.init.get('class_name')!r})")


def run_case(case: Case) -> Iterable[Check]:
    return find_handler(case).run(case)
