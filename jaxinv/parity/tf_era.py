"""Parity handler for the NVlabs TensorFlow-era cases (golden README 10): `stylegan2tf_*`, `pggan_*`,
`stylegan1_*`.

Weights from `<case>.weights.npz` (TF variable names and layouts; StyleGAN2 components prefixed `G_mapping/` /
`G_synthesis/`) or, with --weights, from the official `(G, D, Gs)` snapshot pickle; both go through the same
TF converters.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from functools import partial

import jax
import numpy as np

from jaxinv.models import Model, from_source, pggan, stylegan1
from jaxinv.models import stylegan2 as sg2
from jaxinv.parity.core import Case, CaseError, Check
from weights_convert.source import Source, read_source
from weights_convert.tf_pickles import stylegan2_from_variables

_BUILD_FAMILY = {"G_main": "stylegan2", "G_paper": "pggan", "G_style": "stylegan1"}
_PREFIXES = {"G_mapping/": "mapping/", "G_synthesis/": "synthesis/"}


def _build_func(case: Case) -> str:
    return str(case.init.get("G_build", {}).get("func", "")).rsplit(".", 1)[-1]


def detect(case: Case) -> bool:
    return (case.init.get("network_class") in ("dnnlib.tflib.Network", "tfutil.Network")
            and _build_func(case) in _BUILD_FAMILY)


def load_model(case: Case) -> Model:
    family = _BUILD_FAMILY[_build_func(case)]
    if case.weights is not None:
        src = read_source(case.weights)
        if src.family != family:
            raise CaseError(f"{case.weights}: holds a {src.family} model, case {case.name} is {family}")
        return from_source(src)
    path = case.path(".weights.npz")
    tf = _tf_variables(path)
    build = case.init["G_build"]
    if family == "pggan":
        init = {"build_func": "G_paper", "static_kwargs": build["static_kwargs"]}
    elif family == "stylegan1":
        comps = case.init["components"]
        init = {"build_func": "G_style", "static_kwargs": build["static_kwargs"],
                "mapping_kwargs": comps["mapping"]["static_kwargs"],
                "synthesis_kwargs": comps["synthesis"]["static_kwargs"]}
    else:
        init, tf = stylegan2_from_variables(path, _build_func(case), build["static_kwargs"], tf)
    return from_source(Source(family, init, tf, {"source": str(path)}))


def _tf_variables(path) -> dict[str, np.ndarray]:
    """A TF-layout weights npz with the component prefixes as the pickle's Gs.params() names them."""
    with np.load(path, allow_pickle=False) as z:
        tf = {}
        for k in z.files:
            prefix = next((p for p in _PREFIXES if k.startswith(p)), None)
            tf[_PREFIXES[prefix] + k[len(prefix):] if prefix else k] = z[k]
    return tf


def _layer(tf_name: str) -> str:
    """TF layer name ('8x8/Conv0_up', '4x4/Conv', '16x16/ToRGB') -> ours ('b8.conv0', 'b4.conv1', 'b16.torgb')."""
    m = re.fullmatch(r"(\d+)x\d+/(Conv0_up|Conv1|Conv|ToRGB)", tf_name)
    if m is None:
        raise CaseError(f"unknown TF layer name {tf_name!r}")
    return f"b{m[1]}." + {"Conv0_up": "conv0", "Conv1": "conv1", "Conv": "conv1", "ToRGB": "torgb"}[m[2]]


def run(case: Case) -> Iterator[Check]:
    model = load_model(case)
    yield from {"pggan": _run_pggan, "stylegan1": _run_stylegan1, "stylegan2": _run_stylegan2}[model.family](
        case, model)


