"""XLA:CPU convolution setting, applied when jaxinv is imported (before jax creates its backends).

jax 0.10's XLA:CPU runs convolutions through YNN fusions by default; `--xla_cpu_experimental_ynn_fusion_type=`
(empty: no YNN fusions) sends them to Eigen. Measured on our 2-core CPUs, neither wins everywhere: the 256 projector
at the engine's lane group 1 ran level at batch 16 and 1.14x faster with Eigen at batch 1 (README, interleaved);
earlier measurements had the e4e / pSp encoders 1.9x slower with Eigen at batch 1; and its backward convolutions
gave different float rounding when a batch was split over forced host devices. So jax's default stays, and
`JAXINV_XLA_CPU_CONVS=eigen` opts in: jaxinv then appends the flag to `XLA_FLAGS` unless `XLA_FLAGS` already sets
it (the user's value is kept). It is a CPU-compiler flag; GPU/TPU compilations ignore it. XLA reads `XLA_FLAGS`
once, when jax initialises its backends: if that already happened on a CPU backend, jaxinv warns once.

This module imports only the standard library (jaxinv's import stays fast); jax is not imported here.
"""

from __future__ import annotations

import os
import sys
import warnings

ENV = "JAXINV_XLA_CPU_CONVS"
FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
EIGEN_FLAG = f"--{FLAG_NAME}="


def _backends_initialized() -> bool:
    xb = sys.modules.get("jax._src.xla_bridge")
    if xb is None:  # jax not imported yet (or only partly): XLA_FLAGS not read
        return False
    probe = getattr(xb, "backends_are_initialized", None)
    return bool(probe()) if probe is not None else bool(getattr(xb, "_backends", None))


def configure_cpu_convs() -> str:
    """Apply `JAXINV_XLA_CPU_CONVS` to `os.environ["XLA_FLAGS"]`; returns what was done (for tests/logs):
    "default" (nothing asked), "eigen", "user" (XLA_FLAGS already sets the flag), "too-late"."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice not in ("eigen", "default", ""):
        from jaxinv.errors import ConfigError

        raise ConfigError(f"{ENV}={os.environ[ENV]!r}: expected 'eigen' or 'default'")
    if choice != "eigen":
        return "default"
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG_NAME in flags:
        return "user"
    if _backends_initialized():
        import jax

        if jax.default_backend() == "cpu":
            warnings.warn(
                f"jaxinv: {ENV}=eigen has no effect: jax was initialised before jaxinv was imported; set "
                f"XLA_FLAGS={EIGEN_FLAG} before starting Python (or import jaxinv before running jax code)",
                stacklevel=3)
        return "too-late"
    os.environ["XLA_FLAGS"] = f"{flags} {EIGEN_FLAG}".strip()
    return "eigen"
