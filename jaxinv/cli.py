"""The `jaxinv` command line: `jaxinv <command> ...` (also `python -m jaxinv ...`).

    jaxinv sample --out DIR|face.png [--n 16 --seed 0 --model default|PATH] [--grid]
    jaxinv invert --images DIR... --out DIR [--model default|PATH] [--space z|w|w+|s|p|pn] [--steps N]
                  [--restarts R] [--optimizer adam|lbfgs] [--loss mse=1,lpips=...] [--batch B] [--seed S]
                  [--crop x0,y0,x1,y1|dcgan-faces|none]

Adding a command: put a module with `add_arguments(parser)` and `run(args) -> int` somewhere and add one line
to COMMANDS (name -> ("module" or "module:object", help)). Only the chosen command's module is imported.
User errors (`JaxinvError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxinv import console

# name -> ("package.module" or "package.module:object", one-line help); the target has add_arguments / run.
COMMANDS: dict[str, tuple[str, str]] = {
    "sample": ("jaxinv.cli:Sample", "sample a generator (default: the embedded DCGAN): images and latents"),
    "invert": ("jaxinv.cli:Invert", "invert a folder of images into a generator's latent space"),
    "encode": ("jaxinv.cli:Encode", "encode a folder of images with an e4e / pSp encoder (one forward each)"),
    "edit": ("jaxinv.edit", "edit inverted StyleGAN codes along SeFa / GANSpace directions"),
    "convert": ("jaxinv.convert", "convert an official checkpoint to a jaxinv model directory (no torch needed)"),
    "align": ("jaxinv.align", "FFHQ-align face photos (face-api.js detector + 68 landmarks, the FFHQ quad crop)"),
}

DEFAULT_MODEL = "default"  # the embedded DCGAN face GAN (jaxinv/assets/dcgan_digiface64)


def _target(spec: str) -> Any:
    mod, _, obj = spec.partition(":")
    m = importlib.import_module(mod)
    return getattr(m, obj) if obj else m


def load_model(spec: str | None) -> Any:
    """`default` (or `dcgan_digiface64`) = the embedded DCGAN; an e4e / pSp checkpoint = its decoder; anything
    else goes to `jaxinv.load`."""
    return load_model_and_encoder(spec)[0]


def load_model_and_encoder(spec: str | None) -> tuple[Any, Any]:
    """(generator model, `jaxinv.encode.EncoderPair` when `spec` is an e4e / pSp checkpoint, else None)."""
    from jaxinv.encode import load_model_or_pair

    return load_model_or_pair(DEFAULT_MODEL if spec is None else spec)


_log = console.log


# ---------------------------------------------------------------------------------------------------------
# sample


class Sample:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--out", required=True,
                       help="a folder (one NNNNN.png + NNNNN.npz per sample), a .png with --n 1 (+ the .npz beside "
                       "it), or with --grid one .png sheet")
        p.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
        p.add_argument("--seed", type=int, default=0, help="z = normal(PRNGKey(seed), [n, z_dim]) (default 0)")
        p.add_argument("--model", default=DEFAULT_MODEL, help="'default' (embedded DCGAN) or a model path")
        p.add_argument("--grid", action="store_true", help="write one image sheet (white 2-px gaps), no latents")
        p.add_argument("--cols", type=int, default=None, help="--grid: columns (default ~sqrt(n))")
        p.add_argument("--batch", type=int, default=64, help="images per generator call (default 64)")
        return p

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        import jax
        import numpy as np

        from jaxinv.errors import ConfigError
        from jaxinv.generators import Generator
        from jaxinv.images import image_grid, save_png

        if args.n < 1 or args.batch < 1:
            raise ConfigError("--n and --batch must be >= 1")
        out = Path(args.out)
        png = out.suffix.lower() == ".png"
        if args.grid and not png:
            raise ConfigError(f"--out {out}: --grid writes one sheet: expected a .png file name")
        if args.cols is not None and not args.grid:
            raise ConfigError("--cols: only with --grid")
        if png and not args.grid and args.n != 1:
            raise ConfigError(f"--out {out}: a .png holds one sample; give a folder for --n {args.n} (or --grid)")
        if out.suffix and not png:
            raise ConfigError(f"--out {out}: expected a folder or a .png file name")
        if not out.parent.exists():
            raise ConfigError(f"--out {out}: folder {out.parent} does not exist")
        t0 = time.perf_counter()
        gen = Generator.from_model(load_model(args.model))
        if gen.c_dim:
            raise ConfigError(f"--model {args.model}: conditional generator (c_dim={gen.c_dim}) not supported by "
                              "sample")
        z = jax.random.normal(jax.random.PRNGKey(args.seed), (args.n, gen.z_dim))

        @jax.jit
        def forward(g: Generator, zz: jax.Array) -> tuple[jax.Array, jax.Array | None]:
            if not g.has_w:
                return g(zz), None
            ws = g.mapping(zz, None, g.truncation_psi)  # G(z) as G.__call__ computes it, keeping the W code
            return g.synthesis(ws), ws

        parts = [forward(gen, z[i:i + args.batch]) for i in range(0, args.n, args.batch)]
        imgs = np.concatenate([np.asarray(p[0]) for p in parts])
        if args.grid:
            save_png(out, image_grid(imgs, args.cols))
        else:
            ws = np.concatenate([np.asarray(p[1]) for p in parts]) if gen.has_w else None
            if not png:
                out.mkdir(exist_ok=True)
            files = [out] if png else [out / f"{i:05d}.png" for i in range(args.n)]
            for i, f in enumerate(files):
                save_png(f, imgs[i])
                latents = {"z": np.asarray(z[i]), **({"w": ws[i]} if ws is not None else {})}
                np.savez(f.with_suffix(".npz"), **latents, seed=args.seed, index=i)
        _log(f"{args.n} samples ({gen.family}, {gen.img_resolution}px, seed {args.seed}) -> {out} "
             f"({time.perf_counter() - t0:.1f} s)")
        return 0


# ---------------------------------------------------------------------------------------------------------
# invert


def _early_stop(text: str | None) -> tuple[float, int] | None:
    from jaxinv.errors import ConfigError

    if not text:
        return None
    try:
        tol, patience = text.split(",")
        return float(tol), int(patience)
    except ValueError:
        raise ConfigError(f"--early-stop {text!r}: expected TOL,PATIENCE (e.g. 1e-4,20)") from None


def _lane_group(text: str) -> int | None | str:
    if text in ("auto", "all"):
        return None if text == "all" else text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1, 'all' or 'auto'")


# `jaxinv invert`'s defaults of the options a preset sets (argparse's are None: given or not is known).
_INVERT_DEFAULTS: dict[str, Any] = {"noise": False, "steps": 400, "restarts": 1, "optimizer": "adam", "lr": 0.1,
                                    "schedule": "official", "noise_factor": 0.05, "loss": "mse", "seed": 0,
                                    "crop": "auto"}
# Options outside every preset: given with --preset, they are refused (dest -> flag).
_NOT_IN_PRESETS = {"sphere": "--sphere", "embedding": "--embedding", "init": "--init", "encoder": "--encoder",
                   "early_stop": "--early-stop", "degrade": "--degrade", "resize_first": "--resize-first",
                   "lbfgs_memory": "--lbfgs-memory"}
# Each solver's own options (dest -> flag): given with the other solver, they are refused.
_SOLVER_OPTIONS = {"adam": {"lr": "--lr", "schedule": "--schedule", "noise_factor": "--noise-factor"},
                   "lbfgs": {"lbfgs_memory": "--lbfgs-memory"}}


def _invert_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What `jaxinv invert` runs: --preset's settings (a given option that contradicts them is refused, one
    line naming it) or the options with their defaults. Sets the omitted options on `args` and returns
    {space, space_options, loss, optimizer (an optim object), steps, restarts, seed, start, crop, preset}."""
    from jaxinv import presets
    from jaxinv.errors import ConfigError
    from jaxinv.invert import parse_loss_spec
    from jaxinv.optim import LBFGS, Adam

    preset = None if args.preset is None else presets.get(args.preset)
    if preset is not None:
        name = f"--preset {preset.name}"
        for dest, flag in _NOT_IN_PRESETS.items():
            if getattr(args, dest, None) not in (None, False):
                raise ConfigError(f"{flag}: not part of {name}")
        opt = preset.optimizer
        want = [("space", "--space", preset.space, f"space {preset.space}"),
                ("noise", "--noise", dict(preset.space_options).get("noise", False), "free noise maps"),
                ("loss", "--loss", preset.loss, f"loss {preset.loss}"),
                ("steps", "--steps", preset.steps, f"{preset.steps} steps"),
                ("restarts", "--restarts", preset.restarts, f"{preset.restarts} restart(s)"),
                ("seed", "--seed", preset.seed, f"seed {preset.seed}"),
                ("start", "--start", preset.start, f"start {preset.start}"),
                ("crop", "--crop", preset.crop, f"crop {preset.crop}"),
                ("optimizer", "--optimizer", "adam", "adam"),
                ("lr", "--lr", opt.learning_rate, f"lr {opt.learning_rate}"),
                ("schedule", "--schedule", opt.schedule, f"schedule {opt.schedule}"),
                ("noise_factor", "--noise-factor", opt.initial_noise_factor,
                 f"noise factor {opt.initial_noise_factor}")]
        for dest, flag, value, what in want:
            given = getattr(args, dest)
            if given is None:
                pass
            elif not (dict(parse_loss_spec(given)) == dict(parse_loss_spec(value)) if dest == "loss"
                      else str(given).lower() == str(value).lower() if isinstance(value, str) else given == value):
                raise ConfigError(f"{flag} {given}: contradicts {name} ({what})")
            setattr(args, dest, value)
        for need in preset.needs:
            if need == "lpips" and not args.lpips_weights:
                raise ConfigError(f"{name}: needs --lpips-weights FILE|URL (the projector's VGG16, e.g. "
                                  "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/vgg16.pt)")
        return {"space": preset.space, "space_options": dict(preset.space_options), "loss": preset.loss,
                "optimizer": opt, "steps": preset.steps, "restarts": preset.restarts, "seed": preset.seed,
                "start": preset.start, "crop": preset.crop, "preset": preset}
    solver = args.optimizer or _INVERT_DEFAULTS["optimizer"]
    for dest, flag in _SOLVER_OPTIONS["lbfgs" if solver == "adam" else "adam"].items():
        if getattr(args, dest) is not None:
            raise ConfigError(f"{flag}: not an option of --optimizer {solver}")
    for dest, value in _INVERT_DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    options: dict[str, Any] = {}
    for dest in ("noise", "sphere", "embedding"):
        if getattr(args, dest):
            options[dest] = True
    if args.optimizer == "adam":
        optimizer = Adam(learning_rate=args.lr, schedule=args.schedule, initial_noise_factor=args.noise_factor)
    else:
        try:  # LBFGS checks memory_size; the message names the flag
            optimizer = LBFGS() if args.lbfgs_memory is None else LBFGS(memory_size=args.lbfgs_memory)
        except ConfigError:
            raise ConfigError(f"--lbfgs-memory {args.lbfgs_memory}: expected an integer >= 1") from None
    return {"space": args.space, "space_options": options, "loss": args.loss, "optimizer": optimizer,
            "steps": args.steps, "restarts": args.restarts, "seed": args.seed, "start": args.start, "crop": args.crop,
            "preset": None}


