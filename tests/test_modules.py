"""`jaxinv.modules.GeneratorModule`: the generators as Flax NNX modules whose parameter paths are the official
names, equal to the engine's forward, through nnx.jit and nnx.grad."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxinv
from jaxinv.generators import Generator
from jaxinv.models import dcgan
from jaxinv.modules import GeneratorModule
from tests.conftest import GOLDEN, require

# official file -> official state_dict names of the same weights (the golden npz), minus what is folded into
# the config (resample filters) or into other params
CASES = {
    "sg2ada_r32_resnet_clamp": ("containers/sg2ada_r32_resnet_clamp.pkl", "sg2ada_r32_resnet_clamp.weights.npz"),
    "stylegan1_r32": ("containers/stylegan1_r32.pkl", None),
    "pggan_r32": ("containers/pggan_r32.pkl", None),
}


def _paths(module: nnx.Module) -> set[str]:
    _, state = nnx.split(module)
    return {".".join(map(str, k)) for k, _ in nnx.to_flat_state(state)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_paths_forward_jit_and_grad(case):
    ckpt, names = CASES[case]
    model = jaxinv.load(require(GOLDEN / ckpt))
    module = GeneratorModule(model)
    paths = _paths(module)
    if names:  # NVlabs: every parameter path is an official state_dict name
        with np.load(require(GOLDEN / names)) as z:
            official = set(z.files)
        assert paths <= official and official - paths == {n for n in official if n.endswith("resample_filter")}
    else:  # TF-era: the TF variable scopes, '/' read as '.'
        assert "4x4.Dense.weight" in paths or "mapping.Dense0.weight" in paths
    gen = Generator.from_model(model)
    z = jax.random.normal(jax.random.PRNGKey(0), (2, gen.z_dim))
    # the same program as the engine's jitted forward: same bits
    ref = np.asarray(jax.jit(lambda g, z: g(z))(gen, z))
    np.testing.assert_array_equal(np.asarray(nnx.jit(lambda m, z: m(z))(module, z)), ref)

    def loss(m):
        return jnp.mean(m(z) ** 2)

    grads = nnx.grad(loss)(module)
    flat = jax.tree.leaves(nnx.to_pure_dict(grads))
    assert len(flat) == len(paths) and all(np.isfinite(np.asarray(g)).all() for g in flat)
    assert any(np.abs(np.asarray(g)).max() > 0 for g in flat)


def test_an_optimizer_step_changes_the_module_and_to_model_carries_it():
    module = GeneratorModule(dcgan.load_default())
    z = jax.random.normal(jax.random.PRNGKey(1), (1, 100))
    before = np.asarray(module(z))
    grads = nnx.grad(lambda m: jnp.mean(m(z) ** 2))(module)
    params = nnx.state(module, nnx.Param)
    nnx.update(module, jax.tree.map(lambda p, g: p - 0.1 * g, params, grads))
    after = np.asarray(module(z))
    assert np.mean(after**2) < np.mean(before**2)
    np.testing.assert_array_equal(np.asarray(Generator.from_model(module.to_model())(z)), after)
