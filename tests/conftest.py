import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JAXINV_SHARED", ROOT.parent / "shared"))
GOLDEN = SHARED / "golden"
REALDATA = SHARED / "realdata"


def require(path: Path) -> Path:
    """Skip (with the reason) when shared reference material is absent; never pass silently."""
    if not path.exists():
        pytest.skip(f"reference material not found: {path} (set JAXINV_SHARED to the shared/ folder)")
    return path
