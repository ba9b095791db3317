"""rosinality/stylegan2-pytorch `.pt` files holding `g_ema` (train.py checkpoints, convert_weight.py output)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from weights_convert.base import Source, is_options, options
from weights_convert.errors import CheckpointError

# The golden init_kwargs.json "family" / "class_name" of rosinality's Generator (model.py).
FAMILY = "rosinality/stylegan2-pytorch"
CLASS_NAME = "model.Generator"


def generator_init(**init_kwargs: Any) -> dict[str, Any]:
    """A Source.init for rosinality's `Generator(size, style_dim, n_mlp, channel_multiplier=...)`."""
    return {"family": FAMILY, "class_name": CLASS_NAME, "init_kwargs": dict(init_kwargs)}


def source_from_checkpoint(path: str | Path, obj: dict, provenance: dict[str, Any]) -> Source:
    """A rosinality ``.pt`` dict holding ``g_ema``: train.py checkpoint (g, d, g_ema, optimisers, args,
    ada_aug_p) or convert_weight.py output (g_ema, latent_avg[, g, d]) -> Source.

    ``latent_avg`` (if present) travels as an extra state_dict entry that the model keeps in
    ``params["latent_avg"]``; train.py ``args`` give the constructor arguments, checked against the weights.
    """
    g_ema = obj.get("g_ema")
    if not isinstance(g_ema, dict) or not g_ema:
        raise CheckpointError(f"{path}: 'g_ema' is {type(g_ema).__name__}, expected a state_dict")
    sd: dict[str, np.ndarray] = {}
    for k, v in g_ema.items():
        if not isinstance(v, np.ndarray):
            raise CheckpointError(f"{path}: g_ema[{k!r}] is {type(v).__name__}, expected a tensor")
        sd[str(k)] = v
    prov = dict(provenance)
    if obj.get("latent_avg") is not None:
        avg = obj["latent_avg"]
        if not isinstance(avg, np.ndarray):
            raise CheckpointError(f"{path}: latent_avg is {type(avg).__name__}, expected a tensor")
        sd["latent_avg"] = np.asarray(avg, np.float32)
        prov["latent_avg"] = True
    init = generator_init()
    raw = obj.get("args")
    if raw is not None:
        if not is_options(raw):
            raise CheckpointError(f"{path}: 'args' is a {type(raw).__name__}, expected train.py's argparse.Namespace")
        args = options(raw)
        arch = args.get("arch", "stylegan2")
        if arch != "stylegan2":
            raise CheckpointError(f"{path}: rosinality arch {arch!r} is not supported (only 'stylegan2')")
        init["args"] = args
        # train.py builds Generator(args.size, args.latent, args.n_mlp, channel_multiplier=args.channel_multiplier).
        for ours, theirs in (("size", "size"), ("style_dim", "latent"), ("n_mlp", "n_mlp"),
                             ("channel_multiplier", "channel_multiplier")):
            if args.get(theirs) is not None:
                init["init_kwargs"][ours] = args[theirs]
    return Source("rosinality", init, sd, prov)
