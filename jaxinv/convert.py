"""`jaxinv convert SRC OUT_DIR` (also `python -m weights_convert SRC OUT_DIR`): official checkpoint -> orbax params +
jaxinv.json. The readers in `weights_convert` hand over `Source`s; the models are built and saved here."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from jaxinv import download
from jaxinv.checkpoint import save
from jaxinv.models import from_source
from weights_convert.source import read_sources

DESCRIPTION = (
    "Convert an official GAN checkpoint to a jaxinv model directory without torch. The format is detected from the "
    "file: NVlabs network pickles (.pkl, stylegan2-ada-pytorch / stylegan3; G_ema is taken; TF-era Gs), torch.save "
    "files (.pt/.bin: rosinality g_ema checkpoints, e4e/pSp, HF BigGAN pytorch_model.bin with config.json beside "
    "it, the DCGAN weights.tar), HF BigGAN folders, and golden <case>.weights.npz files (with "
    "<case>.init_kwargs.json beside them). Pickled code is never executed. An e4e / pSp checkpoint becomes "
    "OUT_DIR/encoder and OUT_DIR/decoder. Load the result with jaxinv.load(OUT_DIR).")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = DESCRIPTION
    p.add_argument("src", help="official checkpoint file or folder, or a file's https:// URL (downloaded once into "
                   "the cache)")
    p.add_argument("out_dir", help="output directory (orbax params/ + jaxinv.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing converted model in OUT_DIR")
    return p


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    models = [from_source(src) for src in read_sources(download.local_path(args.src))]
    if len(models) == 1:
        outs = [save(models[0], args.out_dir, overwrite=args.overwrite)]
    else:  # an e4e / pSp checkpoint: encoder and decoder side by side
        outs = [save(m, Path(args.out_dir) / part, overwrite=args.overwrite)
                for m, part in zip(models, ("encoder", "decoder"), strict=True)]
    made = ", ".join(f"{out} ({m.family})" for out, m in zip(outs, models, strict=True))
    print(f"{args.src} -> {made}, {time.perf_counter() - t0:.1f} s", file=sys.stdout)
    return 0
