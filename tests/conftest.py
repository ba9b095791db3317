import os
from pathlib import Path

import pytest

# CLI runs inside the test process would turn on JAX's persistent compilation cache for the whole pytest process
# (in the user's ~/.cache/jaxinv/xla, which grew to 8 GB over local runs); with it on, a later cache write
# segfaulted in jax (compilation_cache.put_executable_and_time, test_rosinality, twice in full local runs; not
# alone). So it is off here; the tests of the cache (test_jobs, test_distributed) set their own folder.
os.environ.setdefault("JAXINV_XLA_CACHE", "off")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JAXINV_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden"
REALDATA = SHARED / "realdata"


# Two runs of the same inversion whose float32 sums run in another order (other lane group, restart split or
# CPU kind) drift apart through Adam: its step is lr x a ratio of gradient moments, and for gradient entries
# near zero a rounding difference changes that ratio by up to ~1%. With the default lr 0.1: 1e-3 on latents.
ADAM_ROUNDING_ATOL = 1e-3


def require(path: Path) -> Path:
    """Skip (with the reason) when shared reference material is absent; never pass silently."""
    if not path.exists():
        pytest.skip(f"reference material not found: {path} (set JAXINV_SHARED to the shared/ folder)")
    return path
