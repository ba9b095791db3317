"""Evidence for issue 8: pivotal tuning on real faces, CMA / BasinCMA vs Adam on BigGAN, batched-PTI throughput.

    python benchmarks/pti_cma.py                        # all parts, modest sizes
    python benchmarks/pti_cma.py --faces 8 --pti-steps 100 --budget 600 --json out.json

1. PTI on the real DCGAN face GAN (embedded default, DigiFace-1M) and the real aligned faces of
   ../shared/realdata/images/faces_aligned (resize 256, crop x 32..220 / y 35..223, resize 64): pivots from
   `jaxinv.invert` (Z space, MSE, Adam lr 0.05 constant, as the realdata recipe), then `jaxinv.pti.tune`
   (dense deltas, MSE; no VGG16 weights exist offline, so LPIPS is off). PSNR / SSIM before vs after.
2. Memory per image of the PTI program (XLA buffer assignment of the compiled program at batch 1, 2, 4):
   dense deltas, low-rank deltas, last two layers only.
3. Throughput of batched PTI (one program, images vmapped; and lax.map lanes) vs images tuned one by one
   (the same `tune`, batch_size=1), compile excluded (each measured on its second call).
4. The golden BigGAN (../shared/golden/biggan_128_ch8, random weights): targets rendered from known
   (z, class) at truncation 0.5; the class is known and its embedding is optimised with z (Huh et al.).
   CMA-ES (z + embedding), BasinCMA (CMA on z, K Adam steps on z + embedding) and Adam at the same number of
   generator evaluations per image (a loss evaluation, with or without backward, counts one).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxinv
from jaxinv import cma, metrics, pti
from jaxinv.generators import Generator, render_jit
from jaxinv.images import PRESETS, Preprocess, list_images, load_images
from jaxinv.invert import generator_input, invert
from jaxinv.models import dcgan
from jaxinv.optim import Adam

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JAXINV_SHARED", ROOT.parent / "shared"))


def _01(x):
    return (np.asarray(x, np.float32) + 1) / 2


def psnr_ssim(a, b):
    a, b = np.clip(_01(a), 0, 1), np.clip(_01(b), 0, 1)
    return np.asarray(metrics.psnr(a, b)), np.asarray(metrics.ssim(a, b))


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def faces(n):
    p = PRESETS["dcgan-faces"]
    pre = Preprocess(p["resolution"], resize_to=p["resize_to"], crop=p["crop"])
    files = list_images(SHARED / "realdata" / "images" / "faces_aligned")[:n]
    x, names, errors = load_images(files, pre)
    if errors:
        print("skipped:", errors)
    return x, [f"{q.parent.name}/{q.name}" for q in names]


def part_pti(args, report):
    model = dcgan.load_default()
    x, names = faces(args.faces)
    t0 = time.perf_counter()
    inv = invert(model, x, space="z", loss="mse", steps=args.pivot_steps, seed=0,
                 optimizer=Adam(learning_rate=0.05, schedule="constant", initial_noise_factor=0.0))
    piv = generator_input(model, inv.space, inv.latents)
    t_inv = time.perf_counter() - t0
    res = pti.tune(model, x, {"z": piv["z"]}, steps=args.pti_steps, lr=args.pti_lr, seed=0)
    p0, s0 = psnr_ssim(res.images_before, x)
    p1, s1 = psnr_ssim(res.images_after, x)
    rows = [(nm, f"{a:.2f}", f"{b:.2f}", f"{c:.3f}", f"{d:.3f}") for nm, a, b, c, d in zip(names, p0, p1, s0, s1,
                                                                                             strict=True)]
    rows.append(("**mean**", f"**{p0.mean():.2f}**", f"**{p1.mean():.2f}**", f"**{s0.mean():.3f}**",
                 f"**{s1.mean():.3f}**"))
    rows.append(("min", f"{p0.min():.2f}", f"{p1.min():.2f}", f"{s0.min():.3f}", f"{s1.min():.3f}"))
    print(f"\n## PTI on real faces (DCGAN DigiFace-1M, {len(x)} faces): pivot = invert(z, MSE, Adam 0.05, "
          f"{args.pivot_steps} steps, {t_inv:.0f} s); tune: {args.pti_steps} Adam steps lr {args.pti_lr}, "
          f"dense deltas ({res.trainable_per_image:,} values/image), {res.seconds:.0f} s\n")
    print(table(["image", "PSNR pivot", "PSNR tuned", "SSIM pivot", "SSIM tuned"], rows))
    report["pti"] = {"names": names, "psnr_before": p0.tolist(), "psnr_after": p1.tolist(),
                     "ssim_before": s0.tolist(), "ssim_after": s1.tolist(), "invert_s": t_inv,
                     "tune_s": res.seconds, "loss_before": res.loss_before.tolist(),
                     "loss_after": res.loss_after.tolist()}
    return model, x, piv


def part_memory(args, report, model, x, piv):
    rows, out = [], {}
    for label, opts in [("dense, vmap lanes", {"lanes": "vmap"}), ("dense, lax.map lanes", {"lanes": "map"}),
                        ("rank 4, lax.map lanes", {"rank": 4, "lanes": "map"}),
                        ("last 2 layers, lax.map lanes", {"layers": ("main/(9|12)/",), "lanes": "map"})]:
        prof = pti.memory_profile(model, x, {"z": piv["z"]}, batch_sizes=(1, 2, 4), steps=2, **opts)
        out[label] = prof
        tot = [r["total_bytes"] / 2**20 for r in prof]
        rows.append((label, f"{prof[0]['trainable_per_image']:,}", f"{prof[0]['state_bytes_per_image'] / 2**20:.1f}",
                     " / ".join(f"{t:.0f}" for t in tot), f"{prof[0]['bytes_per_image_slope'] / 2**20:.1f}"))
    print("\n## PTI memory (XLA buffer assignment of the compiled program, DCGAN 64x64; totals include the "
          "base params and I/O; under lax.map lanes only one image's Adam moments and activations are live)\n")
    print(table(["deltas", "tuned values / image", "delta + Adam moments MiB / image", "total MiB at batch 1 / 2 / 4",
                 "MiB per extra image"], rows))
    report["memory"] = out


def part_throughput(args, report, model, x, piv):
    n = min(args.tp_images, len(x))
    xs, zs = x[:n], {"z": piv["z"][:n]}
    steps = args.tp_steps
    results = {}
    last = ("main/(9|12)/",)
    for label, kw in [("batched, vmap lanes", dict(batch_size=n, lanes="vmap")),
                      ("batched, lax.map lanes", dict(batch_size=n, lanes="map")),
                      ("one by one", dict(batch_size=1, lanes="vmap")),
                      ("last 2 layers: batched, vmap lanes", dict(batch_size=n, lanes="vmap", layers=last)),
                      ("last 2 layers: one by one", dict(batch_size=1, lanes="vmap", layers=last))]:
        t0 = time.perf_counter()
        pti.tune(model, xs, zs, steps=steps, lr=args.pti_lr, **kw)  # compile (+ one run)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        pti.tune(model, xs, zs, steps=steps, lr=args.pti_lr, **kw)
        secs = time.perf_counter() - t0
        results[label] = {"seconds": secs, "first_call_s": first, "image_steps_per_s": n * steps / secs}
    rows = []
    for k, v in results.items():
        base = results["last 2 layers: one by one" if k.startswith("last") else "one by one"]["image_steps_per_s"]
        rows.append((k, f"{v['seconds']:.1f}", f"{v['first_call_s']:.1f}", f"{v['image_steps_per_s']:.2f}",
                     f"{v['image_steps_per_s'] / base:.2f}x"))
    print(f"\n## PTI throughput: {n} faces x {steps} steps, DCGAN 64x64 (CPU, {os.cpu_count()} cores shared); "
          "dense deltas on all layers or on the last two\n")
    print(table(["mode", "seconds (2nd call)", "1st call (compile+run)", "image-steps/s", "vs one by one"], rows))
    report["throughput"] = results


def part_biggan(args, report):
    model = jaxinv.load(SHARED / "golden" / "biggan_128_ch8.weights.npz")
    t = 0.5
    n = args.bg_images
    rng = np.random.default_rng(0)
    labels = rng.integers(0, model.cfg.num_classes, n)
    gen = Generator.from_model(model, truncation_psi=t)
    z_true = t * jax.random.truncated_normal(jax.random.PRNGKey(0), -2, 2, (n, model.cfg.z_dim))
    init, scales, _ = cma.default_init(model, n, class_labels=labels, truncation_psi=t)
    targets = np.asarray(render_jit(gen, {"z": z_true, "embedding": jnp.asarray(init["embedding"])}))
    e = args.budget
    z0 = t * np.asarray(jax.random.truncated_normal(jax.random.PRNGKey(1), -2, 2, (n, model.cfg.z_dim)))
    pop_cma = cma.default_popsize(2 * model.cfg.z_dim)
    k, pop_b = args.basin_k, args.basin_pop
    runs = [
        ("Adam (z + embedding)", {**init, "z": z0}, dict(method="adam", steps=e - 1, lr=args.bg_lr)),
        ("CMA-ES (z + embedding)", init, dict(method="cma", generations=(e - 1) // pop_cma, popsize=pop_cma)),
        ("BasinCMA (CMA z; Adam z + emb)", init, dict(method="basincma", generations=(e - 1) // (pop_b * (k + 1)),
                                                       popsize=pop_b, adam_steps=k, lr=args.bg_lr,
                                                       cma_vars=("z",))),
        # pix2latent's schedule: BasinCMA on half the budget, then Adam from the best basin (last_grad_steps).
        ("BasinCMA, then Adam from the best", init,
         dict(method="basincma", generations=(e - 1) // 2 // (pop_b * (k + 1)), popsize=pop_b, adam_steps=k,
              lr=args.bg_lr, cma_vars=("z",),
              final_steps=e - 2 - (e - 1) // 2 // (pop_b * (k + 1)) * pop_b * (k + 1))),
    ]
    rows, out = [], {}
    for label, start, opts in runs:
        res = cma.search(model, targets, start, scales=scales, truncation_psi=t, seed=0, **opts)
        ps, ss = psnr_ssim(res.images, targets)
        zt = np.asarray(z_true)
        zerr = np.linalg.norm(res.latents["z"] - zt, axis=1) / np.linalg.norm(zt, axis=1)
        out[label] = {"evaluations": res.evaluations, "mse": res.losses.tolist(), "psnr": ps.tolist(),
                      "ssim": ss.tolist(), "z_rel_err": zerr.tolist(), "seconds": res.seconds,
                      "start_mse": res.initial_losses.tolist()}
        rows.append((label, res.evaluations, f"{res.losses.mean():.4f}", f"{ps.mean():.2f}", f"{ps.min():.2f}",
                     f"{ss.mean():.3f}", f"{zerr.mean():.3f}", f"{res.seconds:.0f}"))
    print(f"\n## BigGAN golden (biggan_128_ch8, random weights), {n} known-latent targets, truncation {t}, "
          f"~{e} generator evaluations per image (CMA pop {pop_cma}; BasinCMA pop {pop_b}, K={k})\n")
    print(table(["method", "evals/image", "mean MSE", "mean PSNR", "min PSNR", "mean SSIM", "z rel. error",
                 "seconds (compile incl.)"], rows))
    report["biggan"] = out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="pti,memory,throughput,biggan")
    ap.add_argument("--faces", type=int, default=6)
    ap.add_argument("--pivot-steps", type=int, default=200)
    ap.add_argument("--pti-steps", type=int, default=80)
    ap.add_argument("--pti-lr", type=float, default=1e-3)
    ap.add_argument("--tp-images", type=int, default=4)
    ap.add_argument("--tp-steps", type=int, default=10)
    ap.add_argument("--bg-images", type=int, default=3)
    ap.add_argument("--budget", type=int, default=401, help="generator evaluations per image (BigGAN part)")
    ap.add_argument("--basin-k", type=int, default=4)
    ap.add_argument("--basin-pop", type=int, default=8)
    ap.add_argument("--bg-lr", type=float, default=0.05)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    report = {"args": vars(args), "jax": jax.__version__, "device": str(jax.devices()[0])}
    t0 = time.perf_counter()
    if parts & {"pti", "memory", "throughput"}:
        model, x, piv = part_pti(args, report)
        if "memory" in parts:
            part_memory(args, report, model, x, piv)
        if "throughput" in parts:
            part_throughput(args, report, model, x, piv)
    if "biggan" in parts:
        part_biggan(args, report)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
