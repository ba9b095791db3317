"""Transparent huge pages for XLA:CPU's buffers (glibc's ``glibc.malloc.hugetlb=1`` tunable).

XLA:CPU allocates each call's temporaries afresh; glibc serves large blocks with ``mmap``, so every call
page-faults its whole working set in again, 4 KiB at a time (the e4e / pSp encoders at batch 8: ~210k faults,
~0.45 s of kernel time per call on our 2-core CPUs). With the tunable, glibc asks the kernel for transparent
huge pages on those mappings (``madvise``; effective when ``/sys/kernel/mm/transparent_hugepage/enabled`` is
``always`` or ``madvise``): the faults drop ~30x and the encoder call is 7-9% faster at the same peak RSS.

glibc reads tunables once, at process start, so the ``jaxinv`` command re-executes itself with the tunable
added to ``GLIBC_TUNABLES`` (before importing jax); ``JAXINV_HUGEPAGES=0`` turns that off. Python API users
set ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` in the environment that starts Python.

Standard library only (used before jax is imported).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

ENV = "JAXINV_HUGEPAGES"
TUNABLE = "glibc.malloc.hugetlb"
THP_MODES = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()  # e.g. "glibc 2.36"
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (ValueError, OSError, AttributeError):  # not glibc, or no confstr (musl, macOS, Windows)
        return None


def available() -> bool:
    """glibc >= 2.35 (the tunable) and a kernel whose THP mode is ``always`` or ``madvise``."""
    if not sys.platform.startswith("linux") or (_glibc_version() or (0, 0)) < (2, 35):
        return False
    try:
        with open(THP_MODES) as f:
            mode = f.read()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


def env_with_hugepages(env: Mapping[str, str]) -> dict[str, str] | None:
    """``env`` plus the tunable, or None when nothing is to be done: opted out (``JAXINV_HUGEPAGES=0``),
    ``GLIBC_TUNABLES`` already names the tunable (the user's value is kept), or the host cannot use it."""
    choice = env.get(ENV, "1").strip().lower()
    if choice not in ("0", "1", "off", "on", ""):
        from jaxinv.errors import ConfigError

        raise ConfigError(f"{ENV}={env[ENV]!r}: expected 1 (default) or 0")
    tunables = env.get("GLIBC_TUNABLES", "")
    if choice in ("0", "off") or f"{TUNABLE}=" in tunables or not available():
        return None
    return {**env, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}=1" if tunables else f"{TUNABLE}=1"}


def reexec_with_hugepages(argv: Sequence[str]) -> None:
    """Replace this process by ``python -m jaxinv <argv>`` with the tunable set; returns only when nothing is
    to be done. Call before jax is imported (the first process then never allocates XLA buffers)."""
    env = env_with_hugepages(os.environ)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "jaxinv", *argv], env)
