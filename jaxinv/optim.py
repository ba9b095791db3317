"""Solvers of the inversion engine: pure `init` / `step` pairs over one latent pytree (one lane).

The engine vmaps them over images x restarts and runs the steps in one `lax.scan`. Each solver is a frozen
(hashable) dataclass of hyper-parameters, static under jit:

    init(latent, objective) -> State
    step(state, t, num_steps, key, objective) -> (State, StepInfo)

`objective` bundles the per-lane callables the engine builds (loss of a latent, the space's perturbation
and projection). State (carried) and StepInfo (per-step diagnostics, stacked by scan) are NamedTuples.

Adam follows the official stylegan2-ada-pytorch `projector.project()` schedule: with t = step / num_steps,

    lr_ramp = min(1, (1 - t) / lr_rampdown_length)
    lr_ramp = 0.5 - 0.5 * cos(lr_ramp * pi)
    lr_ramp = lr_ramp * min(1, t / lr_rampup_length)
    lr = initial_learning_rate * lr_ramp
    noise_scale = initial_noise_factor * max(0, 1 - t / noise_ramp_length) ** 2     (x the space's w_std)

the latent noise is added before the forward pass, Adam (betas 0.9/0.999, eps 1e-8, torch's formula) updates
every variable (latent and free noise maps), then the space's projection renormalises the noise maps.
L-BFGS is `optax.lbfgs` with its zoom line search; one step = one L-BFGS iteration (its line search's
value-and-gradient evaluations are reported in StepInfo.evals; the accepted one is reused by the next step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv.errors import ConfigError

Latent = Any


class Objective(NamedTuple):
    """Per-lane callables (closures built by the engine inside the vmapped program)."""

    loss: Callable[[Latent], jax.Array]  # latent -> scalar loss
    perturb: Callable[[Latent, jax.Array, jax.Array], Latent] = lambda lat, key, scale: lat
    project: Callable[[Latent], Latent] = lambda lat: lat


class StepInfo(NamedTuple):
    loss: jax.Array  # loss at the latent the step started from (Adam: with its latent noise)
    lr: jax.Array  # learning rate used (L-BFGS: the line search's step size)
    noise_scale: jax.Array  # latent noise factor used (0 for L-BFGS)
    evals: jax.Array  # loss evaluations spent (Adam 1; L-BFGS 1 + line-search steps)


class AdamState(NamedTuple):
    latent: Latent
    opt_state: Any


class LBFGSState(NamedTuple):
    latent: Latent
    opt_state: Any


@dataclass(frozen=True)
class Adam:
    lanes: ClassVar[str] = "vmap"  # the engine batches Adam lanes (images x restarts) with vmap
    learning_rate: float = 0.1  # initial_learning_rate (official 0.1)
    schedule: str = "official"  # 'official' (ramp-up/cosine ramp-down) or 'constant'
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    initial_noise_factor: float = 0.05  # latent noise at t = 0, in units of the space's w_std (0 = off)
    noise_ramp_length: float = 0.75
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.schedule not in ("official", "constant"):
            raise ConfigError(f"adam schedule={self.schedule!r}: expected 'official' or 'constant'")

    def lr_at(self, step: jax.Array, num_steps: int) -> jax.Array:
        if self.schedule == "constant":
            return jnp.asarray(self.learning_rate, jnp.float32)
        t = jnp.asarray(step, jnp.float32) / num_steps
        ramp = jnp.minimum(1.0, (1.0 - t) / self.lr_rampdown_length)
        ramp = 0.5 - 0.5 * jnp.cos(ramp * np.pi)
        ramp = ramp * jnp.minimum(1.0, t / self.lr_rampup_length)
        return self.learning_rate * ramp

    def noise_at(self, step: jax.Array, num_steps: int) -> jax.Array:
        t = jnp.asarray(step, jnp.float32) / num_steps
        return self.initial_noise_factor * jnp.square(jnp.maximum(0.0, 1.0 - t / self.noise_ramp_length))

    def _tx(self) -> optax.GradientTransformation:
        return optax.scale_by_adam(b1=self.b1, b2=self.b2, eps=self.eps)

    def init(self, latent: Latent, objective: Objective) -> AdamState:
        return AdamState(latent, self._tx().init(latent))

    def step(self, state: AdamState, t: jax.Array, num_steps: int, key: jax.Array,
             objective: Objective) -> tuple[AdamState, StepInfo]:
        lr = self.lr_at(t, num_steps)
        noise_scale = self.noise_at(t, num_steps) if self.initial_noise_factor else jnp.zeros(())

        def noisy_loss(latent):
            if self.initial_noise_factor:
                latent = objective.perturb(latent, key, noise_scale)
            return objective.loss(latent)

        loss, grads = jax.value_and_grad(noisy_loss)(state.latent)
        direction, opt_state = self._tx().update(grads, state.opt_state)
        latent = jax.tree_util.tree_map(lambda p, d: p - lr * d, state.latent, direction)
        latent = objective.project(latent)
        return AdamState(latent, opt_state), StepInfo(loss, lr, noise_scale, jnp.ones((), jnp.int32))


@dataclass(frozen=True)
class LBFGS:
    memory_size: int = 10
    max_linesearch_steps: int = 20
    # How the engine maps lanes: "map" runs them one after another (lax.map). Under vmap the zoom line search's
    # lax.cond branches (bracketing vs zoom, safe step) both run for every lane, each evaluating the loss,
    # which cost 10-40x on CPU; "vmap" batches lanes anyway (may pay off on accelerators).
    lanes: str = "map"

    def __post_init__(self) -> None:
        if self.lanes not in ("map", "vmap"):
            raise ConfigError(f"lbfgs lanes={self.lanes!r}: expected 'map' or 'vmap'")
        for name in ("memory_size", "max_linesearch_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise ConfigError(f"lbfgs {name}={v!r}: expected an integer >= 1")

    def _tx(self) -> optax.GradientTransformationExtraArgs:
        ls = optax.scale_by_zoom_linesearch(max_linesearch_steps=self.max_linesearch_steps)
        return optax.lbfgs(memory_size=self.memory_size, linesearch=ls)

    def init(self, latent: Latent, objective: Objective) -> LBFGSState:
        # Seed the line search's stored value/gradient here (what value_and_grad_from_state would compute at
        # step 0), so steps read them without a lax.cond.
        value, grad = jax.value_and_grad(objective.loss)(latent)
        opt_state = optax.tree_utils.tree_set(self._tx().init(latent), value=value, grad=grad)
        return LBFGSState(latent, opt_state)

    def step(self, state: LBFGSState, t: jax.Array, num_steps: int, key: jax.Array,
             objective: Objective) -> tuple[LBFGSState, StepInfo]:
        value = optax.tree_utils.tree_get(state.opt_state, "value")
        grad = optax.tree_utils.tree_get(state.opt_state, "grad")
        updates, opt_state = self._tx().update(grad, state.opt_state, state.latent, value=value, grad=grad,
                                               value_fn=objective.loss)
        latent = optax.apply_updates(state.latent, updates)
        # Each line-search step is one value_and_grad; the accepted one is reused by the next iteration.
        evals = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps") + (t == 0)
        lr = optax.tree_utils.tree_get(opt_state, "learning_rate")
        return LBFGSState(latent, opt_state), StepInfo(value, jnp.asarray(lr, jnp.float32), jnp.zeros(()),
                                                       jnp.asarray(evals, jnp.int32))


OPTIMIZERS = {"adam": Adam, "lbfgs": LBFGS}


def make_optimizer(optimizer: str | Adam | LBFGS, **options: Any) -> Adam | LBFGS:
    if isinstance(optimizer, Adam | LBFGS):
        return optimizer
    cls = OPTIMIZERS.get(str(optimizer).lower().replace("-", ""))
    if cls is None:
        raise ConfigError(f"optimizer={optimizer!r}: unknown (choose from {', '.join(OPTIMIZERS)})")
    try:
        return cls(**options)
    except TypeError as e:
        raise ConfigError(f"optimizer={optimizer!r}: bad option ({e})") from None