class Invert:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        from jaxinv import jobs, presets

        p.add_argument("--images", nargs="+", required=True, metavar="PATH",
                       help="image files and/or folders (searched recursively)")
        p.add_argument("--out", required=True, metavar="DIR",
                       help="output folder: DIR/<image>/{target,proj}.png, latent.npz (+ projected_w.npz for "
                            "spaces with ws), DIR/metrics.csv, DIR/errors.csv; a rerun resumes")
        p.add_argument("--model", default=DEFAULT_MODEL,
                       help="'default' (the embedded DCGAN face GAN), a converted directory, an official file or its "
                            "https:// URL (downloaded once into the cache)")
        p.add_argument("--preset", default=None, choices=sorted(presets.PRESETS),
                       help="official: the stylegan2-ada-pytorch projector (W with free noise maps, lpips=1,noise=1e5, "
                            "Adam with its schedule, 1000 steps, seed 303, start at w_avg, 1 restart, centre crop; "
                            "needs --lpips-weights); options that contradict it are refused")
        p.add_argument("--space", default=None,
                       help="z | w | w+ | s | p | pn | mgan:N@L (N codes composed after generator block L; DCGAN, "
                            "StyleGAN2/3, BigGAN) (default: z for z-only models, else w)")
        p.add_argument("--noise", action="store_true", default=None,
                       help="also optimise the per-layer noise maps (StyleGAN spaces; add noise=1e5 to --loss)")
        p.add_argument("--sphere", action="store_true", help="Z space on the sqrt(z_dim) hypersphere (PULSE)")
        p.add_argument("--class", dest="class_idx", type=int, default=None, metavar="N",
                       help="class of every image for class-conditional generators (BigGAN, conditional "
                            "StyleGAN2/3: one-hot c)")
        p.add_argument("--truncation", type=float, default=1.0, metavar="T",
                       help="truncation the images were sampled with (BigGAN: z ~ truncnorm(-2, 2) * T and its BN "
                            "statistics; StyleGAN: psi when rendering from Z) (default 1.0)")
        p.add_argument("--embedding", action="store_true",
                       help="BigGAN: also optimise the class embedding, starting at --class's (Huh et al.)")
        # Defaults of None tell a given option from an omitted one (--preset refuses contradicting ones); the
        # defaults proper are in _INVERT_DEFAULTS.
        p.add_argument("--steps", type=int, default=None, help="optimisation steps (default 400)")
        p.add_argument("--restarts", type=int, default=None, help="random restarts per image, best kept (default 1)")
        p.add_argument("--optimizer", default=None, choices=["adam", "lbfgs"], help="default adam")
        p.add_argument("--lr", type=float, default=None, help="Adam initial learning rate (default 0.1)")
        p.add_argument("--schedule", default=None, choices=["official", "constant"],
                       help="Adam lr schedule: the stylegan2-ada projector's ramps, or constant (default official)")
        p.add_argument("--noise-factor", type=float, default=None,
                       help="Adam latent noise at step 0 in units of the space's spread, ramped to 0 (default "
                            "0.05, official)")
        p.add_argument("--lbfgs-memory", type=int, default=None, metavar="M",
                       help="L-BFGS: curvature pairs kept (default 10)")
        p.add_argument("--loss", default=None,
                       help="weighted terms, e.g. mse=1,l1=0.5,lpips=1,id=0.1,noise=1e5,prior=1e-3 (default mse)")
        p.add_argument("--lpips-weights", default=None, metavar="FILE|URL",
                       help="VGG16 checkpoint for lpips (torchvision .pth or NVlabs vgg16.pt), a path or an https:// "
                            "URL (downloaded once into the cache)")
        p.add_argument("--lpips-heads", default=None, metavar="FILE|URL",
                       help="LPIPS v0.1 linear heads (vgg_v0.1.npz / .pth); default: from --lpips-weights")
        p.add_argument("--id-weights", default=None, metavar="DIR|URL",
                       help="face-ID network (face-api.js face_recognition_model-weights_manifest.json folder, or "
                            "that file's URL)")
        p.add_argument("--batch", type=int, default=8, help="images per compiled batch (default 8)")
        p.add_argument("--lane-group", default="auto", type=_lane_group, metavar="K|all|auto",
                       help="images optimised together inside a batch (groups run one after another); results "
                            "are the same bits for any --batch / --devices given K (default auto: 1 on CPU, all "
                            "on GPU/TPU)")
        p.add_argument("--seed", type=int, default=None, help="base seed; each image's draws derive from it and the "
                                                              "image's name (default 0)")
        p.add_argument("--start", default=None, choices=["center", "random"],
                       help="start of restart 0 (default: center = mean latent, random for Z)")
        p.add_argument("--init", default=None, choices=["encoder"],
                       help="encoder: restart 0 starts at an e4e / pSp encoder's W+ codes of the image (hybrid "
                            "inversion; the encoder of --model when it is an e4e / pSp checkpoint, else --encoder)")
        p.add_argument("--encoder", default=None, metavar="PATH|URL",
                       help="e4e / pSp checkpoint (.pt or converted folder) for --init encoder")
        p.add_argument("--early-stop", default=None, metavar="TOL,PATIENCE",
                       help="stop an image's restart after PATIENCE steps improving the loss by < TOL (relative)")
        p.add_argument("--crop", default=None,
                       help="x0,y0,x1,y1 (pixels, after --resize-first), a preset (dcgan-faces = resize 256, box "
                            "32,35,220,223) or none (centre square). Default: dcgan-faces for the embedded model, "
                            "else none")
        p.add_argument("--resize-first", type=int, default=None, metavar="S",
                       help="resize to SxS before cropping (with an x0,y0,x1,y1 crop)")
        p.add_argument("--grid", action="store_true", help="also write DIR/grid.png (target | reconstruction)")
        p.add_argument("--video", action="store_true",
                       help="also write DIR/<image>/proj.mp4 as the official --save-video: 10 fps, the target beside "
                            "G(w) after every --video-every steps (stored noise); needs pip install 'jaxinv[video]'")
        p.add_argument("--video-every", type=int, default=None, metavar="K",
                       help="--video: one frame per K steps (K divides --steps; default 1, as the official)")
        p.add_argument("--align", action="store_true",
                       help="FFHQ-align each photo to the model's resolution first (face detector + 68 landmarks, "
                            "jaxinv align); the quad goes to DIR/<image>/align.json, photos without a face to "
                            "errors.csv")
        p.add_argument("--paste-back", action="store_true",
                       help="with --align: also write DIR/<image>/pasted.png, the reconstruction's face warped back "
                            "into the photo (feathered; hair and background stay the photo's)")
        p.add_argument("--face-weights", default=None, metavar="DIR",
                       help="--align: face-api.js model folder (default: the embedded copy)")
        p.add_argument("--degrade", default=None, metavar="OP[+OP...]",
                       help="restoration: the images are observations of D(image) and every loss term compares "
                            "D(G(z)) with them; OP: mask:FILE or mask:DIR (white = observed; a folder holds one "
                            "mask per image, same name; aligned with the images by the same --crop) or "
                            "mask:center:S (a central SxS hole), mask:random:P[:SEED] (a fraction P of the pixels "
                            "missing), down:F[:bicubic|area|nvlabs] (default bicubic), gray, noise:SIGMA "
                            "(Gaussian, [-1, 1] units; last). Writes restored.png = G(z*) beside proj.png = D(G(z*))")
        jobs.add_job_arguments(p)
        return p

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        import dataclasses

        from jaxinv import degrade, jobs
        from jaxinv.errors import ConfigError

        settings = _invert_settings(args)  # --preset, or the options with their defaults
        if args.video_every is not None and not args.video:
            raise ConfigError("--video-every: only with --video")
        video_every = (args.video_every or 1) if args.video else None
        if video_every is not None:
            from jaxinv import video

            video.require()
            if video_every < 1 or args.steps % video_every:
                raise ConfigError(f"--video-every {video_every}: must be >= 1 and divide --steps {args.steps}")
        early = _early_stop(args.early_stop)
        info, refs = _start(args)  # the model is loaded after the cheap checks; its resolution sets the crop
        from jaxinv.distributed import Devices
        from jaxinv.generators import Generator
        from jaxinv.images import load_image, preprocess_for
        from jaxinv.invert import default_space

        model, pair = load_model_and_encoder(args.model)
        if args.encoder is not None and args.init != "encoder":
            raise ConfigError("--encoder: only used with --init encoder")
        encoder = None
        if args.init == "encoder":
            if args.encoder is not None:
                from jaxinv.encode import load_encoder

                pair = load_encoder(args.encoder)
            if pair is None:
                raise ConfigError(f"--init encoder: --model {args.model} is not an e4e / pSp checkpoint; name one "
                                  "with --encoder PATH")
            encoder = pair.net
        gen = Generator.from_model(model, args.truncation)
        if settings["preset"] is not None and not gen.noise_layers:
            raise ConfigError(f"--preset {args.preset}: needs a StyleGAN generator with noise inputs (--model "
                              f"{args.model} is {gen.family})")
        crop = args.crop
        pre = preprocess_for(model, crop, args.resize_first)
        if crop == "auto":
            crop = "dcgan-faces" if pre.crop is not None else "none"
        deg = degrade.parse(args.degrade, gen.img_resolution, gen.img_channels, pre)
        if deg is not None:  # the images are observations: loaded at D's output resolution
            res = gen.img_resolution
            pre = dataclasses.replace(pre, resolution=deg.out_shape((res, res, gen.img_channels))[0])
        space = settings["space"] or default_space(gen)
        space_options, optimizer = settings["space_options"], settings["optimizer"]
        resources = _resources(args)
        _log((f"preset {args.preset}: " if args.preset else "")
             + f"model {gen.family} {gen.img_resolution}px, space {space}"
             + (" + noise maps" if space_options.get("noise") else "") + f", {args.optimizer} x {args.steps} steps, "
             f"{args.restarts} restart(s), loss {args.loss}, seed {args.seed}, "
             + (("FFHQ alignment" + (f" then crop {crop}" if pre.crop is not None else "")) if args.align
                else f"crop {crop}")
             + (f" (images already {pre.resolution}x{pre.resolution} as they are)"
                if pre.as_is_at_resolution and not args.align else "")
             + (f", restart 0 from the {pair.encoder.family} encoder" if encoder is not None else "")
             + (f", degradation {deg.spec()}" if deg is not None else ""))

        t0 = time.perf_counter()
        devices = Devices.local(args.devices, args.restart_shards)
        loader = lambda ref: load_image(ref.path, pre)  # noqa: E731
        if args.paste_back and not args.align:
            raise ConfigError("--paste-back: needs --align (the quad to paste into)")
        if args.align:  # jaxinv/align.py: the FFHQ crop replaces --crop / --resize-first
            from jaxinv import align

            if deg is not None:
                raise ConfigError("--align: not with --degrade")
            names = jobs.output_names(refs)
            # a model trained on a crop of aligned faces (the embedded DCGAN's dcgan-faces) gets that crop after it
            box = (pre.crop, pre.resize_to) if pre.crop is not None and pre.resize_to else (None, None)
            loader = align.job_loader(align.load_face_nets(args.face_weights), gen.img_resolution,
                                      gen.img_channels, Path(args.out), names, *box)
            crop = "ffhq-align" if box[0] is None else f"ffhq-align+{crop}"
        spec = jobs.invert_spec(
            gen, loader, batch_size=args.batch, devices=devices,
            preprocess={"crop": crop, **_pre_dict(pre)}, max_reseeds=args.max_reseeds, space=space, loss=args.loss,
            optimizer=optimizer, steps=args.steps, restarts=args.restarts, seed=args.seed, start=args.start,
            early_stop=early, resources=resources, space_options=space_options, encoder=encoder,
            lane_group=args.lane_group, class_idx=args.class_idx, degradation=deg, progress=not args.no_progress,
            video_every=video_every)
        rep = jobs.run_job(spec, refs, Path(args.out), process=info, workers=args.workers, prefetch=args.prefetch,
                           progress=not args.no_progress, log=_log)
        if args.paste_back:
            _log(f"pasted back {align.paste_back_job(Path(args.out), names)} reconstruction(s) (pasted.png)")
        return _finish(rep, Path(args.out), "inverted", t0, "proj.png" if args.grid else None)


