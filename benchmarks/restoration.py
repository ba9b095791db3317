"""Restoration of real faces through known degradations with the real DCGAN face GAN (issue 18).

Faces: shared/realdata/images/faces_aligned, preprocessed as its README says (`--crop dcgan-faces`: resize 256,
crop x 32..220 / y 35..223, resize 64). Each task degrades the 64 px face (the original) with a known operator
(`jaxinv.degrade`), inverts the observation through that operator (every loss term compares D(G(z)) with it),
and scores the restored G(z*) with PSNR and SSIM (images in [0, 1]) **against the original**:

    reconstruction  no degradation                      baseline: -
    inpaint-center  central 24x24 hole (mask)           baseline: hole filled with the mean of the observed pixels
    inpaint-random  random 50% of the pixels kept       baseline: missing pixels filled with the observed mean
    sr4             down:4 bicubic (16 px observation)   baseline: bicubic upsampling (pillow) of the observation
    colorize        gray (ITU-R 601 luma)                baseline: the gray image itself

Every method of a task runs with the same budget: the same solver (Adam, the official projector schedule), the
same steps, restarts and seed, and MSE loss; spaces: z (single code) and mgan:N@2 (N codes composed after the
DCGAN's second block). Writes a markdown table and a picture grid (rows: faces; columns: original, observation,
baseline, each space's restoration).

    python benchmarks/restoration.py [--n 8] [--every 8] [--steps 200] [--restarts 1] [--recon-spaces z,...]
                                     [--spaces z,mgan:16@2] [--tasks ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from _realfaces import FACES, ROOT, dcgan_faces  # benchmarks/_realfaces.py; puts the repo on sys.path
from PIL import Image

from jaxinv import degrade, images, metrics
from jaxinv.invert import invert
from jaxinv.optim import Adam

TASKS = ("reconstruction", "inpaint-center", "inpaint-random", "sr4", "colorize")


def _masked_mean_fill(obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None] if mask.ndim == 3 else mask[None, :, :, None]
    mean = (obs * m).sum(axis=(1, 2), keepdims=True) / m.sum(axis=(1, 2), keepdims=True)
    return np.where(m > 0, obs, mean)


def _bicubic_up(obs: np.ndarray, size: int) -> np.ndarray:
    return np.stack([np.stack([np.asarray(Image.fromarray(o[:, :, c], mode="F").resize((size, size), Image.BICUBIC))
                               for c in range(o.shape[2])], axis=-1) for o in obs])


def task(name: str, x: np.ndarray, seed: int) -> tuple[degrade.Degradation | None, np.ndarray, np.ndarray | None]:
    """(degradation, observation, baseline restoration at 64 px or None)."""
    n = len(x)
    if name == "reconstruction":
        return None, x, None
    if name == "inpaint-center":
        hole = np.ones((64, 64), np.float32)
        hole[20:44, 20:44] = 0
        deg = degrade.Degradation((degrade.Mask(hole),))
        obs = np.asarray(deg(jnp.asarray(x)))
        return deg, obs, _masked_mean_fill(obs, hole)
    if name == "inpaint-random":
        masks = (np.random.RandomState(seed).uniform(size=(n, 64, 64)) < 0.5).astype(np.float32)
        deg = degrade.Degradation((degrade.Mask(masks, per_image=True),))
        obs = np.asarray(deg(jnp.asarray(x), (jnp.asarray(masks),)))
        return deg, obs, _masked_mean_fill(obs, masks)
    if name == "sr4":
        deg = degrade.parse("down:4", 64)
        obs = np.asarray(deg(jnp.asarray(x)))
        return deg, obs, _bicubic_up(obs, 64)
    if name == "colorize":
        deg = degrade.parse("gray", 64)
        obs = np.asarray(deg(jnp.asarray(x)))
        return deg, obs, obs
    raise SystemExit(f"unknown task {name!r} (choose from {', '.join(TASKS)})")


def masks_of(deg: degrade.Degradation, n: int) -> np.ndarray:
    m = deg.ops[0].mask
    return (m if deg.ops[0].per_image else np.broadcast_to(m, (n, *m.shape)))[..., None]


def score(img: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, s = metrics.psnr_ssim_signed(jnp.asarray(np.clip(img, -1, 1)), jnp.asarray(ref))
    return np.asarray(p), np.asarray(s)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", default=str(FACES))
    ap.add_argument("--n", type=int, default=8, help="at most N faces (default 8)")
    ap.add_argument("--every", type=int, default=8, help="take every K-th face of the sorted list (default 8)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--spaces", default="z,mgan:16@2", help="spaces of the degradation tasks")
    ap.add_argument("--recon-spaces", default="z,mgan:4@2,mgan:8@2,mgan:16@2", help="spaces of reconstruction")
    ap.add_argument("--grid-faces", type=int, default=4)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "restoration"))
    args = ap.parse_args(argv)

    model, x, names = dcgan_faces(args.faces, args.every, args.n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/restoration.py " + " ".join(sys.argv[1:] if argv is None else argv)
    title = (f"{len(x)} real faces (every {args.every}th of faces_aligned, crop dcgan-faces), embedded DCGAN, Adam "
             f"(official schedule) x {args.steps} steps x {args.restarts} restart(s), MSE, seed {args.seed}; "
             f"PSNR / SSIM of the restoration against the original. Command: `{cmd}`")
    header = ("| task | method | mean PSNR | min PSNR | mean SSIM | observed pixels kept: mean PSNR / SSIM | seconds |"
              "\n|---|---|---|---|---|---|---|")
    lines = [title, "", header]
    print(title, "\n", header, flush=True)
    g = min(args.grid_faces, len(x))
    grid_rows = []
    for name in args.tasks.split(","):
        deg, obs, base = task(name, x, args.seed)
        cols = [x[:g]]
        if deg is not None:
            shown = obs if obs.shape == x.shape else np.repeat(np.repeat(obs, 64 // obs.shape[1], 1),
                                                               64 // obs.shape[2], 2)
            cols.append(shown[:g])
            p, s = score(shown if base is None else base, x)
            label = {"inpaint-center": "masked-mean fill", "inpaint-random": "masked-mean fill",
                     "sr4": "bicubic upsampling", "colorize": "grayscale input"}[name]
            row = f"| {name} | baseline: {label} | {p.mean():.2f} | {p.min():.2f} | {s.mean():.3f} | - | - |"
            lines.append(row)
            print(row, flush=True)
            cols.append(base[:g])
        spaces = args.recon_spaces if deg is None else args.spaces
        for sp in spaces.split(","):
            t0 = time.perf_counter()
            res = invert(model, obs, space=sp, degradation=deg, optimizer=Adam(), steps=args.steps,
                         restarts=args.restarts, seed=args.seed, loss="mse")
            secs = time.perf_counter() - t0
            p, s = score(res.images, x)
            kept = "-"
            if name.startswith("inpaint"):  # the usual composite: observed pixels, G(z*) in the holes
                pk, sk = score(obs + (1 - masks_of(deg, len(x))) * res.images, x)
                kept = f"{pk.mean():.2f} / {sk.mean():.3f}"
            row = f"| {name} | {sp} | {p.mean():.2f} | {p.min():.2f} | {s.mean():.3f} | {kept} | {secs:.0f} |"
            lines.append(row)
            print(row, flush=True)
            cols.append(res.images[:g])
        grid_rows.append(np.concatenate(cols, axis=2))  # faces x (columns side by side)
        (out / "table.md").write_text("\n".join(lines) + "\n")
    width = max(r.shape[2] for r in grid_rows)
    padded = [np.pad(r, ((0, 0), (0, 0), (0, width - r.shape[2]), (0, 0)), constant_values=1.0) for r in grid_rows]
    images.save_png(out / "grid.png", images.image_grid(np.concatenate(padded), cols=1))
    print(f"-> {out / 'table.md'}, {out / 'grid.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
