"""Parity handler for HF pytorch-pretrained-BigGAN golden cases (`biggan_*`).

Recomputes, in the golden layout: `img_t{i}` for every entry of `truncations` (NCHW), `embed`,
`cond_vector_t0` and `sn_sigma.<module>` (eval-mode spectral norm from the stored u, v).
Weights: `case.weights` (HF folder or pytorch_model.bin, zip or legacy; config.json beside it, else the
case's config) or the golden `<case>.weights.npz`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxinv.errors import CheckpointError
from jaxinv.models import biggan
from jaxinv.parity.core import Case, Check

_FAMILY = "huggingface/pytorch-pretrained-BigGAN"
_CLASS = "pytorch_pretrained_biggan.BigGAN"


def detect(case: Case) -> bool:
    for d in (case.init, case.meta):
        if isinstance(d, dict) and (d.get("family") == _FAMILY or d.get("class_name") == _CLASS):
            return True
    return False


def _case_config(case: Case) -> dict | None:
    for d in (case.init, case.meta):
        if isinstance(d, dict) and isinstance(d.get("config"), dict):
            return d["config"]
    return None


def _read(case: Case) -> Any:
    from weights_convert.hf_biggan import CONFIG_NAME, read_biggan

    if case.weights is not None:
        weights = Path(case.weights)
        beside = (weights if weights.is_dir() else weights.parent) / CONFIG_NAME
        if beside.is_file():
            return read_biggan(weights)
        config = _case_config(case)
        if config is None:
            raise CheckpointError(f"{weights}: no {CONFIG_NAME} beside it and no config in the case {case.name}")
        return read_biggan(weights, config=config)
    npz = case.path(".weights.npz")
    config_files = [npz.with_name(case.name + s) for s in (".config.json", ".init_kwargs.json")]
    if any(c.is_file() for c in config_files):
        return read_biggan(npz)
    return read_biggan(npz, config=_case_config(case))


def run(case: Case) -> Iterable[Check]:
    src = _read(case)
    cfg, params = biggan.from_source(src)
    io = case.io
    class_vector = io["class_vector"]
    generate = jax.jit(biggan.generate, static_argnums=(0, 4))

    if "embed" in io:
        yield Check("embed", np.asarray(biggan.embed(cfg, params, class_vector)), io["embed"])
    if "cond_vector_t0" in io:
        out = biggan.cond_vector(cfg, params, io["z_t0"], class_vector)
        yield Check("cond_vector_t0", np.asarray(out), io["cond_vector_t0"])
    for i, truncation in enumerate(np.asarray(io["truncations"], np.float64).tolist()):
        name = f"img_t{i}"
        if name in io:
            img = generate(cfg, params, io[f"z_t{i}"], class_vector, float(truncation))
            yield Check(name, np.asarray(img).transpose(0, 3, 1, 2), io[name])
    for name in sorted(k for k in io if k.startswith("sn_sigma.")):
        module = name[len("sn_sigma."):]
        try:
            tensors = [src.state_dict[f"{module}.weight_{s}"] for s in ("orig", "u", "v")]
        except KeyError:
            raise CheckpointError(f"{case.name}: {name} names a module without weight_orig/u/v") from None
        yield Check(name, np.asarray(biggan.spectral_sigma(*tensors)), np.asarray(io[name]))