# ---------------------------------------------------------------------------------------------------------
# encode


class Encode:
    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        from jaxinv import jobs

        p.add_argument("--model", required=True, metavar="CKPT",
                       help="e4e / pSp checkpoint: official .pt, or a folder from python -m weights_convert")
        p.add_argument("--images", nargs="+", required=True, metavar="PATH",
                       help="image files and/or folders (searched recursively)")
        p.add_argument("--out", required=True, metavar="DIR",
                       help="output folder: DIR/<image>/{target,proj,proj_256}.png, latent.npz, projected_w.npz, "
                            "DIR/metrics.csv, DIR/errors.csv; a rerun resumes")
        p.add_argument("--decoder", default=None, metavar="DIR",
                       help="converted generator to decode with (default: the checkpoint's decoder)")
        p.add_argument("--batch", type=int, default=8, help="images per compiled batch (default 8)")
        p.add_argument("--grid", action="store_true", help="also write DIR/grid.png (input | reconstruction)")
        jobs.add_job_arguments(p)
        return p

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from jaxinv import jobs
        from jaxinv.distributed import Devices
        from jaxinv.encode import encode_spec, load_encoder
        from jaxinv.images import load_image

        info, refs = _start(args)
        out = Path(args.out)
        pair = load_encoder(args.model, args.decoder)
        pre = pair.preprocess()
        if pair.decoder is None:
            _log(f"{args.model}: no decoder, writing codes only")
        t0 = time.perf_counter()
        devices = Devices.local(args.devices, 1)
        spec = encode_spec(pair, lambda ref: load_image(ref.path, pre), batch_size=args.batch, devices=devices,
                           preprocess=_pre_dict(pre))
        rep = jobs.run_job(spec, refs, out, process=info, workers=args.workers, prefetch=args.prefetch,
                           progress=not args.no_progress, log=_log)
        return _finish(rep, out, "encoded", t0, "proj_256.png" if args.grid else None)


