"""Parity handler for NVlabs StyleGAN3 cases (golden README 4.2), configs T and R, any size / c_dim."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import jax
import numpy as np

from jaxinv.models import stylegan3 as sg3
from jaxinv.parity.core import Case, CaseError, Check
from jaxinv.parity.stylegan2 import load_model, truncation_inputs
from weights_convert.source import family_from_init

_INPUTS = {"z", "c", "wplus", "psi", "truncation_cutoff"}
_OUTPUTS = {"ws", "ws_psi", "ws_psi_cutoff", "img", "img_G_psi", "img_wplus", "img_wplus_none"}


def detect(case: Case) -> bool:
    return family_from_init(case.init) == "stylegan3"


def run(case: Case) -> Iterator[Check]:
    model = load_model(case, "stylegan3")
    cfg, params, io = model.cfg, model.params, case.io
    unknown = sorted(n for n in io if n not in _INPUTS | _OUTPUTS and not n.startswith(("styles.", "layer_out")))
    if unknown:
        raise CaseError(f"{case.prefix}.io.npz: outputs the stylegan3 handler does not know: {unknown}")
    c = io["c"] if cfg.c_dim > 0 else None
    psi, cutoff, psi_cutoff = truncation_inputs(io)  # README 4.2: ws_psi / img_G_psi use the case's cutoff
    mapping = jax.jit(sg3.mapping, static_argnums=(0, 5))
    # One compiled synthesis (with the per-layer outputs) serves every image of the case.
    synth = jax.jit(partial(sg3.synthesis, cfg, return_layers=True))

    ws_psi = mapping(cfg, params, io["z"], c, psi, psi_cutoff)
    outputs = {
        "ws": lambda: mapping(cfg, params, io["z"], c, 1.0, None),
        "ws_psi": lambda: ws_psi,
        "ws_psi_cutoff": lambda: mapping(cfg, params, io["z"], c, psi, cutoff),
        "img": lambda: case.nchw(synth(params, io["ws"])[0]),
        "img_G_psi": lambda: case.nchw(synth(params, ws_psi)[0]),
        # StyleGAN3 has no noise: 'none' and 'const' are the same forward.
        "img_wplus_none": lambda: case.nchw(synth(params, io["wplus"])[0]),
    }
    for name, fn in outputs.items():
        if name in io:
            yield Check(name, fn(), io[name])

    if "wplus" not in io:
        return
    img, layers = synth(params, io["wplus"])
    if "img_wplus" in io:
        yield Check("img_wplus", case.nchw(img), io["img_wplus"])
    styles = jax.jit(sg3.styles, static_argnums=0)(cfg, params, io["wplus"])
    for name in sorted(io):
        kind, _, rest = name.partition(".")
        if kind == "styles":  # styles.synthesis.L3_36_64.affine / styles.synthesis.input.affine
            key = rest.removeprefix("synthesis.").removesuffix(".affine")
            if key not in styles:
                raise CaseError(f"{case.prefix}.io.npz: {name} names no layer of this model")
            yield Check(name, styles[key], io[name])
        elif kind.startswith("layer_out"):  # layer_out4.synthesis.L3_36_64: sample 0, first channels
            key = rest.removeprefix("synthesis.")
            if key not in layers:
                raise CaseError(f"{case.prefix}.io.npz: {name} names no layer of this model")
            ref = io[name]
            out = np.asarray(layers[key])[: ref.shape[0], :, :, : ref.shape[1]].transpose(0, 3, 1, 2)
            yield Check(name, out, ref)
