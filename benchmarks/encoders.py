"""Encoder forward throughput on CPU: jaxinv (JAX) vs the official pSp / e4e PyTorch encoder, same run.

Both sides build the full-size IR-SE50 encoder (pSp ``GradualStyleEncoder`` or e4e ``Encoder4Editing``,
18 styles, 256x256 inputs) with the same procedural weights (golden README section 6), check that their
outputs agree (first round in which both ran), then time ``encoder(x)`` at each batch size (``--repeats``
calls after a warm-up; a piece's images/s is batch / median call). Each side runs in its own subprocess (a
*piece*: all batch sizes), so the peak memory printed (``resource.getrusage`` maxrss, loading included) is
that side's alone.

Protocol (``benchmarks/_protocol.py``, as ``projector.py``): the sides are interleaved in ``--rounds`` rounds
(default 3: torch, jax, torch, jax, ...). Over each piece's subprocess the driver records /proc/loadavg
before and after, its own process tree's CPU time and the busy + steal time of its CPUs from /proc/stat;
other processes' CPU = busy - own + steal, averaged over the piece's wall time. A piece above
``--max-foreign-cpu`` cores (default 0.10) is DISTURBED and repeated at once (up to ``--max-retries``,
default 2). Printed per batch: each side's images/s and the jax/torch ratio of the same round, as median
[min..max] over the clean rounds; none clean: "not measured: machine busy" with the interference figures,
unless ``--allow-disturbed`` (disturbed rounds then count, flagged DISTURBED). The header and ``--json``
record the CPU model, ISA flags, an XLA_FLAGS ISA cap (``--xla_cpu_max_isa=``) if set, and the jax/torch
versions. Both workers get
the same ``GLIBC_TUNABLES``: by default glibc's transparent huge pages, as the ``jaxinv`` command sets them
(``jaxinv/_hugepages.py``); ``--hugepages off`` times both sides without them.

The official code is not part of this repository. Get it with::

    git clone https://github.com/eladrich/pixel2style2pixel /tmp/psp && git -C /tmp/psp checkout 5cfff38
    # e4e: git clone https://github.com/omertov/encoder4editing /tmp/e4e && git -C /tmp/e4e checkout 99ea505

and run (needs ``pip install torch==2.13.0``, CPU build)::

    python benchmarks/encoders.py --official-src /tmp/psp [--encoder psp] [--batches 1,8,32] [--repeats 3] \
        [--rounds 3] [--json encoders.json]

The official ``models/stylegan2/op`` package JIT-compiles CUDA kernels at import through
``torch.utils.cpp_extension.load``; the torch worker replaces that function with a stub returning None
(golden README section 8), which the encoders never need.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import _protocol as protocol  # benchmarks/_protocol.py (this script's folder is on sys.path)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = {"psp": "psp_ffhq1024", "e4e": "e4e_ffhq1024"}
CLASSES = {"psp": "GradualStyleEncoder", "e4e": "Encoder4Editing"}


def _inputs(batch: int) -> np.ndarray:
    """Deterministic images in (-1, 1), NCHW."""
    rng = np.random.default_rng(batch)
    return np.tanh(rng.normal(size=(batch, 3, 256, 256))).astype(np.float32)


def _maxrss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def _time(fn, x, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t)
    return times


def _to_device(tree: dict) -> None:
    """Replace numpy leaves by device arrays one at a time (peak = params + one leaf, not two copies)."""
    import jax

    for k, v in tree.items():
        if isinstance(v, dict):
            _to_device(v)
        else:
            tree[k] = jax.device_put(v)
            del v


def _worker_jax(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT))
    import jax

    from jaxinv.models import encoders as enc
    from jaxinv.procedural import procedural_state_dict
    from weights_convert.source import Source

    meta = json.loads(Path(args.recipe).read_text())
    init = {k: meta[k] for k in ("family", "class_name", "constructor", "opts")}
    t = time.perf_counter()
    sd = procedural_state_dict(meta["procedural_weights"])
    cfg, params = enc.from_source(Source(args.encoder, init, sd, {}))
    del sd
    _to_device(params)
    load_s = time.perf_counter() - t
    fwd = jax.jit(enc.encoder_forward, static_argnums=0)
    run = lambda x: jax.block_until_ready(fwd(cfg, params, x))
    out = {"side": "jax", "threads": os.cpu_count(), "load_s": load_s, "batches": {}}
    for b in args.batch_list:
        x = jax.device_put(_inputs(b).transpose(0, 2, 3, 1))
        t = time.perf_counter()
        y = run(x)
        first = time.perf_counter() - t
        if b == args.batch_list[0]:
            np.save(Path(args.out_dir) / "jax.npy", np.asarray(y))
        out["batches"][b] = {"batch": b, "first_call_s": first, "times": _time(run, x, args.repeats)}
    out["maxrss_gb"] = _maxrss_gb()
    return out


def _worker_torch(args: argparse.Namespace) -> dict:
    import torch
    import torch.utils.cpp_extension

    torch.utils.cpp_extension.load = lambda *a, **k: None  # no CUDA kernel builds (README section 8)
    sys.path.insert(0, str(Path(args.official_src).resolve()))
    from models.encoders import psp_encoders  # the official module

    sys.path.insert(0, str(ROOT))
    from jaxinv.procedural import procedural_state_dict

    meta = json.loads(Path(args.recipe).read_text())
    opts = argparse.Namespace(**meta["opts"])
    t = time.perf_counter()
    encoder = getattr(psp_encoders, CLASSES[args.encoder])(50, "ir_se", opts).eval()
    sd = procedural_state_dict(meta["procedural_weights"])
    sd.pop("latent_avg", None)
    encoder.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    del sd
    load_s = time.perf_counter() - t
    torch.set_grad_enabled(False)
    out = {"side": "torch", "version": torch.__version__, "threads": torch.get_num_threads(), "load_s": load_s,
           "batches": {}}
    for b in args.batch_list:
        x = torch.from_numpy(_inputs(b))
        t = time.perf_counter()
        y = encoder(x)
        first = time.perf_counter() - t
        if b == args.batch_list[0]:
            np.save(Path(args.out_dir) / "torch.npy", y.numpy())
        out["batches"][b] = {"batch": b, "first_call_s": first, "times": _time(encoder, x, args.repeats)}
    out["maxrss_gb"] = _maxrss_gb()
    return out


def _run_side(side: str, args: argparse.Namespace, out_dir: str) -> dict:
    """One side's worker (every batch size) in its own subprocess; a failure comes back as {"error": ...}."""
    cmd = [sys.executable, __file__, "--worker", side, "--encoder", args.encoder, "--batches", args.batches,
           "--repeats", str(args.repeats), "--recipe", str(args.recipe), "--out-dir", out_dir]
    if args.official_src:
        cmd += ["--official-src", args.official_src]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=args.worker_env)
    if proc.returncode != 0:
        tail = proc.stderr[-3000:]
        return {"side": side, "error": f"rc {proc.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}",
                "tail": tail}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["batches"] = {int(b): r for b, r in res["batches"].items()}
    for r in res["batches"].values():  # per piece: images/s of the median timed call
        r["images_per_s"] = r["batch"] / float(np.median(r["times"]))
    return res


