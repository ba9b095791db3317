"""Pivotal tuning: every image's loss falls, the base generator is untouched, deltas round-trip to files and
checkpoints, layer / low-rank restrictions, locality regulariser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinv
from jaxinv import pti
from jaxinv.errors import ConfigError
from jaxinv.generators import Generator, render_jit
from jaxinv.models import dcgan
from jaxinv.parity.core import assert_parity
from tests.conftest import GOLDEN, require

CASE = "sg2ada_r32_cond10_skip"


@pytest.fixture(scope="module")
def sg2():
    model = jaxinv.load(require(GOLDEN / f"{CASE}.weights.npz"))
    gen = Generator.from_model(model)
    n = 3
    z = jax.random.normal(jax.random.PRNGKey(0), (2 * n, model.cfg.z_dim))
    c = jax.nn.one_hot(jnp.arange(2 * n) % model.cfg.c_dim, model.cfg.c_dim)
    ws = jax.jit(lambda g, z, c: g.mapping(z, c))(gen, z, c)
    targets = np.asarray(render_jit(gen, {"ws": ws[n:]}))  # other codes' images: something to tune to
    return model, np.asarray(ws[:n]), np.asarray(c[:n]), targets


def _snapshot(params):
    return {p: np.array(leaf, copy=True) for p, leaf in zip(pti.param_paths(params),
                                                            jax.tree_util.tree_leaves(params), strict=True)}


def test_select_paths(sg2):
    model = sg2[0]
    paths = pti.select_paths(model.params, ("ws",))
    assert paths and not [p for p in paths if p.startswith("mapping/") or p.endswith("noise_const")]
    assert all(p.startswith("synthesis/") for p in paths)
    assert "mapping/fc0/weight" in pti.select_paths(model.params, ("z",))
    only = pti.select_paths(model.params, ("ws",), layers=("b32",))
    assert only and all("/b32/" in p for p in only)
    with pytest.raises(ConfigError, match="no tunable parameter"):
        pti.select_paths(model.params, ("ws",), layers=("no_such_layer",))


def test_tune_lowers_every_loss_keeps_base_and_round_trips(sg2, tmp_path):
    """Low-rank deltas on two blocks: every image's loss falls; the base params are bit-identical afterwards and
    still render what they rendered; delta files and tuned checkpoints reproduce the tuned images."""
    model, ws, c, targets = sg2
    before = _snapshot(model.params)
    res = pti.tune(model, targets, {"ws": ws, "c": c}, steps=6, lr=3e-2, rank=2, layers=("b16", "b32"), lanes="vmap")
    assert res.history.shape == (6, len(ws))
    assert np.all(res.loss_after < res.loss_before), f"before {res.loss_before}, after {res.loss_after}"
    np.testing.assert_allclose(res.history[0], res.loss_before, rtol=1e-5)  # step 0 runs the base generator
    mse = lambda a: np.mean((a - targets) ** 2, axis=(1, 2, 3))  # noqa: E731
    assert np.all(mse(res.images_after) < mse(res.images_before))

    changed = [p for p, v in _snapshot(model.params).items() if not np.array_equal(before[p], v)]
    assert not changed, f"base params modified: {changed[:5]}"
    base_img = np.asarray(render_jit(Generator.from_model(model), {"ws": jnp.asarray(ws)}))
    assert_parity(base_img, res.images_before, "base render after tuning")

    assert all("/b16/" in p or "/b32/" in p for p in res.paths)
    leaves = pti._leaves_by_path(model.params)
    w = "synthesis/b32/conv1/weight"
    assert res.deltas[w]["u"].shape[-1] == 2
    assert res.trainable_per_image < sum(int(np.prod(np.shape(leaves[p]))) for p in res.paths)

    f = pti.save_delta(tmp_path / "img0" / "pti_delta.npz", res.delta(0), {"image": "img0"})
    delta, meta = pti.load_delta(f)
    assert meta["image"] == "img0" and set(delta) == set(res.paths)
    assert_parity(pti.render_tuned(model, delta, {"ws": ws[:1]})[0], res.images_after[0],
                  "tuned render from the delta file")
    tuned = jaxinv.load(pti.save_tuned(model, delta, tmp_path / "tuned0"))
    img = np.asarray(render_jit(Generator.from_model(tuned), {"ws": jnp.asarray(ws[:1])}))
    assert_parity(img[0], res.images_after[0], "tuned checkpoint render")


def test_locality_regulariser_on_dcgan():
    model = dcgan.load_default()
    params = jax.tree_util.tree_map(jnp.asarray, model.params)
    z = jax.random.normal(jax.random.PRNGKey(3), (2, model.cfg.z_dim))
    target = np.asarray(model.module.generate(model.cfg, params, z[1:]))
    before = _snapshot(model.params)
    res = pti.tune(model, target, {"z": np.asarray(z[:1])}, steps=3, lr=1e-3, locality_weight=1.0)
    assert np.all(np.isfinite(res.history))
    # At step 0 the tuned generator is the base one, so the regulariser is exactly zero.
    np.testing.assert_allclose(res.history[0], res.loss_before, rtol=1e-6)
    assert np.all(res.loss_after < res.loss_before), f"before {res.loss_before}, after {res.loss_after}"
    assert all(np.array_equal(before[p], v) for p, v in _snapshot(model.params).items())


def test_bad_inputs(sg2):
    model, ws, _, targets = sg2
    with pytest.raises(ConfigError, match="pivots"):
        pti.tune(model, targets, {"ws": ws[:1]}, steps=1)
    with pytest.raises(ConfigError, match="lpips_params"):
        pti.tune(model, targets, {"ws": ws}, steps=1, lpips_weight=1.0)
    with pytest.raises(ConfigError, match="targets"):
        pti.tune(model, targets[:, :8], {"ws": ws}, steps=1)
