"""Test driver: `python -m tests._invert_driver IMAGES... --out DIR [--steps N --batch B --seed S --report]` runs
the invert job through `jaxinv.jobs` (the same glue as `jaxinv invert`) with the embedded DCGAN."""

import argparse
import dataclasses
import json
import sys

from jaxinv import jobs
from jaxinv.errors import JaxinvError
from jaxinv.images import Preprocess, load_image


def _load(ref):
    return load_image(ref.path, Preprocess(64))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--report", action="store_true")
    jobs.add_job_arguments(ap)
    a = ap.parse_args()
    try:
        info = jobs.start_job(a)
        from jaxinv.models.dcgan import load_default

        rep = jobs.run_invert_job(load_default, a.images, a.out, load=_load, args=a, process=info,
                                  batch_size=a.batch, steps=a.steps, seed=a.seed)
    except JaxinvError as e:
        print(f"jaxinv: error: {e}", file=sys.stderr)
        return 2
    if a.report:
        print(json.dumps({k: v for k, v in dataclasses.asdict(rep).items() if k != "completions"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
