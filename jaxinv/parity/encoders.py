"""Parity handler for the e4e / pSp encoder cases (golden README 4.5).

Weights: the procedural recipe of ``meta["procedural_weights"]`` (README section 6; no weights file), or
``case.weights``, an official-layout e4e / pSp ``.pt`` read through `weights_convert.encoders`.
Checks, in the golden layout: ``encoder_out``, ``codes`` (encoder_out + the case's latent_avg), the model's own
``latent_avg``, ``feat2.input_layer`` and ``feat8.c1``/``c2``/``c3`` (NCHW, sample 0, first channels as stored).
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from jaxinv.models import encoders as enc
from jaxinv.parity.core import Case, CaseError, Check
from weights_convert.source import Source, family_from_init

_encode = jax.jit(enc.encode, static_argnums=0, static_argnames=("return_intermediates",))

# io name -> intermediate of encoder_forward (NHWC).
_FEATURES = {"feat2.input_layer": "input_layer", "feat8.c1": "c1", "feat8.c2": "c2", "feat8.c3": "c3"}


def _family(case: Case) -> str | None:
    for d in (case.init, case.meta):
        if isinstance(d, dict):
            fam = family_from_init(d)
            if fam in ("e4e", "psp"):
                return fam
    return None


def detect(case: Case) -> bool:
    return _family(case) is not None


def procedural_source(case: Case) -> Source:
    """The case's encoder with the weights its recipe generates (and the recipe's latent_avg)."""
    from jaxinv.procedural import procedural_state_dict

    recipe = case.meta.get("procedural_weights")
    if recipe is None:
        raise CaseError(f"{case.prefix}: no weights given and meta.json holds no procedural_weights recipe")
    init = case.init or {k: case.meta[k] for k in ("family", "class_name", "constructor", "opts") if k in case.meta}
    return Source(_family(case), init, procedural_state_dict(recipe),
                  {"source": f"{case.prefix}.meta.json", "format": "procedural"})


def load(case: Case) -> tuple[enc.Config, dict]:
    """The case's encoder; ``case.options["fast"] = False`` loads plain-conv params (no Winograd)."""
    fast = bool(case.options.get("fast", True))
    if case.weights is not None:
        from weights_convert.encoders import read_encoder_checkpoint

        src = read_encoder_checkpoint(case.weights)[0]
        if src.family != _family(case):
            raise CaseError(f"{case.weights}: holds a {src.family} encoder, case {case.name} is {_family(case)}")
    else:
        src = procedural_source(case)
    return enc.from_source(src, fast=fast)


def run(case: Case) -> Iterator[Check]:
    return run_checks(case, *load(case))


def run_checks(case: Case, cfg: enc.Config, params: dict) -> Iterator[Check]:
    """The case's checks for an already loaded encoder (one batched forward)."""
    io = case.io
    x = np.ascontiguousarray(np.asarray(io["x"], np.float32).transpose(0, 2, 3, 1))  # NCHW -> NHWC
    codes, aux = _encode(cfg, params, x, return_intermediates=True)
    yield Check("encoder_out", np.asarray(aux["encoder_out"]), io["encoder_out"])
    if "latent_avg" in io:
        # An input of the case: its codes are encoder_out + this latent_avg (pSp.forward); the model's own
        # latent_avg (recipe or checkpoint) is checked against it on its own.
        if cfg.start_from_latent_avg:
            own = np.asarray(params["latent_avg"])
            yield Check("latent_avg", own, np.broadcast_to(io["latent_avg"], own.shape))
        codes = enc.add_latent_avg(cfg, {"latent_avg": io["latent_avg"]}, aux["encoder_out"])
    if "codes" in io:
        ref = io["codes"]
        yield Check("codes", np.asarray(codes).reshape(ref.shape), ref)
    for name, key in _FEATURES.items():
        if name in io and key in aux:
            ref = io[name]
            out = case.nchw(aux[key])[: ref.shape[0], : ref.shape[1]]
            yield Check(name, out, ref)
