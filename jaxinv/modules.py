"""Flax NNX handle of a jaxinv generator, for embedding it in Flax code (fine-tuning, a training loop).

`GeneratorModule(model)` holds every parameter as an `nnx.Param` at the path the official code names it
(`synthesis.b64.conv1.weight`, `mapping.fc0.bias`; PGGAN / StyleGAN v1: the TF scopes, `4x4.Dense.weight`), and
calls the family's forward (`Generator`: mapping, synthesis, styles, __call__) on the current values, so
`nnx.jit`, `nnx.grad` and optimizers over `nnx.Param` work as for any NNX module. The static config stays on the
module (`cfg`); `to_model()` gives the engine's `Model` back with the current weights.

This is a handle over the families' functional forwards, not a module per official layer: the layers
themselves are still the functions of `jaxinv/models/<family>.py`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxinv.errors import ConfigError
from jaxinv.generators import Generator
from jaxinv.models import Model


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


class GeneratorModule(nnx.Module):
    """NNX module of a generator `Model`; attributes = the official top-level modules (mapping, synthesis, ...)."""

    def __init__(self, model: Model, truncation_psi: float = 1.0) -> None:
        if not isinstance(model.params, dict):
            raise ConfigError(f"model: params of family {model.family!r} are not a dict of modules")
        Generator(model.family, model.cfg, model.params, truncation_psi)  # validates family / truncation_psi
        self.family, self.cfg, self.truncation_psi = model.family, model.cfg, float(truncation_psi)
        self.provenance = dict(model.provenance)
        self._names = tuple(model.params)
        for name, tree in model.params.items():
            setattr(self, name, nnx.data(jax.tree.map(lambda a: nnx.Param(jnp.asarray(a)), tree)))

    def param_tree(self) -> dict[str, Any]:
        """The current values as the engine's params pytree."""
        return {n: jax.tree.map(lambda v: v[...], getattr(self, n), is_leaf=_is_variable) for n in self._names}

    def generator(self) -> Generator:
        return Generator(self.family, self.cfg, self.param_tree(), self.truncation_psi)

    def to_model(self) -> Model:
        return Model(self.family, self.cfg, self.param_tree(), dict(self.provenance))

    def __call__(self, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        return self.generator()(z, c)

    def mapping(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0) -> jax.Array:
        return self.generator().mapping(z, c, truncation_psi)

    def synthesis(self, ws: jax.Array | None = None, *, styles: dict | None = None,
                  noise: dict | None = None) -> jax.Array:
        return self.generator().synthesis(ws, styles=styles, noise=noise)

    def styles(self, ws: jax.Array) -> dict[str, jax.Array]:
        return self.generator().styles(ws)