def _run_pggan(case: Case, model: Model) -> Iterator[Check]:
    cfg, params, io = model.cfg, model.params, case.io
    c = io["labels"] if cfg.c_dim else None
    gen = jax.jit(partial(pggan.generate, cfg), static_argnames=("lod", "return_blocks"))
    img, blocks = gen(params, io["z"], c, return_blocks=True)
    yield Check("img", case.nchw(img), io["img"])
    for k in ("a", "b"):
        if f"img_lod_{k}" in io:
            lod = float(io[f"lod_{k}"])
            yield Check(f"img_lod_{k}", case.nchw(gen(params, io["z"], c, lod=lod)), io[f"img_lod_{k}"])
    for name in sorted(n for n in io if n.startswith("block_x.")):
        ref = io[name]
        yield Check(name, case.nchw(blocks[name.split(".", 1)[1]][:1])[:, : ref.shape[1]], ref)


def _mapping_checks(case: Case, model: Model, mapping: Callable, synth: Callable) -> Iterator[Check]:
    """ws, img and the two truncations (the case's default cutoff, -1 = None, and cutoff_b) of a style GAN."""
    cfg, params, io = model.cfg, model.params, case.io
    yield Check("ws", mapping(cfg, params, io["z"], None, 1.0, None), io["ws"])
    yield Check("img", case.nchw(synth(params, io["ws"])), io["img"])
    psi = float(io["psi"])
    for suffix, cutoff in (("", int(io["truncation_cutoff"])), ("_cutoff_b", int(io["truncation_cutoff_b"]))):
        ws_psi = mapping(cfg, params, io["z"], None, psi, cutoff if cutoff >= 0 else None)
        yield Check(f"ws_psi{suffix}", ws_psi, io[f"ws_psi{suffix}"])
        yield Check(f"img_psi{suffix}", case.nchw(synth(params, ws_psi)), io[f"img_psi{suffix}"])


def _run_stylegan1(case: Case, model: Model) -> Iterator[Check]:
    cfg, params, io = model.cfg, model.params, case.io
    synth = jax.jit(partial(stylegan1.synthesis, cfg), static_argnames=("lod", "return_layers"))
    yield from _mapping_checks(case, model, jax.jit(stylegan1.mapping, static_argnums=(0, 5)), synth)
    img, layers = synth(params, io["wplus"], return_layers=True)
    yield Check("img_wplus", case.nchw(img), io["img_wplus"])
    for k in ("a", "b"):
        if f"img_lod_{k}" in io:
            out = synth(params, io["ws"], lod=float(io[f"lod_{k}"]))
            yield Check(f"img_lod_{k}", case.nchw(out), io[f"img_lod_{k}"])
    if "img_wplus_fused" in io:  # the fused up-conv path (real checkpoints at >= 128 px), same weights
        src = read_source(case.weights) if case.weights is not None else None
        fused_cfg = dataclasses.replace(cfg, fused_scale=True)
        tf = src.state_dict if src is not None else _tf_variables(case.path(".weights.npz"))
        fused = stylegan1.params_from_variables(fused_cfg, tf)
        out = jax.jit(partial(stylegan1.synthesis, fused_cfg))(fused, io["wplus"])
        yield Check("img_wplus_fused", case.nchw(out), io["img_wplus_fused"])
    styles = jax.jit(stylegan1.styles, static_argnums=0)(cfg, params, io["wplus"])
    for name in sorted(io):
        kind, _, rest = name.partition(".")
        if kind == "styles":
            yield Check(name, styles[rest.replace("/", ".")], io[name])
        elif kind == "layer_out":  # sample 0, first channels
            ref = io[name]
            yield Check(name, case.nchw(layers[rest.replace("/", ".")][:1])[:, : ref.shape[1]], ref)


def _run_stylegan2(case: Case, model: Model) -> Iterator[Check]:
    cfg, params, io = model.cfg, model.params, case.io
    synth = jax.jit(partial(sg2.synthesis, cfg), static_argnames=("noise_mode", "return_blocks"))
    yield from _mapping_checks(case, model, jax.jit(sg2.mapping, static_argnums=(0, 5)), synth)
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
            out = np.asarray(blocks[f"b{rest.split('x')[0]}"][1])[:1].transpose(0, 3, 1, 2)
            yield Check(name, out, io[name])