def summarise(rounds: list[dict], batches: list[int], allow_disturbed: bool = False) -> dict:
    """Per side and batch the images/s, per batch the jax / torch ratio of the same round: median, min, max
    over the clean rounds (`_protocol.summarise`; a ratio's round is clean when both of its pieces are)."""
    ok = lambda p: p is not None and "error" not in p  # noqa: E731
    out: dict = {"jax": {}, "torch": {}, "ratio": {}}
    for b in batches:
        for side in ("jax", "torch"):
            vals = [(r[side]["batches"][b]["images_per_s"], r[side]["disturbed"]) for r in rounds if ok(r.get(side))]
            out[side][b] = protocol.summarise(vals, allow_disturbed)
        pairs = [(r["jax"]["batches"][b]["images_per_s"] / r["torch"]["batches"][b]["images_per_s"],
                  r["jax"]["disturbed"] or r["torch"]["disturbed"])
                 for r in rounds if ok(r.get("jax")) and ok(r.get("torch"))]
        out["ratio"][b] = protocol.summarise(pairs, allow_disturbed)
    return out


def _progress(rnd: int, res: dict) -> None:
    i = res["interference"]
    what = res["error"] if "error" in res else ", ".join(
        f"batch {b} {r['images_per_s']:.2f} images/s" for b, r in res["batches"].items())
    print(f"round {rnd} {res['side']}: {what}; own {i['own_cores']:.2f} cores, other processes "
          f"{i['foreign_cores']:.2f} cores over {i['wall_s']:.0f} s, load {i['loadavg_before'][:1]} -> "
          f"{i['loadavg_after'][:1]}" + (" DISTURBED" if res["disturbed"] else "")
          + (f" (attempt {len(res['repeated']) + 1})" if res["repeated"] else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-src", help="checkout of eladrich/pixel2style2pixel (psp) or "
                    "omertov/encoder4editing (e4e)")
    ap.add_argument("--encoder", choices=sorted(CASES), default="psp")
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (after one warm-up)")
    protocol.add_arguments(ap, rounds_help="interleaved rounds (torch worker, then jax worker)")
    ap.add_argument("--json", help="write the machine record, every piece and the summary to this JSON file")
    ap.add_argument("--recipe", help="golden <case>.meta.json with the procedural weight recipe "
                    "(default ../shared/golden/<case>.meta.json)")
    ap.add_argument("--skip-torch", action="store_true", help="time the JAX side only")
    ap.add_argument("--hugepages", choices=("on", "off"), default="on",
                    help="run both workers with glibc's transparent huge pages as the jaxinv command does "
                    "(jaxinv/_hugepages.py; on = GLIBC_TUNABLES=glibc.malloc.hugetlb=1 where the host supports "
                    "it, the same for both sides)")
    ap.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.batch_list = [int(b) for b in args.batches.split(",")]
    if args.recipe is None:
        args.recipe = str(Path(os.environ.get("JAXINV_SHARED", ROOT.parent / "shared")) / "golden"
                          / f"{CASES[args.encoder]}.meta.json")
    if not Path(args.recipe).exists():
        sys.exit(f"{args.recipe}: procedural weight recipe not found (give --recipe)")
    if args.worker:
        result = _worker_jax(args) if args.worker == "jax" else _worker_torch(args)
        print(json.dumps(result))
        return 0
    if not args.skip_torch and not args.official_src:
        sys.exit("--official-src PATH is required (checkout of the official repo; see the module docstring)")
    if args.rounds < 1:
        sys.exit("--rounds: at least 1")

    sys.path.insert(0, str(ROOT))
    from jaxinv._hugepages import TUNABLE, env_with_hugepages
    from jaxinv.parity.core import Check

    args.worker_env = dict(os.environ)
    if args.hugepages == "on":
        args.worker_env = env_with_hugepages({**os.environ, "JAXINV_HUGEPAGES": "1"}) or args.worker_env
    else:
        args.worker_env["GLIBC_TUNABLES"] = ":".join(
            t for t in args.worker_env.get("GLIBC_TUNABLES", "").split(":") if t and not t.startswith(TUNABLE))
    info = {**protocol.machine_info(args.worker_env), "encoder": CLASSES[args.encoder], "repeats": args.repeats,
            "rounds": args.rounds, "max_foreign_cpu": args.max_foreign_cpu, "max_retries": args.max_retries,
            "allow_disturbed": args.allow_disturbed, "glibc_tunables": args.worker_env.get("GLIBC_TUNABLES")}
    print(protocol.header(info), flush=True)
    measure = partial(protocol.measure, max_foreign=args.max_foreign_cpu, max_retries=args.max_retries,
                      log=partial(print, flush=True))
    sides = ("jax",) if args.skip_torch else ("torch", "jax")
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(1, args.rounds + 1):
            rounds.append({})
            for side in sides:
                res = measure(partial(_run_side, side, args, tmp))
                _progress(rnd, res)
                rounds[-1][side] = res
            if len(sides) == 2 and "parity" not in info and all("error" not in rounds[-1][s] for s in sides):
                ours, ref = np.load(Path(tmp) / "jax.npy"), np.load(Path(tmp) / "torch.npy")
                err, tol, ok = Check("codes", ours, ref).result()  # the parity tool's criterion
                info["parity"] = {"max_abs": err, "tol": tol, "ok": bool(ok)}
                print(f"# outputs agree: max abs diff {err:.2e} (tol {tol:.2e}) {'OK' if ok else 'MISMATCH'}")
    summary = summarise(rounds, args.batch_list, args.allow_disturbed)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rounds": rounds, "summary": summary}, indent=1))
    print()
    print(protocol.header(info))
    print(f"# {CLASSES[args.encoder]} (IR-SE50, 18 styles, 256x256), {args.rounds} interleaved rounds, "
          f"{args.repeats} timed calls per batch and piece (median); figures: median [min..max] over the clean "
          f"rounds; both sides GLIBC_TUNABLES={args.worker_env.get('GLIBC_TUNABLES') or '(unset)'}")
    for side in sides:
        done = [r[side] for r in rounds if "error" not in r[side]]
        if not done:
            print(f"{side:5s}: error: {rounds[-1][side]['error']}")
            continue
        extra = f" torch {done[0]['version']}" if side == "torch" else ""
        print(f"{side:5s}: threads {done[0]['threads']}{extra}, load {np.median([p['load_s'] for p in done]):.1f} s, "
              f"peak RSS {np.median([p['maxrss_gb'] for p in done]):.2f} GB")
        pieces = [r[side] for r in rounds]
        for b in args.batch_list:
            s = summary[side][b]
            what = protocol.fmt_summary(s, unit=" images/s") if s["median"] is not None else protocol.busy_note(pieces)
            first = np.median([p["batches"][b]["first_call_s"] for p in done])
            print(f"  batch {b:3d}: {what}  (first call {first:.1f} s)")
    if len(sides) == 2:
        for b in args.batch_list:
            s = summary["ratio"][b]
            pieces = [p for r in rounds for p in r.values()]
            what = protocol.fmt_summary(s, unit="x") if s["median"] is not None else protocol.busy_note(pieces)
            print(f"ratio jax/torch images/s, batch {b}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
