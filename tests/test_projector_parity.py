"""Replay of the official stylegan2-ada projector (`python -m jaxinv.parity .../projector_sg2ada_r64_skip`):
float32 teacher-forced / free-running checks and the float64 replay against the official float64 run."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.parity import projector
from jaxinv.parity.core import load_case, run_case
from tests.conftest import GOLDEN, REALDATA, require

CASE = "projector_sg2ada_r64_skip"


def test_official_projector_replay():
    require(GOLDEN / f"{CASE}.io.npz")
    require(REALDATA / "weights" / "lpips_linear_heads" / "vgg_v0.1.npz")
    results = {c.name: c.result() for c in run_case(load_case(GOLDEN / CASE))}
    failures = [f"{name}: {err:.3e} > {tol:.3e}" for name, (err, tol, ok) in results.items() if not ok]
    assert not failures, "; ".join(failures)
    for name in ("teacher_forced.w_opt", "free_running.w_opt", "float64.teacher_forced.w_opt",
                 "float64.teacher_forced.dist", "float64.free_running.w_opt", "float64.free_running.dist",
                 "float64.free_running.loss"):
        assert name in results, name


def test_float64_engine_is_scoped():
    double = jax.jit(lambda x: x * projector.ops.np.float32(2.0))
    assert double(np.ones(2)).dtype == jnp.float32
    with projector.float64_engine():
        assert jnp.ones(1).dtype == jnp.float64 and projector.ops.np.float32 is np.float64
        assert double(np.ones(2)).dtype == jnp.float64
    assert jnp.ones(1).dtype == jnp.float32 and projector.ops.np is np and projector.ops.jnp is jnp
    assert double(np.ones(2)).dtype == jnp.float32
