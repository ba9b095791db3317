"""A jaxinv model as the Flax NNX module of its family, to hold in Flax code (fine-tuning, a training loop, a
larger model).

    module = jaxinv.modules.module(jaxinv.load("ffhq.pkl"))   # stylegan2.Generator: mapping, synthesis
    module.synthesis.b64.conv1.weight                          # nnx.Param at the official name, HWIO
    model = jaxinv.modules.to_model(module, like=old_model)    # back to the engine, current weights

The module tree is the family's own (`jaxinv/models/<family>.py`, built as `jaxinv.models.nn` says): its
parameter paths are the official names, `nnx.jit` / `nnx.grad` / optax over `nnx.Param` work as for any module,
and it calls the same kernels as the engine, which runs the same classes functionally (`nn.bind`).
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from jaxinv.errors import ConfigError
from jaxinv.models import Model, biggan, dcgan, encoders, nn, pggan, rosinality, stylegan1, stylegan2, stylegan3

# family -> the class of its whole model (the official top-level module)
_TOP: dict[str, Any] = {
    "stylegan2": lambda cfg: stylegan2.Generator,
    "stylegan3": lambda cfg: stylegan3.Generator,
    "rosinality": lambda cfg: rosinality.Generator,
    "stylegan1": lambda cfg: stylegan1.Generator,
    "pggan": lambda cfg: pggan.Generator,
    "dcgan": lambda cfg: dcgan.Generator,
    "biggan": lambda cfg: biggan.BigGAN,
    "e4e": encoders.encoder_class,
    "psp": encoders.encoder_class,
}


def module_class(model: Model) -> type[nnx.Module]:
    """The NNX class of `model`'s family (for its config)."""
    if model.family not in _TOP:
        raise ConfigError(f"model: family {model.family!r} has no NNX module (known: {', '.join(_TOP)})")
    return _TOP[model.family](model.cfg)


def module(model: Model) -> nnx.Module:
    """`model` as its family's NNX module, holding its weights (device arrays; shapes checked)."""
    return nn.build(module_class(model), model.cfg, model.params)


def to_model(module: nnx.Module, like: Model) -> Model:
    """The engine's `Model` with `module`'s current weights (family, config and provenance from `like`)."""
    if not isinstance(module, module_class(like)):
        raise ConfigError(f"module: a {type(module).__name__}, not the {like.family} model's "
                          f"{module_class(like).__name__}")
    return Model(like.family, like.cfg, nn.weights(module), dict(like.provenance))
