"""Parity handler for NVlabs StyleGAN2 cases (golden README 4.1 / 4.1b)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import jax
import numpy as np

from jaxinv.models import from_source
from jaxinv.models import stylegan2 as sg2
from jaxinv.parity.core import Case, CaseError, Check
from weights_convert.source import family_from_init, read_golden_npz, read_source


def detect(case: Case) -> bool:
    return family_from_init(case.init) == "stylegan2"


def load_model(case: Case, family: str):
    """The case's model through the user-facing converter: golden npz, or the official file of --weights."""
    if case.weights is not None:
        src = read_source(case.weights)
    else:
        src = read_golden_npz(case.path(".weights.npz"), case.path(".init_kwargs.json"))
    if src.family != family:
        raise CaseError(f"{case.weights}: holds a {src.family} model, case {case.name} is {family}")
    return from_source(src)


def run(case: Case) -> Iterator[Check]:
    model = load_model(case, "stylegan2")
    cfg, params, io = model.cfg, model.params, case.io
    c = io["c"] if io["c"].shape[1] else None
    psi, cutoff = float(io["psi"]), int(io["truncation_cutoff"])
    mapping = jax.jit(sg2.mapping, static_argnums=(0, 5))
    synth = jax.jit(partial(sg2.synthesis, cfg), static_argnames=("noise_mode", "return_blocks"))

    yield Check("ws", mapping(cfg, params, io["z"], c, 1.0, None), io["ws"])
    yield Check("ws_psi", mapping(cfg, params, io["z"], c, psi, None), io["ws_psi"])
    yield Check("ws_psi_cutoff", mapping(cfg, params, io["z"], c, psi, cutoff if cutoff >= 0 else None),
                io["ws_psi_cutoff"])
    yield Check("img", case.nchw(synth(params, io["ws"])), io["img"])
    ws_psi = mapping(cfg, params, io["z"], c, psi, None)
    yield Check("img_G_psi", case.nchw(synth(params, ws_psi)), io["img_G_psi"])
    img, blocks = synth(params, io["wplus"], return_blocks=True)
    yield Check("img_wplus", case.nchw(img), io["img_wplus"])
    yield Check("img_wplus_none", case.nchw(synth(params, io["wplus"], noise_mode="none")), io["img_wplus_none"])
    styles = jax.jit(sg2.styles, static_argnums=0)(cfg, params, io["wplus"])
    for name in sorted(io):
        kind, _, rest = name.partition(".")
        if kind == "styles":  # styles.synthesis.b8.conv0.affine
            yield Check(name, styles[rest.removeprefix("synthesis.").removesuffix(".affine")], io[name])
        elif kind in ("block_x", "block_img"):
            x, block_img = blocks[rest.removeprefix("synthesis.")]
            out = x if kind == "block_x" else block_img
            ref = io[name]
            yield Check(name, np.asarray(out)[:1].transpose(0, 3, 1, 2)[:, : ref.shape[1]], ref)
