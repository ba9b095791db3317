"""Full-size sanity: build official full-size configs from ../shared/golden/manifests with random params of the
manifest shapes (named as the manifest, converted through the family's `from_source`), check every name maps
to a param of the right shape, and time one batch-1 forward on CPU.

    python benchmarks/fullsize_forward.py --family biggan [--manifest biggan_deep_128 ...]

Each manifest runs in its own subprocess so that the reported peak RSS belongs to that config alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JAXINV_SHARED", ROOT.parent / "shared"))
MANIFESTS = SHARED / "golden" / "manifests"
FAMILY_MANIFESTS = {"biggan": ["biggan_deep_128", "biggan_deep_256", "biggan_deep_512"]}


def biggan_random_state_dict(manifest: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors named and shaped as the manifest; spectral-norm u, v from one power-iteration step
    (as the HF converter leaves them), BN variances positive."""
    rng = np.random.default_rng(seed)
    entries = {e["name"]: tuple(e["shape"]) for e in manifest["state_dict"]}
    sd: dict[str, np.ndarray] = {}
    for name, shape in entries.items():
        if name.endswith(("weight_u", "weight_v")):
            continue
        if name.endswith("running_vars"):
            a = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("running_means") or name.endswith(".bias") or name.endswith("gamma"):
            a = rng.normal(0.0, 0.1, shape)
        elif name == "generator.bn.weight":
            a = 1.0 + rng.normal(0.0, 0.1, shape)
        else:
            a = rng.standard_normal(shape, dtype=np.float32) / np.sqrt(max(1, int(np.prod(shape[1:]))))
        sd[name] = a.astype(np.float32)
        if name.endswith("weight_orig"):
            stem = name[: -len("_orig")]
            w = sd[name].reshape(shape[0], -1)
            u = rng.standard_normal(shape[0]).astype(np.float32)
            u /= np.linalg.norm(u)
            v = w.T @ u
            v /= np.linalg.norm(v)
            u = w @ v
            u /= np.linalg.norm(u)
            sd[stem + "_u"], sd[stem + "_v"] = u.astype(np.float32), v.astype(np.float32)
    missing = set(entries) - set(sd)
    assert not missing, missing
    return sd


def run_biggan(manifest_name: str) -> dict:
    import jax

    from jaxinv.models import biggan
    from weights_convert.source import Source

    manifest = json.loads((MANIFESTS / f"{manifest_name}.json").read_text())
    cfg = biggan.Config.from_hf(manifest["config_json"])
    sd = biggan_random_state_dict(manifest)
    t0 = time.perf_counter()
    cfg, params = biggan.from_source(Source("biggan", manifest["config_json"], sd, {"source": manifest_name}))
    t_convert = time.perf_counter() - t0
    del sd
    # Official parameter count = every leaf except the BN running statistics (buffers).
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    n_params = sum(int(np.prod(x.shape)) for path, x in flat if not str(path[-1].key).startswith("running_"))
    assert n_params == manifest["param_count"], (n_params, manifest["param_count"])
    z = np.random.default_rng(1).uniform(-0.8, 0.8, (1, cfg.z_dim)).astype(np.float32)
    c = biggan.one_hot([207], cfg.num_classes)
    fwd = jax.jit(biggan.generate, static_argnums=(0, 4))
    t0 = time.perf_counter()
    img = fwd(cfg, params, z, c, 0.4).block_until_ready()
    t_first = time.perf_counter() - t0
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        fwd(cfg, params, z, c, 0.4).block_until_ready()
        times.append(time.perf_counter() - t0)
    img = np.asarray(img)
    mem = fwd.lower(cfg, params, z, c, 0.4).compile().memory_analysis()
    temp_mib = round(mem.temp_size_in_bytes / 2**20, 1) if mem is not None else None
    return {"manifest": manifest_name, "img_shape": list(img.shape), "finite": bool(np.isfinite(img).all()),
            "img_absmax": float(np.abs(img).max()), "param_count": n_params, "convert_s": round(t_convert, 2),
            "compile_and_first_forward_s": round(t_first, 2), "forward_s": round(min(times), 3),
            "xla_temp_mib": temp_mib,  # forward's scratch memory beyond params/inputs/outputs
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


RUNNERS = {"biggan": run_biggan}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", required=True, choices=sorted(RUNNERS))
    ap.add_argument("--manifest", nargs="*", help="manifest names (default: all of the family)")
    ap.add_argument("--in-process", action="store_true", help="run in this process (peak RSS is cumulative)")
    args = ap.parse_args()
    names = args.manifest or FAMILY_MANIFESTS[args.family]
    for name in names:
        if args.in_process or len(names) == 1:
            print(json.dumps(RUNNERS[args.family](name)), flush=True)
        else:
            subprocess.run([sys.executable, __file__, "--family", args.family, "--manifest", name], check=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})


if __name__ == "__main__":
    main()
