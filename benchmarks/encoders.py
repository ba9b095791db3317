"""Encoder forward throughput on CPU: jaxinv (JAX) vs the official pSp / e4e PyTorch encoder, same run.

Both sides build the full-size IR-SE50 encoder (pSp ``GradualStyleEncoder`` or e4e ``Encoder4Editing``,
18 styles, 256x256 inputs) with the same procedural weights (golden README section 6), check that their
outputs agree, then time ``encoder(x)`` at each batch size. Each side runs in its own subprocess, so the
peak memory printed (``resource.getrusage`` maxrss, loading included) is that side's alone. Both workers get
the same ``GLIBC_TUNABLES``: by default glibc's transparent huge pages, as the ``jaxinv`` command sets them
(``jaxinv/_hugepages.py``); ``--hugepages off`` times both sides without them.

The official code is not part of this repository. Get it with::

    git clone https://github.com/eladrich/pixel2style2pixel /tmp/psp && git -C /tmp/psp checkout 5cfff38
    # e4e: git clone https://github.com/omertov/encoder4editing /tmp/e4e && git -C /tmp/e4e checkout 99ea505

and run (needs ``pip install torch==2.13.0``, CPU build)::

    python benchmarks/encoders.py --official-src /tmp/psp [--encoder psp] [--batches 1,8,32] [--repeats 3]

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
from pathlib import Path

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
        out["batches"][b] = {"first_call_s": first, "times": _time(run, x, args.repeats)}
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
        out["batches"][b] = {"first_call_s": first, "times": _time(encoder, x, args.repeats)}
    out["maxrss_gb"] = _maxrss_gb()
    return out


def _run_side(side: str, args: argparse.Namespace, out_dir: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--encoder", args.encoder, "--batches", args.batches,
           "--repeats", str(args.repeats), "--recipe", str(args.recipe), "--out-dir", out_dir]
    if args.official_src:
        cmd += ["--official-src", args.official_src]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=args.worker_env)
    if proc.returncode != 0:
        sys.exit(f"{side} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official-src", help="checkout of eladrich/pixel2style2pixel (psp) or "
                    "omertov/encoder4editing (e4e)")
    ap.add_argument("--encoder", choices=sorted(CASES), default="psp")
    ap.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (after one warm-up)")
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

    sys.path.insert(0, str(ROOT))
    from jaxinv._hugepages import TUNABLE, env_with_hugepages
    from jaxinv.parity.core import Check

    args.worker_env = dict(os.environ)
    if args.hugepages == "on":
        args.worker_env = env_with_hugepages({**os.environ, "JAXINV_HUGEPAGES": "1"}) or args.worker_env
    else:
        args.worker_env["GLIBC_TUNABLES"] = ":".join(
            t for t in args.worker_env.get("GLIBC_TUNABLES", "").split(":") if t and not t.startswith(TUNABLE))
    with tempfile.TemporaryDirectory() as tmp:
        sides = [_run_side("jax", args, tmp)]
        if not args.skip_torch:
            sides.append(_run_side("torch", args, tmp))
            ours, ref = np.load(Path(tmp) / "jax.npy"), np.load(Path(tmp) / "torch.npy")
            err, tol, ok = Check("codes", ours, ref).result()  # the parity tool's criterion
            print(f"# outputs agree: max abs diff {err:.2e} (tol {tol:.2e}) {'OK' if ok else 'MISMATCH'}")
    print(f"# {CLASSES[args.encoder]} (IR-SE50, 18 styles, 256x256), {os.cpu_count()} CPUs, "
          f"{args.repeats} timed calls per batch (median); both sides GLIBC_TUNABLES="
          f"{args.worker_env.get('GLIBC_TUNABLES') or '(unset)'}")
    ips = {}
    for s in sides:
        extra = f" torch {s['version']}" if s["side"] == "torch" else ""
        print(f"{s['side']:5s}: threads {s['threads']}{extra}, load {s['load_s']:.1f} s, "
              f"peak RSS {s['maxrss_gb']:.2f} GB")
        for b, r in s["batches"].items():
            med = float(np.median(r["times"]))
            ips[s["side"], int(b)] = int(b) / med
            print(f"  batch {int(b):3d}: {int(b) / med:7.2f} images/s  (median {med:.2f} s, "
                  f"min {min(r['times']):.2f} s, first call {r['first_call_s']:.1f} s)")
    if len(sides) == 2:
        print("ratio jax/torch images/s: " + ", ".join(
            f"batch {b}: {ips['jax', b] / ips['torch', b]:.2f}x" for b in args.batch_list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
