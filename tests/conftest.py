import os
from pathlib import Path

import pytest

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
