import gc
import os
from pathlib import Path

import jax
import pytest

# CLI runs inside the test process would turn on JAX's persistent compilation cache for the whole pytest process,
# in the user's ~/.cache/jaxinv/xla (which grew to 8 GB over local runs); so it is off here. The tests of the cache
# (test_jobs, test_distributed) set their own folder.
os.environ.setdefault("JAXINV_XLA_CACHE", "off")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop every compiled program after each test module. An XLA:CPU executable holds ~4 memory maps (JIT code)
    while its jit cache entry lives; without this a full run reached 65130 maps, and XLA segfaulted compiling the
    next program (test_rosinality) at the kernel's vm.max_map_count (65530)."""
    yield
    jax.clear_caches()
    gc.collect()


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
