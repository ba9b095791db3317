"""How every family is a Flax NNX module: declared once per config, bound to weights under jit.

Each family is a tree of `nnx.Module`s that mirrors the official module hierarchy, so a weight's path reads like
its official name (`synthesis.b64.conv1.weight`, `main.3.weight`). A module's `__init__(cfg)` declares:

- `param(*shape)`: a trained weight (`nnx.Param`), in our layout (HWIO convs, [in, out] dense);
- `buffer(*shape)`: an array the checkpoint stores but training does not update (`w_avg`, `noise_const`, BN
  statistics folded at conversion): `Buffer`, so `nnx.grad` / optimizers over `nnx.Param` leave it alone;
- `const(array)`: a static computed from the config at build time (resampling filters, the StyleGAN3 design).

Weights are declared as shapes (`jax.ShapeDtypeStruct`), never allocated: building a module is cheap and is done
once per (class, cfg). The engine keeps the weights as a plain nested dict at the same paths (`params`), which
jits, vmaps, differentiates, shards and saves as any pytree; `bind(cls, cfg, params)` merges them into the built
module (`nnx.merge`, at trace time only, so a compiled program is exactly the kernels the modules call).
`build(cls, cfg, params)` gives a concrete module to hold (fine-tuning, embedding in other Flax code), and
`nnx.split(module, (nnx.Param, Buffer))` takes it apart again.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxinv.errors import ConfigError
from jaxinv.state_dict import Entry

M = TypeVar("M", bound=nnx.Module)


class Buffer(nnx.Variable):
    """A checkpoint array that is not a trained weight (w_avg, noise_const, BN statistics)."""


class Const:
    """A static array of a module, computed at build time from its config (filters, design constants). Not a
    Variable: it is part of the graph definition (hashable by value), never of the state, so it stays a numpy
    constant under `nn.bind`, `nnx.jit`, `nnx.split` alike (kernels such as `ops.upfirdn2d` need it concrete).
    Read it as `self.filter[...]`."""

    __slots__ = ("_key", "value")

    def __init__(self, value: np.ndarray) -> None:
        value = np.array(value)
        value.setflags(write=False)
        self.value = value
        self._key = (value.dtype.str, value.shape, value.tobytes())

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.value[index]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.value.shape

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Const) and self._key == other._key

    def __repr__(self) -> str:
        return f"Const({self.value.dtype}{list(self.value.shape)})"


WEIGHTS = (nnx.Param, Buffer)  # what `params` holds (every Variable of a module); Consts are in the graph


def param(*shape: int, dtype: Any = jnp.float32) -> nnx.Param:
    return nnx.Param(jax.ShapeDtypeStruct(tuple(int(s) for s in shape), dtype))


def buffer(*shape: int, dtype: Any = jnp.float32) -> Buffer:
    return Buffer(jax.ShapeDtypeStruct(tuple(int(s) for s in shape), dtype))


def const(value: Any, dtype: Any = np.float32) -> Const:
    return Const(np.asarray(value, dtype))


@functools.cache
def _built(cls: type[M], cfg: Any) -> tuple[Any, dict, jax.tree_util.PyTreeDef]:
    graphdef, weights = nnx.split(cls(cfg), WEIGHTS)
    abstract = nnx.to_pure_dict(weights)
    return graphdef, abstract, jax.tree.structure(abstract)


def shapes(cls: type[nnx.Module], cfg: Any) -> dict:
    """The weights `cls(cfg)` takes: a nested dict of `jax.ShapeDtypeStruct` at the official paths."""
    return _built(cls, cfg)[1]


def _leaves(tree: Mapping, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for k, v in tree.items():
        out += _leaves(v, (*prefix, k)) if isinstance(v, Mapping) else [((*prefix, k), v)]
    return out


def _paths(tree: Mapping) -> dict[str, Any]:
    return {".".join(p): v for p, v in _leaves(tree)}


def entry_table(cls: type[nnx.Module], cfg: Any, sep: str = "/") -> list[Entry]:
    """The converter table (`jaxinv.state_dict.fill`) of a module whose official weight names are its weight
    paths joined by `sep` (TF.js names such as ``conv0/filters``), layouts as they are."""
    return [Entry(sep.join(p), tuple(s.shape), p) for p, s in _leaves(shapes(cls, cfg))]


def check(cls: type[nnx.Module], cfg: Any, params: Any) -> None:
    """ConfigError naming the missing / unexpected / misshapen weights of `params` for `cls(cfg)`."""
    want = _paths(shapes(cls, cfg))
    have = _paths(params) if isinstance(params, Mapping) else {}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    bad = [f"{k} {tuple(np.shape(have[k]))} (expected {want[k].shape})" for k in sorted(set(want) & set(have))
           if tuple(np.shape(have[k])) != tuple(want[k].shape)]
    if missing or extra or bad:
        raise ConfigError(f"{cls.__module__}.{cls.__qualname__}: params do not fit the config: missing "
                          f"{missing[:8]}, unexpected {extra[:8]}, wrong shape {bad[:8]}")


def bind(cls: type[M], cfg: Any, params: Any) -> M:
    """The module `cls(cfg)` holding `params` (arrays or tracers), ready to call."""
    graphdef, _, treedef = _built(cls, cfg)
    if jax.tree.structure(params) != treedef:
        check(cls, cfg, params)  # names the difference
        raise ConfigError(f"{cls.__module__}.{cls.__qualname__}: params are not a nested dict of arrays shaped "
                          f"like `shapes(cls, cfg)` ({jax.tree.structure(params)})")
    return nnx.merge(graphdef, nnx.State(params))


def build(cls: type[M], cfg: Any, params: Any) -> M:
    """A concrete module with `params` as device arrays (shapes checked)."""
    check(cls, cfg, params)
    return bind(cls, cfg, jax.tree.map(jnp.asarray, params))


def weights(module: nnx.Module) -> dict:
    """The weights of a module as the engine's params dict (the inverse of `bind`)."""
    return nnx.to_pure_dict(nnx.state(module, WEIGHTS))
