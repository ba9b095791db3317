import os
import tempfile
from pathlib import Path

import pytest

# CLI runs inside the test process turn on JAX's persistent compilation cache; keep it in a fresh folder per test
# session instead of the user's ~/.cache/jaxinv/xla (which grew to 8 GB over local runs). Tests that check the
# cache set their own folder.
os.environ.setdefault("JAXINV_XLA_CACHE", tempfile.mkdtemp(prefix="jaxinv-test-xla-"))

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
