"""Known-latent recovery on a golden StyleGAN2: invert images the generator made from known W / W+ codes and
report how far the recovered codes are from the true ones as the steps go on.

Generator: shared/golden/sg2ada_r64_skip (official weights layout, random but non-trivial weights).
Targets: W case  - ws = mapping(z) for z = RandomState(seed).randn(n, z_dim) (one w per image),
         W+ case - the golden `wplus` (a distinct w per layer; 3 images).
Raw generator outputs are used as targets (this random network's images exceed [-1, 1]); loss = pixel MSE,
one start at w_avg of mapped samples; optimizers: Adam with the official projector schedule (lr ramps, latent
noise) and L-BFGS (optax, zoom line search), the same step budget. The latent is recorded every --every steps
(`invert(record_every=...)`); step 0 is the start (w_avg). Columns: RMS over images and elements of the latent
error, that error relative to the start's, and the RMS pixel error of the image the latent generates.

    python benchmarks/recovery_sg2.py [--steps 400] [--every 50] [--n 4] [--optimizers adam,lbfgs]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jaxinv.generators import Generator  # noqa: E402
from jaxinv.invert import invert  # noqa: E402
from jaxinv.models import from_source  # noqa: E402
from jaxinv.optim import LBFGS, Adam  # noqa: E402
from weights_convert.source import read_golden_npz  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "golden"
OPTIMIZERS = {"adam": ("Adam (official schedule)", Adam), "lbfgs": ("L-BFGS (zoom line search)", LBFGS)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", default=str(GOLDEN / "sg2ada_r64_skip"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--n", type=int, default=4, help="W-case images")
    ap.add_argument("--seed", type=int, default=1, help="RandomState seed of the W-case z's")
    ap.add_argument("--optimizers", default="adam,lbfgs", help="comma list of: adam, lbfgs")
    args = ap.parse_args(argv)
    optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    for o in optimizers:
        if o not in OPTIMIZERS:
            ap.error(f"--optimizers: unknown optimizer {o!r} (choose from {', '.join(OPTIMIZERS)})")
    if args.steps % args.every:
        ap.error(f"--every {args.every} must divide --steps {args.steps}")

    model = from_source(read_golden_npz(args.case + ".weights.npz"))
    gen = Generator.from_model(model)
    synth = jax.jit(lambda g, ws: g.synthesis(ws))
    z = np.random.RandomState(args.seed).randn(args.n, gen.z_dim).astype(np.float32)
    w_true = np.asarray(jax.jit(lambda g, zz: g.mapping(zz))(gen, jnp.asarray(z)))  # [n, num_ws, w_dim]
    with np.load(args.case + ".io.npz") as io:
        wplus_true = io["wplus"]
    cases = [("w", w_true, w_true[:, 0]), ("w+", wplus_true, wplus_true)]
    print(f"{Path(args.case).name}: {args.steps} steps, MSE, one start at w_avg, latent recorded every "
          f"{args.every} steps; command: python benchmarks/recovery_sg2.py "
          f"{' '.join(sys.argv[1:] if argv is None else argv)}")
    print("| space | optimizer | images | step | RMS(w - w_true) | RMS(w - w_true) / RMS(w_true - w_avg) | "
          "image RMSE |")
    print("|---|---|---|---|---|---|---|")
    for (space, ws, true_latent), opt_name in [(c, o) for c in cases for o in optimizers]:
        target = np.asarray(synth(gen, jnp.asarray(ws)))
        label, opt_cls = OPTIMIZERS[opt_name]
        t0 = time.perf_counter()
        res = invert(model, target, space=space, loss="mse", optimizer=opt_cls(), steps=args.steps, seed=0,
                     record_every=args.every, space_options={"num_samples": 2000})
        w_avg = np.asarray(res.space.w_avg)
        scale = np.sqrt(np.mean((true_latent - w_avg) ** 2))
        traj = res.trajectory["w"]  # [n, T, ...]
        start = np.broadcast_to(w_avg, true_latent.shape)
        rows = [(0, start)] + [((k + 1) * args.every, traj[:, k]) for k in range(traj.shape[1])]
        for step, lat in rows:
            ws_hat = lat if space == "w+" else np.broadcast_to(lat[:, None], ws.shape)
            img = np.asarray(synth(gen, jnp.asarray(ws_hat, jnp.float32)))
            err = np.sqrt(np.mean((lat - true_latent) ** 2))
            print(f"| {space} | {label} | {len(ws)} | {step} | {err:.4g} | {err / scale:.4g} | "
                  f"{np.sqrt(np.mean((img - target) ** 2)):.4g} |", flush=True)
        print(f"<!-- {space} {opt_name}: {time.perf_counter() - t0:.0f} s, loss evaluations per image "
              f"{res.evals.sum(axis=1).mean():.0f} -->", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
