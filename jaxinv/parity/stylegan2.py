"""Parity handler for NVlabs StyleGAN2 cases (golden README 4.1 / 4.1b)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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


def truncation_inputs(io: Mapping[str, np.ndarray]) -> tuple[float, int | None, int | None]:
    """``(psi, cutoff, cutoff of ws_psi / img_G_psi)`` as the case gives them (``truncation_cutoff = -1``: None).

    The README's 4.1 layout keeps ``ws_psi`` / ``img_G_psi`` uncut and stores the cutoff's mapping apart as
    ``ws_psi_cutoff``; without that array (4.2) ``ws_psi`` / ``img_G_psi`` were computed with the case's cutoff.
    """
    psi = float(io["psi"]) if "psi" in io else 1.0
    cutoff = int(io["truncation_cutoff"]) if "truncation_cutoff" in io else -1
    cutoff = cutoff if cutoff >= 0 else None
    return psi, cutoff, None if "ws_psi_cutoff" in io else cutoff


def run(case: Case) -> Iterator[Check]:
    model = load_model(case, "stylegan2")
    cfg, params, io = model.cfg, model.params, case.io
    c = io["c"] if "c" in io and io["c"].shape[1] else None
    psi, cutoff, psi_cutoff = truncation_inputs(io)
    mapping = jax.jit(sg2.mapping, static_argnums=(0, 5))
    synth = jax.jit(partial(sg2.synthesis, cfg), static_argnames=("noise_mode", "return_blocks"))

    ws_psi = mapping(cfg, params, io["z"], c, psi, psi_cutoff)
    outputs = {
        "ws": lambda: mapping(cfg, params, io["z"], c, 1.0, None),
        "ws_psi": lambda: ws_psi,
        "ws_psi_cutoff": lambda: mapping(cfg, params, io["z"], c, psi, cutoff),
        "img": lambda: case.nchw(synth(params, io["ws"])),
        "img_G_psi": lambda: case.nchw(synth(params, ws_psi)),
    }
    for name, fn in outputs.items():
        if name in io:
            yield Check(name, fn(), io[name])
    if "wplus" not in io:
        return
    img, blocks = synth(params, io["wplus"], return_blocks=True)
    if "img_wplus" in io:
        yield Check("img_wplus", case.nchw(img), io["img_wplus"])
    if "img_wplus_none" in io:
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
