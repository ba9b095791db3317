"""Multi-code GAN prior space (jaxinv.mgan) on the real DCGAN and the golden StyleGAN2 / StyleGAN3 / BigGAN: the
split forward is the generator's, N = 1 with fixed all-ones importance is the Z space step for step, batching is
transparent, bad specs are one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinv
from jaxinv.errors import ConfigError
from jaxinv.generators import Generator, render_jit
from jaxinv.invert import invert, space_from_spec
from jaxinv.mgan import MGanSpace, feature_channels, num_blocks
from jaxinv.models import dcgan
from jaxinv.parity.core import assert_parity
from tests.conftest import GOLDEN, require


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
    with pytest.raises(ConfigError, match=r"space 'mgan': unknown option\(s\) \['embedding'\]"):
        invert(model, np.zeros((1, 64, 64, 3), np.float32), space="mgan:2@2", space_options={"embedding": True},
               steps=1)


# StyleGAN2 (skip, resnet; conditional), StyleGAN3 and BigGAN-deep on the golden generators (random weights).
SPLIT_CASES = ["sg2ada_r32_cond10_skip", "sg2ada_r32_resnet_clamp", "sg3t_r64", "biggan_128_ch8"]


def _golden(case):
    return Generator.from_model(jaxinv.load(require(GOLDEN / f"{case}.weights.npz")),
                                truncation_psi=0.5 if case.startswith("biggan") else None)


def _class(gen, n):
    return jnp.asarray(np.eye(gen.c_dim, dtype=np.float32)[np.arange(n) % gen.c_dim]) if gen.c_dim else None


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_split_forward_other_families(case):
    """At split points first to last: one code with all-ones importance is the generator's forward; two equal codes with
    importance 1/2 each too (the tail's mean code is the code); codes with importance (1, 0) give the first
    code's features composed with the mean code's tail."""
    gen = _golden(case)
    sp = space_from_spec("mgan:1@1").prepare(gen)
    z = sp.init(jax.random.PRNGKey(0), gen, 2)["z"]  # [2, 1, z_dim] (BigGAN: truncated normal u)
    c = _class(gen, 2)
    zin = z[:, 0] if gen.z_bound is None else gen.truncation_psi * z[:, 0]
    ref = np.asarray(render_jit(gen, {"z": zin} if c is None else {"z": zin, "c": c}))
    render = jax.jit(lambda s, lat: s.render(gen, lat, c), static_argnums=0)
    assert num_blocks(gen) >= 3
    for layer in sorted({1, 2, num_blocks(gen) // 2, num_blocks(gen) - 1}):  # every layer: minutes of compiling
        sp = space_from_spec(f"mgan:1@{layer}").prepare(gen)
        ch = feature_channels(gen, layer)
        assert_parity(np.asarray(render(sp, {"z": z, "alpha": jnp.ones((2, 1, ch))})), ref, f"{case} @{layer}")
        sp2 = space_from_spec(f"mgan:2@{layer}").prepare(gen)
        got = render(sp2, {"z": jnp.concatenate([z, z], axis=1), "alpha": jnp.full((2, 2, ch), 0.5)})
        assert_parity(np.asarray(got), ref, f"{case} @{layer}, two equal codes")
    with pytest.raises(ConfigError, match=f"L must be in 1..{num_blocks(gen) - 1}"):
        invert(gen, np.zeros((1, gen.img_resolution, gen.img_resolution, gen.img_channels), np.float32),
               space=f"mgan:2@{num_blocks(gen)}", steps=1, class_idx=0 if gen.c_dim else None)


@pytest.mark.parametrize("case", ["sg2ada_r32_cond10_skip", "biggan_128_ch8"])
def test_one_code_is_z_inversion_other_families(case):
    gen = _golden(case)
    c = _class(gen, 2)
    z = space_from_spec("z").prepare(gen).init(jax.random.PRNGKey(5), gen, 2)["z"]
    zin = z if gen.z_bound is None else gen.truncation_psi * z
    x = np.asarray(render_jit(gen, {"z": zin} if c is None else {"z": zin, "c": c}))
    kw = dict(steps=3, restarts=2, seed=3, start="random", c=c)
    ref = invert(gen, x, space="z", **kw)
    one = invert(gen, x, space=MGanSpace(1, 2, importance=False), **kw)
    np.testing.assert_allclose(one.latents["z"][:, 0], ref.latents["z"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(one.history, ref.history, rtol=1e-4)
    full = invert(gen, x, space="mgan:3@2", **kw)
    assert np.all(full.restart_losses < full.history[0])
    if gen.z_bound is not None:
        assert np.abs(full.latents["z"]).max() <= gen.z_bound


def test_unsupported_family():
    model = jaxinv.load(require(GOLDEN / "rosinality_r64_cm1.weights.npz"))
    with pytest.raises(ConfigError, match="rosinality generator is not supported"):
        invert(model, np.zeros((1, 64, 64, 3), np.float32), space="mgan:2@2", steps=1)
