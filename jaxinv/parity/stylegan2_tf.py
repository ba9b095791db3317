"""Parity handler for the NVlabs StyleGAN2 TensorFlow cases (golden README 10): `stylegan2tf_*`.

Weights from `<case>.weights.npz` (TF variable names and layouts, `G_mapping/` / `G_synthesis/` prefixed) or,
with --weights, from the official `(G, D, Gs)` snapshot pickle; both go through the same TF -> NVlabs converter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import partial

import jax
import numpy as np

from jaxinv.models import from_source
from jaxinv.models import stylegan2 as sg2
from jaxinv.parity.core import Case, CaseError, Check
from weights_convert.source import Source, read_source
from weights_convert.tf_pickles import stylegan2_from_variables

_PREFIXES = {"G_mapping/": "mapping/", "G_synthesis/": "synthesis/"}


def detect(case: Case) -> bool:
    return (case.init.get("network_class") == "dnnlib.tflib.Network"
            and str(case.init.get("G_build", {}).get("func", "")).endswith(".G_main"))


def load_model(case: Case):
    if case.weights is not None:
        src = read_source(case.weights)
        if src.family != "stylegan2":
            raise CaseError(f"{case.weights}: holds a {src.family} model, case {case.name} is stylegan2")
        return from_source(src)
    path = case.path(".weights.npz")
    with np.load(path, allow_pickle=False) as z:
        tf = {}
        for k in z.files:
            prefix = next((p for p in _PREFIXES if k.startswith(p)), None)
            tf[_PREFIXES[prefix] + k[len(prefix):] if prefix else k] = z[k]
    build = case.init["G_build"]
    init, sd = stylegan2_from_variables(path, build["func"].rsplit(".", 1)[-1], build["static_kwargs"], tf)
    return from_source(Source("stylegan2", init, sd, {"source": str(path)}))


def _layer(tf_name: str) -> str:
    """TF layer name ('8x8/Conv0_up', '4x4/Conv', '16x16/ToRGB') -> ours ('b8.conv0', 'b4.conv1', 'b16.torgb')."""
    m = re.fullmatch(r"(\d+)x\d+/(Conv0_up|Conv1|Conv|ToRGB)", tf_name)
    if m is None:
        raise CaseError(f"unknown TF layer name {tf_name!r}")
    return f"b{m[1]}." + {"Conv0_up": "conv0", "Conv1": "conv1", "Conv": "conv1", "ToRGB": "torgb"}[m[2]]


def run(case: Case) -> Iterator[Check]:
    model = load_model(case)
    cfg, params, io = model.cfg, model.params, case.io
    mapping = jax.jit(sg2.mapping, static_argnums=(0, 5))
    synth = jax.jit(partial(sg2.synthesis, cfg), static_argnames=("noise_mode", "return_blocks"))
    psi = float(io["psi"])
    cutoffs = {"": int(io["truncation_cutoff"]), "_cutoff_b": int(io["truncation_cutoff_b"])}
    yield Check("ws", mapping(cfg, params, io["z"], None, 1.0, None), io["ws"])
    yield Check("img", case.nchw(synth(params, io["ws"])), io["img"])
    for suffix, cutoff in cutoffs.items():
        ws_psi = mapping(cfg, params, io["z"], None, psi, cutoff if cutoff >= 0 else None)
        yield Check(f"ws_psi{suffix}", ws_psi, io[f"ws_psi{suffix}"])
        yield Check(f"img_psi{suffix}", case.nchw(synth(params, ws_psi)), io[f"img_psi{suffix}"])
    img, blocks = synth(params, io["wplus"], return_blocks=True)
    yield Check("img_wplus", case.nchw(img), io["img_wplus"])
    if "img_wplus_nonfused" in io:
        yield Check("img_wplus_nonfused", case.nchw(img), io["img_wplus_nonfused"])
    styles = jax.jit(sg2.styles, static_argnums=0)(cfg, params, io["wplus"])
    for name in sorted(io):
        kind, _, rest = name.partition(".")
        if kind == "styles":
            yield Check(name, styles[_layer(rest)], io[name])
        elif kind == "block_img":  # the skip image after each ToRGB: sample 0
            ref = io[name]
            out = np.asarray(blocks[f"b{rest.split('x')[0]}"][1])[:1].transpose(0, 3, 1, 2)
            yield Check(name, out, ref)
