"""The inversion engine on a golden StyleGAN2 (sg2ada_r64_skip): W / W+ projections reduce the loss.

Separate from test_invert.py because compiling a StyleGAN2 step loop takes tens of seconds on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.generators import Generator
from jaxinv.invert import invert
from jaxinv.models import from_source
from jaxinv.optim import LBFGS, Adam
from tests.conftest import GOLDEN, require
from weights_convert.source import read_golden_npz


@pytest.fixture(scope="module")
def case():
    require(GOLDEN / "sg2ada_r64_skip.weights.npz")
    m = from_source(read_golden_npz(GOLDEN / "sg2ada_r64_skip.weights.npz"))
    gen = Generator.from_model(m)
    with np.load(GOLDEN / "sg2ada_r64_skip.io.npz") as io:
        wplus = io["wplus"][:1]
    # Target from a known W+ latent (the projector golden's target), in the [-1, 1] range images have.
    target = np.clip(np.asarray(jax.jit(lambda g, w: g.synthesis(w))(gen, jnp.asarray(wplus))), -1, 1)
    return m, gen, target


def test_official_w_projection_with_noise_maps_reduces_loss(case):
    m, gen, target = case
    res = invert(m, target, space="w", loss="mse=1,noise=1e3", optimizer=Adam(), steps=8, seed=0,
                 space_options={"noise": True, "num_samples": 500})
    assert res.latents["w"].shape == (1, gen.w_dim)
    assert {k: v.shape for k, v in res.latents["noise"].items()} == {n: (1, r, r) for n, r in gen.noise_layers}
    assert res.losses[0] < 0.9 * res.history[0, 0, 0], (res.history[:, 0, 0], res.losses)


def test_lbfgs_wplus_projection_reduces_loss(case):
    m, gen, target = case
    res = invert(m, target, space="w+", loss="mse", optimizer=LBFGS(), steps=4, seed=0,
                 space_options={"num_samples": 500})
    assert res.latents["w"].shape == (1, gen.num_ws, gen.w_dim)
    assert res.losses[0] < 0.9 * res.history[0, 0, 0], (res.history[:, 0, 0], res.losses)
