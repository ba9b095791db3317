"""e4e / pSp checkpoints (``torch.save`` of ``{'state_dict', 'opts', 'latent_avg', ...}``) -> encoder + decoder.

Layout (golden PICKLE_FORMAT.md section 3): ``state_dict`` keys ``encoder.*`` (IR-SE50 encoder) and ``decoder.*``
(a rosinality ``Generator(size, 512, 8, channel_multiplier=2)``); ``opts`` = ``vars(training options)``;
``latent_avg`` ``[n_styles, 512]`` when trained with ``start_from_latent_avg``. Read without torch.

``python -m weights_convert CKPT OUT_DIR`` writes ``OUT_DIR/encoder`` and ``OUT_DIR/decoder``
(two converted model directories, each loadable with ``jaxinv.load``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from weights_convert.base import Source, check_tensors, is_options, malformed_checkpoint, options, provenance
from weights_convert.errors import CheckpointError
from weights_convert.rosinality import generator_init
from weights_convert.torch_formats import load_torch

# Options whose presence tells the two repos apart when encoder_type alone does not.
_E4E_ONLY_OPTS = ("stylegan_size", "progressive_steps", "delta_norm", "w_discriminator_lambda")
_E4E_HEADS = ("Encoder4Editing", "SingleStyleCodeEncoder")
_PSP_HEADS = ("BackboneEncoderUsingLastLayerIntoW", "BackboneEncoderUsingLastLayerIntoWPlus")


def _split(path: Path, state_dict: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``encoder.*`` / ``decoder.*`` with the prefix removed (the official ``get_keys``)."""
    enc: dict[str, np.ndarray] = {}
    dec: dict[str, np.ndarray] = {}
    other = []
    for k, v in state_dict.items():
        k = str(k)
        head, _, rest = k.partition(".")
        if head not in ("encoder", "decoder") or not rest:
            other.append(k)
            continue
        if not isinstance(v, np.ndarray):
            raise CheckpointError(f"{path}: state_dict[{k!r}] is {type(v).__name__}, expected a tensor")
        (enc if head == "encoder" else dec)[rest] = v
    if other:
        raise CheckpointError(f"{path}: state_dict names outside encoder./decoder.: {other[:6]}")
    if not enc:
        raise CheckpointError(f"{path}: state_dict has no encoder.* tensors")
    return enc, dec


def _family(opts: dict[str, Any]) -> str:
    head = opts.get("encoder_type")
    if head in _E4E_HEADS:
        return "e4e"
    if head in _PSP_HEADS:
        return "psp"
    return "e4e" if any(k in opts for k in _E4E_ONLY_OPTS) else "psp"


def _size(opts: dict[str, Any], family: str, path: Path) -> int:
    # pSp's inference script defaults output_size to 1024 when older checkpoints lack it; e4e defaults
    # stylegan_size to 1024.
    key = "stylegan_size" if family == "e4e" else "output_size"
    size = opts.get(key)
    size = 1024 if size is None else size
    try:
        size = int(size)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: opts.{key}={size!r} is not a resolution") from None
    if size < 4 or size & (size - 1):
        raise CheckpointError(f"{path}: opts.{key}={size} is not a power of two")
    return size


def is_encoder_checkpoint(obj: Any) -> bool:
    """Whether a read torch.save object is an e4e / pSp checkpoint (a state_dict with encoder.* tensors)."""
    return isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and any(
        str(k).startswith("encoder.") for k in obj["state_dict"])


def split_checkpoint(path: str | Path, obj: Any) -> tuple[Source, Source]:
    """(encoder Source, decoder Source) from an already-read e4e / pSp checkpoint object."""
    path = Path(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not an e4e/pSp checkpoint (expected a dict with a 'state_dict' dict)")
    raw_opts = obj.get("opts")
    if raw_opts is None:
        raise CheckpointError(f"{path}: e4e/pSp checkpoint without 'opts' (the training options)")
    # a dict (vars(opts)), the reader's argparse.Namespace stand-in, or (built in code) a real Namespace
    if not is_options(raw_opts):
        raise CheckpointError(f"{path}: e4e/pSp 'opts' is a {type(raw_opts).__name__}, expected a dict of options")
    opts = options(raw_opts)
    head = opts.get("encoder_type")
    if head is not None and not isinstance(head, str):
        raise CheckpointError(f"{path}: opts.encoder_type={head!r} is not a class name")
    enc_sd, dec_sd = _split(path, obj["state_dict"])
    family = _family(opts)
    size = _size(opts, family, path)
    n_styles = 2 * int(math.log2(size)) - 2
    head = opts.get("encoder_type") or ("Encoder4Editing" if family == "e4e" else "GradualStyleEncoder")

    latent_avg = obj.get("latent_avg")
    # split_checkpoint also serves objects built in code (tests): no file to hash then
    prov = (provenance(path, "torch_zip", repo=family) if path.is_file() else
            {"source": str(path.resolve()), "format": "torch_zip", "repo": family})
    if latent_avg is not None:
        if not isinstance(latent_avg, np.ndarray):
            raise CheckpointError(f"{path}: latent_avg is {type(latent_avg).__name__}, expected a tensor")
        latent_avg = np.asarray(latent_avg, np.float32)
        enc_sd["latent_avg"] = latent_avg
    enc_init = dict(opts)
    try:
        n_styles = int(opts.get("n_styles") or n_styles)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: opts.n_styles={opts.get('n_styles')!r} is not a number of styles") from None
    enc_init.update(encoder_type=head, n_styles=n_styles)
    if family == "psp" and opts.get("learn_in_w") is None:
        enc_init["learn_in_w"] = False  # the pSp inference scripts' default
    encoder = Source(family, enc_init, enc_sd, dict(prov, part="encoder"))

    dec_init = generator_init(size=size, style_dim=512, n_mlp=8, channel_multiplier=2)
    dec_prov = dict(prov, part="decoder")
    if latent_avg is not None:
        # The generator's mean w, repeated per style during training: usable as the truncation centre.
        rows = latent_avg.reshape(-1, latent_avg.shape[-1])
        if np.all(rows == rows[:1]):
            dec_sd = dict(dec_sd, latent_avg=rows[0].copy())
        dec_prov["latent_avg_shape"] = list(latent_avg.shape)
    decoder = Source("rosinality", dec_init, dec_sd, dec_prov)
    return encoder, decoder


def read_encoder_checkpoint(path: str | Path) -> tuple[Source, Source]:
    """Read an official e4e / pSp ``.pt`` (torch zip or legacy; no torch) -> (encoder, decoder) Sources.

    Encoder: family ``"e4e"`` / ``"psp"``, init = opts + ``encoder_type`` + ``n_styles``, state_dict = ``encoder.*``
    names stripped (+ ``latent_avg``). Decoder: family ``"rosinality"`` with the Generator constructor arguments.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    obj = load_torch(path)
    with malformed_checkpoint(path):
        encoder, decoder = split_checkpoint(path, obj)
        check_tensors(path, encoder.state_dict, "encoder state_dict")
        check_tensors(path, decoder.state_dict, "decoder state_dict")
    return encoder, decoder
