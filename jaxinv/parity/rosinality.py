"""Parity handler for rosinality/stylegan2-pytorch cases (golden README 4.3).

Recomputes, in the golden layout: ``w``, ``latent``, ``img``, ``img_trunc``, ``img_mix``, ``img_wplus``
(NCHW), ``styles.<layer>.conv.modulation`` and ``layer_out.<layer>`` (sample 0, NCHW). Weights come from
``<case>.weights.npz`` or ``case.weights`` (a train.py / convert_weight.py ``.pt``) through
`weights_convert.source`; when the checkpoint carries its own ``latent_avg`` (convert_weight.py), ``img_trunc``
is also recomputed with it as the default ``truncation_latent``.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from jaxinv.models import rosinality as ros
from jaxinv.parity.core import Case, CaseError, Check
from weights_convert.source import family_from_init, read_golden_npz, read_source

# One compiled synthesis shared by every call (the latent assembly runs eagerly: it is a small MLP).
_synthesis = jax.jit(ros.synthesis, static_argnums=0, static_argnames=("noise_mode", "return_layers"))


def detect(case: Case) -> bool:
    return any(family_from_init(d) == "rosinality" for d in (case.init, case.meta) if isinstance(d, dict))


def load(case: Case) -> tuple[ros.Config, dict]:
    """The case's generator through the user-facing converter (golden npz, or the file of --weights)."""
    if case.weights is not None:
        src = read_source(case.weights)
    else:
        src = read_golden_npz(case.path(".weights.npz"), case.path(".init_kwargs.json"))
    if src.family != "rosinality":
        raise CaseError(f"{case.weights}: holds a {src.family} model, case {case.name} is rosinality")
    return ros.from_source(src)


def run(case: Case) -> Iterator[Check]:
    cfg, params = load(case)
    io = case.io
    net = {k: v for k, v in params.items() if k != "latent_avg"}  # same pytree for every weights source

    def image(latent, **kw):
        return _synthesis(cfg, net, latent, noise_mode="const", **kw)

    z = io["z"]
    yield Check("w", np.asarray(ros.mapping(cfg, params, z)), io["w"])
    latent = ros.make_latent(cfg, params, [z])
    if "latent" in io:
        yield Check("latent", np.asarray(latent), io["latent"])
    yield Check("img", case.nchw(image(latent)), io["img"])
    if "img_trunc" in io:
        psi = float(io["psi"])
        trunc = ros.make_latent(cfg, params, [z], truncation=psi, truncation_latent=io["latent_avg"][None])
        yield Check("img_trunc", case.nchw(image(trunc)), io["img_trunc"])
        if "latent_avg" in params:  # the checkpoint's own latent_avg as the default truncation_latent
            own = ros.make_latent(cfg, params, [z], truncation=psi)
            yield Check("img_trunc.ckpt_latent_avg", case.nchw(image(own)), io["img_trunc"])
    if "img_mix" in io:
        mix = ros.make_latent(cfg, params, [z, io["z2"]], inject_index=int(io["inject_index"]))
        yield Check("img_mix", case.nchw(image(mix)), io["img_mix"])
    if "img_wplus" not in io:
        return
    wplus = ros.make_latent(cfg, params, [io["wplus"]], input_is_latent=True)
    img, layers = image(wplus, return_layers=True)
    yield Check("img_wplus", case.nchw(img), io["img_wplus"])
    styles = ros.styles(cfg, params, io["wplus"])
    for name in sorted(io):
        kind, _, rest = name.partition(".")
        if kind == "styles":  # styles.convs.3.conv.modulation
            yield Check(name, np.asarray(styles[rest.removesuffix(".conv.modulation")]), io[name])
        elif kind == "layer_out":  # layer_out.to_rgbs.1, sample 0
            ref = io[name]
            out = case.nchw(layers[rest])[: ref.shape[0], : ref.shape[1]]
            yield Check(name, out, ref)
