"""Test driver: `python -m tests._invert_driver IMAGES OUT [--steps N --batch B --seed S --model DIR]` runs the
invert job through `jaxinv.jobs` with the embedded DCGAN (stand-in until `jaxinv invert` wires the job)."""

import argparse
import dataclasses
import json
import sys

import numpy as np
from PIL import Image

from jaxinv.distributed import Devices, enable_compilation_cache, init_distributed, process_info
from jaxinv.errors import JaxinvError


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true")
    a = ap.parse_args()
    try:
        info = init_distributed(process_info())
        enable_compilation_cache()
        from jaxinv import jobs
        from jaxinv.models.dcgan import load_default

        def load(ref):
            with Image.open(ref.path) as im:
                im.load()
                if min(im.size) < 2:
                    raise ValueError("too small")
                return np.asarray(im.convert("RGB").resize((64, 64), Image.LANCZOS), np.float32) / 127.5 - 1

        spec = jobs.invert_spec(load_default(), load, steps=a.steps, batch_size=a.batch, seed=a.seed,
                                devices=Devices.local())
        rep = jobs.run_job(spec, a.images, a.out, process=info, progress=False)
    except JaxinvError as e:
        print(f"jaxinv: error: {e}", file=sys.stderr)
        return 2
    if a.report:
        print(json.dumps({k: v for k, v in dataclasses.asdict(rep).items() if k != "completions"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
