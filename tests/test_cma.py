"""CMA-ES, BasinCMA and the Adam baseline reduce the loss on known-latent targets; BigGAN z + class embedding."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinv
from jaxinv import cma
from jaxinv.errors import ConfigError
from jaxinv.generators import Generator, render_jit
from jaxinv.models import biggan, dcgan
from jaxinv.parity.core import assert_parity
from tests.conftest import GOLDEN, ROOT, require


@pytest.fixture(scope="module")
def known():
    """Targets rendered by the real DCGAN face GAN from known latents; the search starts at z = 0."""
    model = dcgan.load_default()
    z = jax.random.normal(jax.random.PRNGKey(11), (2, model.cfg.z_dim))
    targets = np.asarray(render_jit(Generator.from_model(model), {"z": z}))
    init, scales, fixed = cma.default_init(model, 2)
    return model, init, scales, fixed, targets


def _check(res, method):
    assert np.all(res.losses < res.initial_losses), f"{method}: start {res.initial_losses} -> {res.losses}"
    assert np.all(np.diff(res.history, axis=0) <= 0), f"{method}: best-so-far loss rose: {res.history}"
    np.testing.assert_allclose(res.history[-1], res.losses, rtol=1e-5)


@pytest.mark.parametrize("method,opts", [
    ("cma", dict(generations=4, sigma=0.5)),
    ("basincma", dict(generations=2, popsize=4, adam_steps=2, lr=0.1, sigma=0.5)),
    ("adam", dict(steps=6, lr=0.1)),
])
def test_search_reduces_loss_on_known_latent(known, method, opts):
    model, init, scales, fixed, targets = known
    if method == "adam":  # z = 0 is a stationary point of this DCGAN (dead ReLUs): start from a prior sample
        init = {"z": np.asarray(jax.random.normal(jax.random.PRNGKey(5), init["z"].shape))}
    res = cma.search(model, targets, init, scales=scales, fixed=fixed, method=method, seed=1, **opts)
    _check(res, method)
    d = model.cfg.z_dim
    pop = opts.get("popsize") or cma.default_popsize(d)
    if method == "adam":
        assert res.evaluations == opts["steps"] + 1 and res.history.shape == (opts["steps"], 2)
    else:
        k = opts.get("adam_steps", 0)
        assert res.popsize == pop and res.history.shape == (opts["generations"], 2)
        assert res.evaluations == 1 + opts["generations"] * pop * (k + 1 if method == "basincma" else 1)
    # the returned inputs render the returned images, whose loss is the reported one
    img = np.asarray(render_jit(Generator.from_model(model), {"z": jnp.asarray(res.inputs["z"])}))
    np.testing.assert_allclose(np.mean((img - targets) ** 2, axis=(1, 2, 3)), res.losses, rtol=1e-4)


def test_biggan_z_and_class_embedding():
    model = jaxinv.load(require(GOLDEN / "biggan_128_ch8.weights.npz"))
    labels = [1, 500]
    init, scales, fixed = cma.default_init(model, 2, class_labels=labels, truncation_psi=0.5)
    params = jax.tree_util.tree_map(jnp.asarray, model.params)
    emb = np.asarray(biggan.embed(model.cfg, params, biggan.one_hot(labels, model.cfg.num_classes)))
    np.testing.assert_allclose(init["embedding"], emb, rtol=1e-6, atol=1e-6)
    assert set(init) == {"z", "embedding"} and scales["z"] == 0.5 and not fixed
    # The generator's embedding input is the official class-vector path with the embedding precomputed.
    gen = Generator.from_model(model, truncation_psi=0.5)
    z = 0.5 * jax.random.truncated_normal(jax.random.PRNGKey(2), -2, 2, (2, model.cfg.z_dim))
    target = np.asarray(render_jit(gen, {"z": z, "embedding": jnp.asarray(emb)}))
    ref = np.asarray(render_jit(gen, {"z": z, "c": jnp.asarray(biggan.one_hot(labels, model.cfg.num_classes))}))
    assert_parity(target, ref, "embedding path vs class-vector path")


def test_bad_options(known):
    model, init, scales, fixed, targets = known
    with pytest.raises(ConfigError, match="method"):
        cma.SearchConfig(method="nelder-mead")
    with pytest.raises(ConfigError, match="cma_vars"):
        cma.search(model, targets, init, cma_vars=("zz",))
    with pytest.raises(ConfigError, match="rows"):
        cma.search(model, targets[:1], init)
    with pytest.raises(ConfigError, match="class_labels"):
        cma.default_init(jaxinv.load(require(GOLDEN / "sg2ada_r32_cond10_skip.weights.npz")), 2, space="w")


def test_without_evosax_cma_says_which_extra():
    code = ("import sys; sys.modules['evosax'] = None\n"
            "try:\n    import jaxinv.cma\nexcept Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
    assert out.startswith("ConfigError jaxinv.cma needs evosax") and "pip install 'jaxinv[cma]'" in out
