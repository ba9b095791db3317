"""Throughput of the batch inversion job (`jaxinv.jobs`): images/s and image-steps/s vs batch size and vs
device count, the share of time the device waits for input, and cold vs warm start.

    python benchmarks/throughput.py                       # CPU: forced host devices 1, 2, 4, 8
    python benchmarks/throughput.py --batches 1,4,16 --devices 1 --images 64 --steps 20
    python benchmarks/throughput.py --batches 1,8 --lane-groups auto,all --devices 1 --skip-cold
    python benchmarks/throughput.py --model out/ffhq --devices 0   # 0 = the real devices JAX sees (GPU)

Every measurement is a fresh subprocess (the device count must be fixed before JAX starts) running the full
job: synthetic 256x256 JPEGs on disk are listed, decoded and resized by the pipeline threads, inverted
(Z space for the DCGAN, W for StyleGAN-type models, MSE, Adam) and every result file is written. Rates are
steady-state (after the first batch, which includes compilation). Input wait = time the device sat idle
while the job loop was blocked on decoded input, over the device's busy + idle time after the first batch.
Cold start = process start to first batch done with an empty compilation cache; warm = the same with the
cache the cold run filled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_images(folder: Path, n: int, size: int = 256) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    base = rng.randint(0, 256, (size // 8, size // 8, 3), np.uint8)
    for i in range(n):
        img = Image.fromarray(np.roll(base, i, axis=0)).resize((size, size), Image.BICUBIC)
        img.save(folder / f"{i:05d}.jpg", quality=90)


def worker(a: argparse.Namespace) -> None:
    t_start = time.perf_counter()
    from jaxinv.distributed import Devices, enable_compilation_cache

    enable_compilation_cache(a.cache)
    import jax

    from jaxinv import jobs
    from jaxinv.images import Preprocess, load_image

    if a.model:
        import jaxinv

        model = jaxinv.load(a.model)
    else:
        from jaxinv.models.dcgan import load_default

        model = load_default()
    from jaxinv.generators import Generator

    gen = Generator.from_model(model)
    res, ch = gen.img_resolution, gen.img_channels

    pre = Preprocess(res, channels=ch)
    load = lambda ref: load_image(ref.path, pre)  # noqa: E731

    devices = Devices.local()
    lane_group = None if a.lane_group == "all" else a.lane_group if a.lane_group == "auto" else int(a.lane_group)
    spec = jobs.invert_spec(model, load, space="w" if gen.has_w else "z", steps=a.steps, batch_size=a.batch,
                            devices=devices, lane_group=lane_group)
    t_job = time.perf_counter()
    rep = jobs.run_job(spec, [a.images], a.out, progress=False, log=lambda m: None)
    first = rep.first_batch_seconds
    n_after = rep.done - min(spec.batch_size, rep.done)
    span = rep.completions[-1] - rep.completions[0] if len(rep.completions) > 1 else float("nan")
    img_s = n_after / span if n_after else float("nan")
    print(json.dumps({
        "platform": jax.devices()[0].platform, "devices": devices.count, "batch": spec.batch_size,
        "lane_group": a.lane_group,
        "images": rep.done, "steps": a.steps, "img_s": img_s, "img_steps_s": img_s * a.steps,
        "input_wait_share": rep.input_wait_share,
        "device_idle_share": rep.device_idle_seconds / max(rep.busy_seconds + rep.device_idle_seconds, 1e-9),
        "first_batch_s": first, "startup_s": t_job - t_start, "to_first_result_s": t_job - t_start + first,
    }))


def _run_worker(args: argparse.Namespace, images: Path, devices: int, batch: int, cache: Path,
                lane_group: str = "auto") -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
        env["JAX_PLATFORMS"] = "cpu"
    env["XLA_FLAGS"] = " ".join(flags)
    with tempfile.TemporaryDirectory(prefix="jaxinv-bench-out-") as out:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--images-dir", str(images), "--out", out,
               "--batch", str(batch), "--steps", str(args.steps), "--cache", str(cache),
               "--lane-group", lane_group]
        if args.model:
            cmd += ["--model", args.model]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"worker failed (devices={devices}, batch={batch}):\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    res["process_wall_s"] = wall
    return res


def _row(r: dict) -> str:
    return (f"| {r['platform']} | {r['devices']} | {r['batch']} | {r['lane_group']} | {r['images']} | "
            f"{r['img_s']:.2f} | "
            f"{r['img_steps_s']:.1f} | {100 * r['input_wait_share']:.1f}% | {100 * r['device_idle_share']:.1f}% | "
            f"{r['first_batch_s']:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--images-dir", dest="images", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=4, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help="converted model dir / official file (default: embedded DCGAN)")
    ap.add_argument("--steps", type=int, default=5, help="Adam steps per image (default 5)")
    ap.add_argument("--images", dest="num_images", type=int, default=0,
                    help="images per run (default 4 x the largest batch, at least 16)")
    ap.add_argument("--batches", default="1,2,4,8", help="batch sizes swept on 1 device")
    ap.add_argument("--devices", default="1,2,4,8",
                    help="forced host device counts swept (CPU); 0 = the real devices JAX sees")
    ap.add_argument("--device-batch", type=int, default=8, help="global batch of the device sweep")
    ap.add_argument("--image-size", type=int, default=256, help="side of the synthetic JPEGs (decode cost)")
    ap.add_argument("--lane-groups", default="auto",
                    help="lane groups swept on 1 device (auto = the engine's choice, all = the whole batch vmapped)")
    ap.add_argument("--lane-group", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--skip-cold", action="store_true", help="skip the cold/warm start measurement")
    a = ap.parse_args()
    if a.worker:
        worker(a)
        return
    batches = [int(b) for b in a.batches.split(",") if b]
    lane_groups = [g.strip() for g in a.lane_groups.split(",") if g.strip()]
    for g in lane_groups:
        if g not in ("auto", "all") and not (g.isdigit() and int(g) >= 1):
            ap.error(f"--lane-groups: {g!r} is not auto, all or an integer >= 1")
    device_counts = [int(d) for d in a.devices.split(",") if d]
    real = device_counts == [0]
    n = a.num_images or max(16, 4 * max(batches + [a.device_batch]))
    with tempfile.TemporaryDirectory(prefix="jaxinv-bench-") as tmp:
        tmp = Path(tmp)
        images = tmp / "images"
        _make_images(images, n, a.image_size)
        cache = tmp / "xla-sweep"
        header = ("| platform | devices | batch | lane group | images | images/s | image-steps/s | input wait | "
                  "device idle | first batch s |\n|---|---|---|---|---|---|---|---|---|---|")
        print(f"# jaxinv batch-job throughput ({a.steps} steps, {n} images of {a.image_size}x{a.image_size} JPEG, "
              f"model {a.model or 'embedded DCGAN 64x64'})\n")
        print("## vs batch size (1 device)\n")
        print(header, flush=True)
        first_dev = 0 if real else 1
        for g in lane_groups:
            for b in batches:
                print(_row(_run_worker(a, images, first_dev, b, cache, g)), flush=True)
        if not real:
            print(f"\n## vs forced host device count (global batch {a.device_batch})\n")
            print(header, flush=True)
            for d in device_counts:
                print(_row(_run_worker(a, images, d, max(a.device_batch, d), cache)), flush=True)
        if not a.skip_cold:
            cold_cache = tmp / "xla-cold"
            cold = _run_worker(a, images, first_dev, 4, cold_cache)
            warm = _run_worker(a, images, first_dev, 4, cold_cache)
            print("\n## cold vs warm start (batch 4; process start to first batch done)\n")
            print("| start | to first result s | first batch s (compile + run) | process wall s |\n|---|---|---|---|")
            for name, r in (("cold (empty cache)", cold), ("warm (persistent cache)", warm)):
                print(f"| {name} | {r['to_first_result_s']:.1f} | {r['first_batch_s']:.1f} | "
                      f"{r['process_wall_s']:.1f} |")


if __name__ == "__main__":
    main()
