"""Real-data evidence: invert real aligned faces into the real DCGAN face GAN (the embedded default model).

Faces: shared/realdata/images/faces_aligned (70 FFHQ/CelebA-HQ-style photos), preprocessed with the realdata
README recipe (resize 256, crop x 32..220 / y 35..223, resize 64, Lanczos) = `--crop dcgan-faces`.
Configurations, all z-space, at the same step budget (--steps, 400 by default):

    adam-baseline   Adam lr 0.05 constant, no latent noise, 1 random start, MSE   (the README's PyTorch check)
    adam-official   Adam with the stylegan2-ada projector schedule (lr 0.1 ramps, latent noise 0.05), 1 start
    adam-restarts   adam-official with R random starts, best final loss kept
    lbfgs           optax L-BFGS (zoom line search), 1 random start, MSE
    lbfgs-restarts  L-BFGS with R random starts
    lbfgs+id        L-BFGS, MSE + identity loss (dlib face-ID ResNet, face-api.js weights)

Reported per configuration: mean / min PSNR and SSIM (images in [0, 1]), mean face-ID cosine similarity
between target and reconstruction, loss evaluations per image, wall time. Every lane's random draws derive
from (seed, image index, restart), so all configurations start restart r of image i from the same z.

    python benchmarks/realdata_dcgan.py [--n 70] [--every 1] [--steps 400] [--restarts 4] [--configs a,b,...]
                                        [--out F.md]
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from _realfaces import FACES, SHARED, dcgan_faces  # benchmarks/_realfaces.py; puts the repo on sys.path

from jaxinv import metrics
from jaxinv.invert import MSE, Identity, invert
from jaxinv.losses import face_descriptor_from_image, load_face_id
from jaxinv.optim import LBFGS, Adam

CONFIGS = ("adam-baseline", "adam-official", "adam-restarts", "lbfgs", "lbfgs-restarts", "lbfgs+id")


def config(name: str, restarts: int, id_params, id_weight: float):
    mse = [(1.0, MSE())]
    table = {
        "adam-baseline": (Adam(learning_rate=0.05, schedule="constant", initial_noise_factor=0.0), 1, mse),
        "adam-official": (Adam(), 1, mse),
        "adam-restarts": (Adam(), restarts, mse),
        "lbfgs": (LBFGS(), 1, mse),
        "lbfgs-restarts": (LBFGS(), restarts, mse),
        "lbfgs+id": (LBFGS(), 1, mse + [(id_weight, Identity(params=id_params))]),
    }
    return table[name]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", default=str(FACES))
    ap.add_argument("--id-weights", default=str(SHARED / "weights" / "face_id_dlib_resnet_faceapi"))
    ap.add_argument("--n", type=int, default=70, help="at most N faces (default all 70)")
    ap.add_argument("--every", type=int, default=1, help="take every K-th face of the sorted list (default 1)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--id-weight", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args(argv)

    model, x, names = dcgan_faces(args.faces, args.every, args.n)
    id_params = load_face_id(args.id_weights)
    desc = jax.jit(lambda p, im: face_descriptor_from_image(p, im))
    target01 = jnp.asarray((x + 1) / 2)
    target_desc = desc(id_params, jnp.asarray(x))

    rows = []
    header = ("| config | steps | restarts | loss evals / image | mean PSNR | min PSNR | mean SSIM | min SSIM | "
              "mean ID cos | seconds |\n|---|---|---|---|---|---|---|---|---|---|")
    title = (f"{len(x)} faces (every {args.every}th of {args.faces}), crop dcgan-faces, steps {args.steps}, "
             f"seed {args.seed}, id weight {args.id_weight}, command: python benchmarks/realdata_dcgan.py "
             f"{' '.join(sys.argv[1:] if argv is None else argv)}")
    print(title, flush=True)
    print(header, flush=True)
    for name in args.configs.split(","):
        opt, restarts, loss = config(name, args.restarts, id_params, args.id_weight)
        t0 = time.perf_counter()
        res = invert(model, x, space="z", loss=loss, optimizer=opt, steps=args.steps, restarts=restarts,
                     seed=args.seed, batch_size=args.batch)
        secs = time.perf_counter() - t0
        rec01 = jnp.clip((jnp.asarray(res.images) + 1) / 2, 0, 1)
        psnr = np.asarray(metrics.psnr(rec01, target01))
        ssim = np.asarray(metrics.ssim(rec01, target01))
        rec_desc = desc(id_params, jnp.asarray(res.images))
        idcos = np.asarray(jnp.sum(rec_desc * target_desc, -1)
                           / (jnp.linalg.norm(rec_desc, axis=-1) * jnp.linalg.norm(target_desc, axis=-1)))
        evals = res.evals[np.arange(len(x))].sum(axis=1).mean()
        row = (f"| {name} | {args.steps} | {restarts} | {evals:.0f} | {psnr.mean():.2f} | {psnr.min():.2f} | "
               f"{ssim.mean():.3f} | {ssim.min():.3f} | {idcos.mean():.3f} | {secs:.0f} |")
        rows.append((name, psnr))
        print(row, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                if len(rows) == 1:
                    f.write(f"\n{title}\n\n{header}\n")
                f.write(row + "\n")
    base = dict(rows).get("adam-baseline")
    if base is not None:
        for name, p in rows:
            if name != "adam-baseline":
                line = (f"{name}: mean PSNR {p.mean() - base.mean():+.2f} dB vs adam-baseline "
                        f"(per image: min {np.min(p - base):+.2f}, max {np.max(p - base):+.2f})")
                print(line)
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(f"\n{line}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
