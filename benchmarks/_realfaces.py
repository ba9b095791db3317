"""Real faces through the embedded DCGAN, for the benchmarks that invert them (`realdata_dcgan.py`,
`restoration.py`): the shared data folder and one loader, so both read the same faces the same way."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxinv import images  # noqa: E402
from jaxinv.models import Model, dcgan  # noqa: E402

SHARED = ROOT.parent / "shared" / "realdata"
FACES = SHARED / "images" / "faces_aligned"


def dcgan_faces(folder: str | Path, every: int, n: int) -> tuple[Model, np.ndarray, list[Path]]:
    """The embedded DCGAN and every `every`-th image of `folder` (sorted), at most `n`, cropped as the CLI
    crops for it (dcgan-faces): (model, images [N, H, W, 3] in [-1, 1], their paths). Unreadable files are
    reported on stderr and skipped."""
    model = dcgan.load_default()
    files = images.list_images(folder)[::every][:n]
    x, names, errors = images.load_images(files, model)
    for _, msg in errors:
        print(f"skipped {msg}", file=sys.stderr)
    return model, x, names
