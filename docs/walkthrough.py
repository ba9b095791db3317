"""Redraws docs/walkthrough_align_invert_paste.png: the README walkthrough's second command on the astronaut photo
(scikit-image's, NASA, public domain; `../shared/realdata/images/misc_photos/skimage_astronaut.png`), then
photo | aligned target | reconstruction | pasted back, 256 px each (nearest-neighbour upscaling), 4 px apart.

    python docs/walkthrough.py [--photo PATH] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinv.cli import main as jaxinv_main

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT.parent / "shared" / "realdata" / "images" / "misc_photos" / "skimage_astronaut.png"
PANEL, GAP = 256, 4


def panel(path: Path, resample: int) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB").resize((PANEL, PANEL), resample))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", default=str(PHOTO))
    ap.add_argument("--work", help="keep the inversion here (default: a temporary folder)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    photo = work / "astronaut.png"
    shutil.copyfile(args.photo, photo)
    rc = jaxinv_main(["invert", "--images", str(photo), "--out", str(work / "inv"), "--align", "--paste-back",
                      "--optimizer", "lbfgs", "--steps", "200", "--restarts", "4"])
    if rc:
        return rc
    d = work / "inv" / "astronaut"
    panels = [panel(photo, Image.LANCZOS), panel(d / "target.png", Image.NEAREST), panel(d / "proj.png", Image.NEAREST),
              panel(d / "pasted.png", Image.LANCZOS)]
    sheet = np.full((PANEL, 4 * PANEL + 3 * GAP, 3), 255, np.uint8)
    for i, p in enumerate(panels):
        sheet[:, i * (PANEL + GAP):i * (PANEL + GAP) + PANEL] = p
    out = ROOT / "docs" / "walkthrough_align_invert_paste.png"
    Image.fromarray(sheet).save(out)
    print(f"wrote {out} (inversion in {work})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