def _start(args: argparse.Namespace) -> tuple[Any, list]:
    """A batch job's cheap checks before any model is loaded: options, multi-host set-up, the image list, the
    output folder. Returns (process info, image refs)."""
    from jaxinv import jobs
    from jaxinv.errors import ConfigError

    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch}: must be >= 1")
    info = jobs.start_job(args)
    refs = jobs.list_images(args.images)
    jobs.check_writable(Path(args.out))
    return info, refs


def _finish(rep: Any, out: Path, verb: str, t0: float, grid_recon: str | None) -> int:
    """A batch job's summary line and exit status (3 when some images failed), after the optional grid."""
    if grid_recon:
        _write_grid(out, grid_recon)
    _log(f"{rep.done} {verb}, {rep.skipped} already done, {rep.errors} unreadable, {rep.flagged} failed "
         f"-> {out} ({time.perf_counter() - t0:.1f} s)")
    if rep.errors or rep.flagged:
        _log(f"see {out / 'errors.csv'}")
        return 3
    return 0


def _pre_dict(pre) -> dict:
    d = {"resolution": pre.resolution, "resize_to": pre.resize_to, "crop": list(pre.crop) if pre.crop else None,
         "channels": pre.channels}
    if (pre.resample, pre.stretch) != ("lanczos", False):  # only then: earlier manifests keep matching
        d.update(resample=pre.resample, stretch=pre.stretch)
    if pre.as_is_at_resolution:
        d["as_is_at_resolution"] = True
    return d


