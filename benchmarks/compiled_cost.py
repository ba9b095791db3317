"""XLA's cost of the compiled generator programs: flops, bytes accessed and the optimized-HLO op histogram of the
forward, the gradient w.r.t. the params and w.r.t. ws, for the golden official checkpoints of every family.

Two source trees that give the same numbers compile to the same programs (a refactor that costs nothing at run
time, measured without timing noise):

    python benchmarks/compiled_cost.py --out after.json
    git worktree add /tmp/before <rev> && (cd /tmp/before && python benchmarks/compiled_cost.py --out before.json)
    python benchmarks/compiled_cost.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JAXINV_SHARED", ROOT.parent / "shared"))
CONTAINERS = SHARED / "golden" / "containers"
CASES = {"sg2ada_r64_skip": "sg2ada_r64_skip.pkl", "sg2ada_r32_resnet_clamp": "sg2ada_r32_resnet_clamp.pkl",
         "sg2ada_cond": "sg2ada_r32_cond10_skip.pkl", "sg3t": "sg3t_r64.pkl", "sg3r": "sg3r_r64.pkl",
         "sg3repo_sg2": "sg3repo_stylegan2_r64_skip.pkl", "rosinality": "rosinality_r64_cm1.converted.pt",
         "pggan": "pggan_r32.pkl", "stylegan1": "stylegan1_r32.pkl", "sg2tf": "stylegan2tf_r32_skip.pkl",
         "biggan": "biggan_128_ch8", "dcgan": None}


def summary(compiled) -> dict:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    ops = collections.Counter(re.findall(r"= [a-z0-9\[\],{} ]*? ([a-z\-]+)\(", compiled.as_text()))
    return {"flops": cost.get("flops"), "bytes": cost.get("bytes accessed"), "nops": sum(ops.values()),
            "ops": dict(sorted(ops.items()))}


def measure(cases: list[str]) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxinv
    from jaxinv.generators import Generator

    out = {}
    for name in cases:
        path = CASES[name]
        g = Generator.from_model(jaxinv.load("default" if path is None else str(CONTAINERS / path)))
        z = jnp.ones((2, g.z_dim), jnp.float32) * 0.3
        c = jnp.eye(g.c_dim)[:2] if g.c_dim else None
        r = {"fwd": summary(jax.jit(lambda gg, z, c: gg(z, c)).lower(g, z, c).compile())}
        loss = lambda p, z, c, g=g: jnp.sum(g.with_params(p)(z, c) ** 2)  # noqa: E731
        r["grad_params"] = summary(jax.jit(jax.grad(loss)).lower(g.params, z, c).compile())
        if g.has_w:
            ws = g.mapping(z, c)
            r["grad_ws"] = summary(jax.jit(jax.grad(lambda w, g=g: jnp.sum(g.synthesis(w) ** 2))).lower(ws).compile())
        out[name] = r
        print(name, {k: (v["flops"], v["nops"]) for k, v in r.items()}, file=sys.stderr, flush=True)
    return out


def compare(a: dict, b: dict) -> int:
    differ = 0
    for case, progs in b.items():
        for prog, s in progs.items():
            t = a.get(case, {}).get(prog)
            same = t is not None and (s["flops"], s["bytes"], s["ops"]) == (t["flops"], t["bytes"], t["ops"])
            differ += not same
            print(f"{case:24s} {prog:12s} {'same' if same else 'DIFFERENT'}")
    print(f"{sum(len(p) for p in b.values()) - differ} same, {differ} different")
    return 1 if differ else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    ap.add_argument("--out", default=None, help="write the costs as JSON")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two JSON files")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*(json.loads(Path(p).read_text()) for p in args.compare))
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        ap.error(f"unknown cases {unknown}")
    res = measure(args.cases.split(","))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
