"""`jaxinv.modules`: every family as its Flax NNX module tree, built from the genuine official files, whose weight
paths are the converter's params (the official names; for NVlabs exactly the state_dict names), equal to the
engine's forward bit for bit, through nnx.jit and nnx.grad. (Full-size manifests: the families' own tests check
`nn.shapes` of the full-size configs against the official names.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxinv
from jaxinv import modules
from jaxinv.errors import ConfigError
from jaxinv.generators import Generator
from jaxinv.models import dcgan, nn
from tests.conftest import GOLDEN, require

# case -> (official file, the official state_dict names of the same weights or None, forward of the module)
CASES = {
    "sg2ada_r32_resnet_clamp": ("containers/sg2ada_r32_resnet_clamp.pkl", "sg2ada_r32_resnet_clamp.weights.npz",
                                lambda m, z, c: m(z, c)),
    "sg2ada_r32_cond10_skip": ("containers/sg2ada_r32_cond10_skip.pkl", None, lambda m, z, c: m(z, c)),
    "sg3t_r64": ("containers/sg3t_r64.pkl", None, lambda m, z, c: m(z, c)),
    "sg3r_r64": ("containers/sg3r_r64.pkl", None, lambda m, z, c: m(z, c)),
    "rosinality_r64_cm1": ("containers/rosinality_r64_cm1.converted.pt", None, lambda m, z, c: m([z])),
    "stylegan1_r32": ("containers/stylegan1_r32.pkl", None, lambda m, z, c: m(z, c)),
    "pggan_r32": ("containers/pggan_r32.pkl", None, lambda m, z, c: m(z, c)),
    "stylegan2tf_r32_skip": ("containers/stylegan2tf_r32_skip.pkl", None, lambda m, z, c: m(z, c)),
    "biggan_128_ch8": ("containers/biggan_128_ch8", None, lambda m, z, c: m(z, c, 1.0)),
}


def _paths(tree) -> set[str]:
    return {".".join(str(k.key) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_module_tree_forward_jit_and_grad(case):
    ckpt, names, forward = CASES[case]
    model = jaxinv.load(require(GOLDEN / ckpt))
    module = modules.module(model)
    assert type(module).__module__ == model.module.__name__  # the family's own class, not a wrapper
    # the module's weights are the converter's params, at the same paths
    assert _paths(nn.weights(module)) == _paths(model.params)
    params = _paths(nnx.to_pure_dict(nnx.state(module, nnx.Param)))
    if names:  # NVlabs: every weight path is an official state_dict name
        with np.load(require(GOLDEN / names)) as z:
            official = set(z.files)
        paths = _paths(nn.weights(module))
        assert paths <= official and official - paths == {n for n in official if n.endswith("resample_filter")}
    gen = Generator.from_model(model)
    z = jax.random.normal(jax.random.PRNGKey(0), (2, gen.z_dim))
    c = jnp.eye(gen.c_dim)[jnp.array([1, 3])] if gen.c_dim else None
    ref = np.asarray(jax.jit(lambda g, z, c: g(z, c))(gen, z, c))  # the engine's jitted forward
    np.testing.assert_array_equal(np.asarray(nnx.jit(forward)(module, z, c)), ref)

    grads = nnx.grad(lambda m: jnp.mean(forward(m, z, c) ** 2))(module)  # w.r.t. nnx.Param, not the buffers
    flat = jax.tree.leaves(nnx.to_pure_dict(grads))
    assert len(flat) == len(params) and all(np.isfinite(np.asarray(g)).all() for g in flat)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in flat)


def test_an_optimizer_step_changes_the_module_and_to_model_carries_it():
    model = dcgan.load_default()
    module = modules.module(model)
    z = jax.random.normal(jax.random.PRNGKey(1), (1, 100))
    before = np.asarray(module(z))
    grads = nnx.grad(lambda m: jnp.mean(m(z) ** 2))(module)
    nnx.update(module, jax.tree.map(lambda p, g: p - 0.1 * g, nnx.state(module, nnx.Param), grads))
    after = np.asarray(module(z))
    assert np.mean(after**2) < np.mean(before**2)
    np.testing.assert_array_equal(np.asarray(Generator.from_model(modules.to_model(module, model))(z)), after)
    with pytest.raises(ConfigError, match="params do not fit"):
        nn.build(dcgan.Generator, model.cfg, {"main": {}})
