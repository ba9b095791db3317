"""python -m weights_convert SRC OUT_DIR: official checkpoint -> orbax params + jaxinv.json."""

from __future__ import annotations

import argparse
import sys
import time

from jaxinv.errors import JaxinvError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m weights_convert",
        description="Convert an official GAN checkpoint to a jaxinv model directory without torch. The format is "
        "detected from the file: NVlabs network pickles (.pkl, stylegan2-ada-pytorch / stylegan3; G_ema is taken), "
        "torch.save files (.pt/.bin: rosinality g_ema checkpoints, e4e/pSp, HF BigGAN pytorch_model.bin with "
        "config.json beside it, the DCGAN weights.tar), HF BigGAN folders, and golden <case>.weights.npz files "
        "(with <case>.init_kwargs.json beside them). Pickled code is never executed. Load the result with "
        "jaxinv.load(OUT_DIR).",
    )
    ap.add_argument("src", help="official checkpoint file or folder")
    ap.add_argument("out_dir", help="output directory (orbax params/ + jaxinv.json)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing converted model in OUT_DIR")
    args = ap.parse_args(argv)
    from jaxinv.checkpoint import save
    from jaxinv.models import from_source
    from weights_convert.source import read_source

    try:
        t0 = time.perf_counter()
        src = read_source(args.src)
        model = from_source(src)
        out = save(model, args.out_dir, overwrite=args.overwrite)
    except JaxinvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.src} -> {out} ({src.family}, {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
