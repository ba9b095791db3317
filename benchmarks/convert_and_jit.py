"""Conversion time and first-jit time per golden case / official container (foundation closing note).

    python benchmarks/convert_and_jit.py [--shared ../shared]

For each file: seconds to read + convert it (`read_source` + family `from_source`, the user-facing
converter) and seconds for the first call of the jitted generator forward (compile + one run), then a second
call (steady state). Run each case in a fresh process so compile caches don't carry over.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    # label: (checkpoint relative to shared/golden, io case for the latent shapes)
    "sg2ada_r64_skip npz": ("sg2ada_r64_skip.weights.npz", "sg2ada_r64_skip"),
    "sg2ada_r64_skip pkl": ("containers/sg2ada_r64_skip.pkl", "sg2ada_r64_skip"),
    "sg2ada_r32_cond10_skip pkl": ("containers/sg2ada_r32_cond10_skip.pkl", "sg2ada_r32_cond10_skip"),
    "sg2ada_r32_resnet_clamp pkl": ("containers/sg2ada_r32_resnet_clamp.pkl", "sg2ada_r32_resnet_clamp"),
    "sg3repo_stylegan2_r64_skip pkl": ("containers/sg3repo_stylegan2_r64_skip.pkl", "sg2ada_r64_skip"),
    "rosinality_r64_cm1 npz": ("rosinality_r64_cm1.weights.npz", "rosinality_r64_cm1"),
    "rosinality_r64_cm1 train.pt": ("containers/rosinality_r64_cm1.train.pt", "rosinality_r64_cm1"),
    "rosinality_r64_cm1 converted.pt": ("containers/rosinality_r64_cm1.converted.pt", "rosinality_r64_cm1"),
}


def _one(golden: Path, rel: str, case: str) -> dict:
    import jax
    import numpy as np

    from jaxinv.models import from_source
    from weights_convert.source import read_source

    t0 = time.perf_counter()
    model = from_source(read_source(golden / rel))
    jax.block_until_ready(jax.tree_util.tree_leaves(model.params))
    t_convert = time.perf_counter() - t0
    io = np.load(golden / f"{case}.io.npz")
    latent = io["wplus"]
    fwd = jax.jit(lambda p, w: model.module.synthesis(model.cfg, p, w))
    t0 = time.perf_counter()
    jax.block_until_ready(fwd(model.params, latent))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(fwd(model.params, latent))
    t_second = time.perf_counter() - t0
    return {"convert_s": t_convert, "first_jit_call_s": t_first, "steady_call_s": t_second,
            "batch": int(latent.shape[0])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[1].parent / "shared"))
    ap.add_argument("--_one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    golden = Path(args.shared) / "golden"
    if args._one:
        print(json.dumps(_one(golden, *args._one)))
        return
    print(f"{'case':34s} {'convert s':>10s} {'1st jit call s':>15s} {'steady s':>9s}")
    for label, (rel, case) in CASES.items():
        out = subprocess.run([sys.executable, __file__, "--shared", args.shared, "--_one", rel, case],
                             capture_output=True, text=True)
        if out.returncode:
            print(f"{label:34s} FAILED: {out.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{label:34s} {r['convert_s']:10.2f} {r['first_jit_call_s']:15.2f} {r['steady_call_s']:9.3f}")


if __name__ == "__main__":
    main()
