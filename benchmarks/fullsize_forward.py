"""Full-size sanity: build official full-size configs from ../shared/golden/manifests with random params of the
manifest shapes (named as the manifest, converted through the family's `from_source`), check every name maps
to a param of the right shape, and time one batch-1 forward on CPU.

    python benchmarks/fullsize_forward.py --family biggan [--manifest biggan_deep_128 ...]
    python benchmarks/fullsize_forward.py --family stylegan3 [--manifest sg3_t_1024_cbase32768 ...]

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
FAMILY_MANIFESTS = {"biggan": ["biggan_deep_128", "biggan_deep_256", "biggan_deep_512"],
                    "stylegan3": ["sg3_t_256_cbase16384", "sg3_r_256_cbase16384", "sg3_t_1024_cbase32768",
                                  "sg3_r_1024_cbase32768"]}


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


def stylegan3_random_state_dict(manifest: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random tensors named and shaped as the manifest, drawn as the official constructors draw them
    (unit-normal weights, affine biases 1, Fourier frequencies in the band); the up/down filter buffers
    hold the designed filters and ``magnitude_ema`` 1, as a fresh official network has them."""
    from jaxinv.models import stylegan3

    rng = np.random.default_rng(seed)
    cfg = stylegan3.Config.from_init_kwargs(manifest["init_kwargs"])
    layers = {layer.name: layer for layer in cfg.layers}
    sd: dict[str, np.ndarray] = {}
    for e in manifest["state_dict"]:
        name, shape = e["name"], tuple(e["shape"])
        parts = name.split(".")
        if name.endswith(("up_filter", "down_filter")):
            a = getattr(layers[parts[1]], parts[2])
        elif name == "synthesis.input.transform":
            a = np.eye(3)
        elif name == "synthesis.input.freqs":
            f = rng.standard_normal(shape)
            radii = np.sqrt(np.sum(f**2, axis=1, keepdims=True))
            a = f / (radii * np.exp(radii**2) ** 0.25) * cfg.input_spec.bandwidth
        elif name == "synthesis.input.phases":
            a = rng.uniform(-0.5, 0.5, shape)
        elif name == "synthesis.input.affine.bias":
            a = np.array([1.0, 0.0, 0.0, 0.0])
        elif name.endswith("affine.bias"):
            a = np.ones(shape)
        elif name.endswith("magnitude_ema"):
            a = np.ones(shape)
        elif name.startswith("mapping.fc") and name.endswith("weight"):
            a = rng.standard_normal(shape) / 0.01  # stored / lr_multiplier
        elif name.endswith("bias") or name == "mapping.w_avg":
            a = rng.normal(0.0, 0.1, shape)
        else:
            a = rng.standard_normal(shape, dtype=np.float32)
        sd[name] = np.asarray(a, np.float32)
    return sd


def run_stylegan3(manifest_name: str) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxinv import ops
    from jaxinv.models import stylegan3
    from weights_convert.source import Source

    manifest = json.loads((MANIFESTS / f"{manifest_name}.json").read_text())
    sd = stylegan3_random_state_dict(manifest)
    init = {"class_name": manifest["class_name"], "init_args": [], "init_kwargs": manifest["init_kwargs"]}
    t0 = time.perf_counter()
    cfg, params = stylegan3.from_source(Source("stylegan3", init, sd, {"source": manifest_name}))
    t_convert = time.perf_counter() - t0
    del sd
    # Official parameter count: trainable tensors (buffers are transform/freqs/phases/ema/filters/w_avg).
    buffers = ("transform", "freqs", "phases", "magnitude_ema", "w_avg")
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    n_params = sum(int(np.prod(x.shape)) for path, x in flat if str(path[-1].key) not in buffers)
    assert n_params == manifest["param_count"], (n_params, manifest["param_count"])

    z = np.random.default_rng(1).standard_normal((1, cfg.z_dim)).astype(np.float32)
    fwd = jax.jit(stylegan3.generate, static_argnums=(0,))
    t0 = time.perf_counter()
    img = fwd(cfg, params, z, None, 0.7).block_until_ready()
    t_first = time.perf_counter() - t0
    forward_wall, forward_cpu = _timed(lambda: fwd(cfg, params, z, None, 0.7).block_until_ready())
    img = np.asarray(img)
    mem = fwd.lower(cfg, params, z, None, 0.7).compile().memory_analysis()
    temp_mib = round(mem.temp_size_in_bytes / 2**20, 1) if mem is not None else None

    # filtered_lrelu share: each layer's call jitted alone on an input of its forward's shape, timed
    # like the forward (wall and process CPU time; CPU time is steadier on a shared machine).
    flrelu_wall = flrelu_cpu = 0.0
    per_layer = {}
    for layer in cfg.layers:
        size = layer.in_size[0] + layer.conv_kernel - 1
        x = jnp.asarray(np.random.default_rng(2).standard_normal((1, size, size, layer.out_channels), np.float32))
        fn = jax.jit(lambda x, b, layer=layer: ops.filtered_lrelu(
            x, layer.up_filter, layer.down_filter, b, up=layer.up_factor, down=layer.down_factor,
            padding=layer.padding, gain=1.0 if layer.is_torgb else float(np.sqrt(2)),
            slope=1.0 if layer.is_torgb else 0.2, clamp=cfg.conv_clamp))
        b = params["synthesis"][layer.name]["bias"]
        fn(x, b).block_until_ready()
        wall, cpu = _timed(lambda fn=fn, x=x, b=b: fn(x, b).block_until_ready())
        per_layer[layer.name] = round(wall, 3)
        flrelu_wall += wall
        flrelu_cpu += cpu
    return {"manifest": manifest_name, "img_shape": list(img.shape), "finite": bool(np.isfinite(img).all()),
            "img_absmax": float(np.abs(img).max()), "param_count": n_params, "convert_s": round(t_convert, 2),
            "compile_and_first_forward_s": round(t_first, 2), "forward_s": round(forward_wall, 3),
            "forward_cpu_s": round(forward_cpu, 3), "filtered_lrelu_s": round(flrelu_wall, 3),
            "filtered_lrelu_cpu_s": round(flrelu_cpu, 3),
            "filtered_lrelu_share_wall": round(flrelu_wall / forward_wall, 3),
            "filtered_lrelu_share_cpu": round(flrelu_cpu / forward_cpu, 3),
            "filtered_lrelu_per_layer_s": per_layer, "xla_temp_mib": temp_mib,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "load_avg_1m": round(os.getloadavg()[0], 1), "cpus": os.cpu_count()}


def _timed(fn, repeats: int = 3) -> tuple[float, float]:
    """Fastest of `repeats` calls: (wall seconds, process CPU seconds of all threads)."""
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


RUNNERS = {"biggan": run_biggan, "stylegan3": run_stylegan3}


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
