"""XLA CPU settings applied when jaxinv is imported (before jax creates its backends).

Convolutions: jax 0.10's XLA:CPU routes convolutions through YNN fusions by default; with
`--xla_cpu_experimental_ynn_fusion_type=` (empty: no YNN fusions) they go to Eigen, which ran the 1024 projector
step 1.5x faster on our CPUs (`benchmarks/projector.py --xla default,eigen`). jaxinv appends that flag to
`XLA_FLAGS` unless
  - `XLA_FLAGS` already sets `xla_cpu_experimental_ynn_fusion_type` (the user's value is kept), or
  - `JAXINV_XLA_CPU_CONVS=default` (keep jax's own default), or
  - the installed jaxlib is not a version the flag was verified with (an unknown XLA flag aborts the process;
    `JAXINV_XLA_CPU_CONVS=eigen` applies it anyway).
It is a CPU-compiler flag; GPU/TPU compilations ignore it. XLA reads `XLA_FLAGS` once, when jax initialises
its backends: if that already happened before jaxinv was imported on a CPU backend, jaxinv warns once.

This module imports only the standard library (jaxinv's import stays fast); jax is not imported here.
"""

from __future__ import annotations

import os
import sys
import warnings

ENV = "JAXINV_XLA_CPU_CONVS"
FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
EIGEN_FLAG = f"--{FLAG_NAME}="
# jaxlib releases (major, minor) whose XLA is known to accept the flag.
VERIFIED_JAXLIB = ((0, 10),)


def _jaxlib_version() -> tuple[int, int] | None:
    from importlib import metadata

    try:
        parts = metadata.version("jaxlib").split(".")
        return int(parts[0]), int(parts[1])
    except (metadata.PackageNotFoundError, ValueError, IndexError):
        return None


def _backends_initialized() -> bool:
    xb = sys.modules.get("jax._src.xla_bridge")
    if xb is None:  # jax not imported yet (or only partly): XLA_FLAGS not read
        return False
    probe = getattr(xb, "backends_are_initialized", None)
    return bool(probe()) if probe is not None else bool(getattr(xb, "_backends", None))


def configure_cpu_convs() -> str:
    """Apply the CPU convolution default to `os.environ["XLA_FLAGS"]`; returns what was done (for tests/logs):
    "eigen", "opt-out", "user" (XLA_FLAGS already sets the flag), "unverified-jaxlib", "too-late"."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice == "default":
        return "opt-out"
    if choice not in ("eigen", ""):
        from jaxinv.errors import ConfigError

        raise ConfigError(f"{ENV}={os.environ[ENV]!r}: expected 'eigen' or 'default'")
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG_NAME in flags:
        return "user"
    if choice != "eigen" and _jaxlib_version() not in VERIFIED_JAXLIB:
        return "unverified-jaxlib"
    if _backends_initialized():
        import jax

        if jax.default_backend() == "cpu":
            warnings.warn(
                "jaxinv: jax was initialised before jaxinv was imported, so jaxinv could not switch XLA:CPU to "
                f"its faster Eigen convolutions; set XLA_FLAGS={EIGEN_FLAG} before starting Python (or import "
                f"jaxinv before running jax code; {ENV}=default silences this)", stacklevel=3)
        return "too-late"
    os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_FLAG}".strip()
    return "eigen"
