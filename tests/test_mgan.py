"""Multi-code GAN prior space (jaxinv.mgan) on the real DCGAN: the split forward is the generator's, N = 1 with
fixed all-ones importance is the Z space step for step, batching is transparent, bad specs are one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.errors import ConfigError
from jaxinv.generators import Generator
from jaxinv.invert import invert, space_from_spec
from jaxinv.mgan import MGanSpace
from jaxinv.models import dcgan


@pytest.fixture(scope="module")
def model():
    return dcgan.load_default()


def test_split_forward_and_composition(model):
    gen = Generator.from_model(model)
    z = jax.random.normal(jax.random.PRNGKey(0), (2, 100))
    ref = np.asarray(dcgan.generate(model.cfg, model.params, z))
    for layer in range(1, model.cfg.num_layers):
        sp = space_from_spec(f"mgan:1@{layer}")
        c = model.cfg.channels[layer - 1]
        got = sp.render(gen, {"z": z[:, None], "alpha": jnp.ones((2, 1, c))})
        np.testing.assert_array_equal(np.asarray(got), ref)
    # two codes with importance (1, 0) per channel: the first code's image; (0.5, 0.5): features averaged
    sp = space_from_spec("mgan:2@2")
    z2 = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 100))
    alpha = jnp.stack([jnp.ones((2, 256)), jnp.zeros((2, 256))], axis=1)
    np.testing.assert_allclose(np.asarray(sp.render(gen, {"z": z2, "alpha": alpha})),
                               np.asarray(dcgan.generate(model.cfg, model.params, z2[:, 0])), atol=1e-6)
    assert sp.init(jax.random.PRNGKey(0), gen, 3)["alpha"].shape == (3, 2, 256)


def test_one_code_fixed_importance_is_z_inversion_and_batching_is_transparent(model):
    z = jax.random.normal(jax.random.PRNGKey(3), (2, 100))
    x = np.asarray(dcgan.generate(model.cfg, model.params, z))
    kw = dict(steps=4, restarts=2, seed=3, start="random")
    ref = invert(model, x, space="z", **kw)
    one = invert(model, x, space=MGanSpace(1, 2, importance=False), **kw)
    np.testing.assert_array_equal(one.latents["z"][:, 0], ref.latents["z"])
    np.testing.assert_array_equal(one.history, ref.history)
    full = invert(model, x, space="mgan:3@2", **kw)
    assert full.latents["z"].shape == (2, 3, 100) and full.latents["alpha"].shape == (2, 3, 256)
    assert np.all(full.restart_losses < full.history[0])
    part = invert(model, x[1:], space="mgan:3@2", image_indices=[1], **kw)
    np.testing.assert_array_equal(part.latents["alpha"][0], full.latents["alpha"][1])
    np.testing.assert_array_equal(part.history[:, 0], full.history[:, 1])


def test_bad_specs(model):
    for spec, words in [("mgan:4", "mgan:N@L"), ("mgan:0@2", ">= 1"), ("mgan:4@5", "L must be in 1..4")]:
        with pytest.raises(ConfigError, match=words):
            invert(model, np.zeros((1, 64, 64, 3), np.float32), space=spec, steps=1)