def _resources(args: argparse.Namespace) -> dict[str, Any]:
    from jaxinv.errors import ConfigError
    from jaxinv.invert import parse_loss_spec

    res: dict[str, Any] = {}
    names = {name for name, _ in parse_loss_spec(args.loss)}
    if "lpips" in names:
        if not args.lpips_weights:
            raise ConfigError("--loss lpips: needs --lpips-weights FILE (a VGG16 checkpoint)")
        from jaxinv.losses import load_lpips

        res["lpips"] = load_lpips(args.lpips_weights, args.lpips_heads)
    if names & {"id", "identity"}:
        if not args.id_weights:
            raise ConfigError("--loss id: needs --id-weights DIR (face-ID network)")
        from jaxinv.losses import load_face_id

        res["id"] = load_face_id(args.id_weights)
    return res


def _write_grid(out: Path, recon: str) -> None:
    import numpy as np
    from PIL import Image

    from jaxinv.images import image_grid, save_png

    pairs = []
    for d in sorted(p for p in out.iterdir() if (p / recon).is_file() and (p / "target.png").is_file()):
        t = np.asarray(Image.open(d / "target.png"), np.float32) / 127.5 - 1
        r = np.asarray(Image.open(d / recon), np.float32) / 127.5 - 1
        pairs += [t if t.ndim == 3 else t[..., None], r if r.ndim == 3 else r[..., None]]
    if pairs:
        save_png(out / "grid.png", image_grid(np.stack(pairs), cols=2 * max(1, min(4, len(pairs) // 2))))


# ---------------------------------------------------------------------------------------------------------
# entry point


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaxinv", description="Compiled, batched GAN inversion in JAX.")
    parser.add_argument("--version", action="version", version=f"jaxinv {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (target, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            _target(target).add_arguments(sp)
            sp.add_argument("--quiet", action="store_true", help="print errors only (no log, no progress bar)")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jaxinv")
    except PackageNotFoundError:
        return "(not installed)"


# Library errors name API arguments; the command line reports its own flags for them.
_FLAGS = {"truncation_psi": "--truncation", "class_idx": "--class", "embedding=True": "--embedding",
          "degradation=": "--degrade "}
# (loading, input, devices and hosts)
_FLAGS.update({"overwrite=True": "--overwrite", "paths=": "--images ", "batch_size=": "--batch ", "crop=": "--crop ",
               "optimizer=": "--optimizer ", "devices=": "--devices ", "restart_shards=": "--restart-shards ",
               "num_processes=": "--num-processes ", "num_processes": "--num-processes", "process_id=": "--process-id ",
               "process_id": "--process-id", "coordinator=": "--coordinator "})
# (methods: invert, spaces, losses, jobs, edit)
_FLAGS.update({"loss=": "--loss ", "steps=": "--steps ", "restarts=": "--restarts ", "space=": "--space ",
               "out_dir=": "--out ", "max_reseeds=": "--max-reseeds ", "init from encoder": "--init encoder",
               "resources['lpips']": "--lpips-weights FILE", "resources['id']": "--id-weights DIR",
               "direction=": "--direction ", "layers=": "--layers ", "video_every=": "--video-every "})
_FLAG_RE = re.compile(r"\b(" + "|".join(re.escape(k) for k in _FLAGS) + r")")


def flag_words(message: str) -> str:
    """A library error message with API argument names replaced by the command's flags."""
    return _FLAG_RE.sub(lambda m: _FLAGS[m.group(1)], message)


def main(argv: Sequence[str] | None = None) -> int:
    from jaxinv.errors import JaxinvError

    if argv is None:  # the real command line (not an in-process call): huge pages for XLA's buffers
        from jaxinv._hugepages import reexec_with_hugepages

        try:
            reexec_with_hugepages(sys.argv[1:])
        except JaxinvError as e:
            print(f"jaxinv: error: {e}", file=sys.stderr)
            return 2
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    console.quiet = bool(getattr(args, "quiet", False))
    if console.quiet and hasattr(args, "no_progress"):
        args.no_progress = True
    out = Path(args.out) if isinstance(getattr(args, "out", None), str) else None
    out_existed = out is None or out.exists()
    try:
        return int(_target(COMMANDS[args.command][0]).run(args) or 0)
    except JaxinvError as e:
        print(f"jaxinv: error: {flag_words(str(e))}", file=sys.stderr)
        if not out_existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed start leaves no empty output folder behind
        return 2
    except KeyboardInterrupt:
        print("jaxinv: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
