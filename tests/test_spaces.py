"""Latent spaces: each parameterisation round-trips to the generator input and the official outputs.

StyleGAN2 cases use the golden `sg2ada_r64_skip` (official img_wplus / img_wplus_none / styles), and the
projector golden's w_avg / w_std (official project(): 1000 mapped samples of RandomState(123))."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import spaces
from jaxinv.errors import ConfigError
from jaxinv.generators import Generator
from jaxinv.models import dcgan, from_source
from jaxinv.models import stylegan2 as sg2
from jaxinv.parity.core import assert_parity
from tests.conftest import GOLDEN, require
from weights_convert.source import read_golden_npz

CASE = "sg2ada_r64_skip"
NUM_SAMPLES = 1000  # as the projector golden (official default 10000)


@pytest.fixture(scope="module")
def sg():
    require(GOLDEN / f"{CASE}.weights.npz")
    gen = Generator.from_model(from_source(read_golden_npz(GOLDEN / f"{CASE}.weights.npz")))
    with np.load(GOLDEN / f"{CASE}.io.npz") as io:
        ref = {k: io[k] for k in io.files}
    render = jax.jit(lambda g, inp: g.render(inp))
    return gen, ref, render


@pytest.fixture(scope="module")
def prepared(sg, tmp_path_factory):
    gen, _, _ = sg
    cache = str(tmp_path_factory.mktemp("cache"))
    opts = {"num_samples": NUM_SAMPLES}
    return {
        "w": spaces.WSpace(**opts).prepare(gen),
        "w+": spaces.WPlusSpace(**opts).prepare(gen),
        "s": spaces.SSpace(**opts).prepare(gen),
        "p": spaces.PSpace(cache=cache, **opts).prepare(gen),
        "pn": spaces.PNSpace(cache=cache, **opts).prepare(gen),
        "cache": cache,
    }


def _nchw(img):
    return np.asarray(img).transpose(0, 3, 1, 2)


def test_z_space_dcgan_round_trip():
    model = dcgan.load_default()
    gen = Generator.from_model(model)
    sp = spaces.ZSpace()
    lat = sp.init(jax.random.PRNGKey(0), gen, 3)
    assert lat["z"].shape == (3, 100)
    assert_parity(gen.render(sp.to_input(gen, lat)), dcgan.generate(model.cfg, model.params, lat["z"]), "Z dcgan")
    center = sp.init(jax.random.PRNGKey(0), gen, 2, center=True)
    np.testing.assert_array_equal(center["z"], np.zeros((2, 100)))
    # PULSE hypersphere: the generator sees z at radius sqrt(z_dim); project() puts the variable there.
    ssp = spaces.ZSpace(sphere=True)
    z = ssp.to_input(gen, {"z": lat["z"] * 3.0})["z"]
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), np.sqrt(100.0), rtol=1e-5)
    assert_parity(ssp.project({"z": lat["z"] * 3.0})["z"], z, "Z sphere projection")
    # Prior: mean of squares, ~1 for N(0, I) samples.
    big = sp.init(jax.random.PRNGKey(1), gen, 2000)
    assert abs(float(jnp.mean(sp.prior(big))) - 1.0) < 0.02
    # Only Z applies to the DCGAN.
    for name in ("w", "w+", "s", "p", "pn"):
        with pytest.raises(ConfigError, match="only a Z space"):
            spaces.check_space(spaces.make_space(name), gen)


def test_z_space_stylegan2(sg):
    gen, ref, render = sg
    out = render(gen, spaces.ZSpace().to_input(gen, {"z": jnp.asarray(ref["z"])}))
    assert_parity(_nchw(out), ref["img"], "Z sg2 -> mapping + synthesis vs golden img")


def test_w_statistics_match_official_projector(sg):
    gen, _, _ = sg
    with np.load(require(GOLDEN / "projector_sg2ada_r64_skip.io.npz")) as io:
        w_avg, w_std, seed = io["w_avg"], io["w_std"], int(io["z_seed"])
    got_avg, got_std = spaces.w_statistics(gen, NUM_SAMPLES, seed)
    assert_parity(got_avg, w_avg.reshape(-1), "w_avg")
    assert abs(float(got_std) - float(w_std)) <= 1e-4 * float(w_std), f"w_std {got_std} vs {w_std}"


def test_w_and_wplus_round_trip(sg, prepared):
    gen, ref, render = sg
    wplus = jnp.asarray(ref["wplus"])
    assert_parity(_nchw(render(gen, prepared["w+"].to_input(gen, {"w": wplus}))), ref["img_wplus"], "W+ vs img_wplus")
    w = jnp.asarray(ref["ws"][:, 0])
    inp = prepared["w"].to_input(gen, {"w": w})
    assert_parity(inp["ws"], ref["ws"], "W broadcast vs golden ws")
    assert_parity(_nchw(render(gen, inp)), ref["img"], "W vs golden img")
    # The official start: w_avg of mapped samples, broadcast.
    c = prepared["w+"].init(jax.random.PRNGKey(0), gen, 2, center=True)["w"]
    assert_parity(c, np.broadcast_to(prepared["w"].w_avg, (2, gen.num_ws, gen.w_dim)), "W+ centre")
    r = prepared["w"].init(jax.random.PRNGKey(0), gen, 2)["w"]
    assert_parity(r, sg2.mapping(gen.cfg, gen.params, jax.random.normal(jax.random.split(jax.random.PRNGKey(0))[0],
                                                                     (2, gen.z_dim)))[:, 0], "W random start")
    # Latent noise is in units of w_std (official w_noise_scale = w_std * factor).
    d = prepared["w"].perturb({"w": jnp.zeros((4000, gen.w_dim))}, jax.random.PRNGKey(3), 0.5)["w"]
    assert abs(float(jnp.std(d)) / (0.5 * float(prepared["w"].w_std)) - 1.0) < 0.01


def test_s_space_round_trip(sg, prepared):
    gen, ref, render = sg
    styles = {k[len("styles.synthesis."):-len(".affine")]: jnp.asarray(v) for k, v in ref.items()
              if k.startswith("styles.")}
    assert set(styles) == {name for name, *_ in [(n,) for n in gen.cfg.layer_names]}
    inp = prepared["s"].to_input(gen, {"s": styles})
    assert_parity(_nchw(render(gen, inp)), ref["img_wplus"], "S (official styles) vs img_wplus")
    mine = gen.styles(jnp.asarray(ref["wplus"]))
    for k, v in styles.items():
        assert_parity(mine[k], v, f"styles {k}")


def test_p_and_pn_round_trip(sg, prepared):
    gen, ref, render = sg
    wplus = jnp.asarray(ref["wplus"])
    p = spaces.p_from_w(gen, wplus)
    assert_parity(spaces.w_from_p(gen, p), wplus, "w -> P -> w")
    # lrelu(0.2) * sqrt(2) undone: slope-5 leaky ReLU of w / sqrt(2), checked in numpy.
    wn = np.asarray(wplus) / np.sqrt(2)
    assert_parity(p, np.where(wn >= 0, wn, 5.0 * wn), "P numpy reference")
    inp = prepared["p"].to_input(gen, {"p": p})
    assert_parity(inp["ws"], wplus, "P -> ws")
    assert_parity(_nchw(render(gen, inp)), ref["img_wplus"], "P vs img_wplus")
    pn = prepared["pn"]
    v = pn.whiten(p)
    assert_parity(pn.to_input(gen, {"v": v})["ws"], wplus, "P_N -> ws")
    # Whitening: the mapped samples' P has zero mean and identity covariance in v.
    w = spaces.mapped_w_samples(gen, NUM_SAMPLES, 123)
    vs = np.asarray(pn.whiten(spaces.p_from_w(gen, jnp.asarray(w))), np.float64)
    assert_parity(vs.mean(0), np.zeros(gen.w_dim), "whitened mean")
    assert_parity(np.cov(vs, rowvar=False), np.eye(gen.w_dim), "whitened covariance")
    # Centre of P_N is the P mean.
    c = pn.init(jax.random.PRNGKey(0), gen, 1, center=True)
    assert_parity(pn.unwhiten(c["v"])[0, 0], pn.p_mean, "P_N centre")


def test_pn_statistics_cached_on_disk(sg, prepared, monkeypatch):
    gen, _, _ = sg
    files = list((spaces.Path(prepared["cache"]) / "pn_stats").glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith(gen.fingerprint()[:32])
    monkeypatch.setattr(spaces, "mapped_w_samples", lambda *a, **k: pytest.fail("statistics recomputed"))
    again = spaces.PNSpace(cache=prepared["cache"], num_samples=NUM_SAMPLES).prepare(gen)
    np.testing.assert_array_equal(again.p_basis, prepared["pn"].p_basis)


def test_noise_maps_as_free_variables(sg, prepared):
    gen, ref, render = sg
    sp = dataclasses.replace(prepared["w+"], noise=True)
    lat = sp.init(jax.random.PRNGKey(0), gen, 3)
    assert {k: v.shape for k, v in lat["noise"].items()} == {n: (3, r, r) for n, r in gen.noise_layers}
    wplus = jnp.asarray(ref["wplus"])
    sg_params = gen.params["synthesis"]
    stored = {n: jnp.broadcast_to(sg_params[n.split(".")[0]][n.split(".")[1]]["noise_const"], (3, r, r))
              for n, r in gen.noise_layers}
    out = render(gen, sp.to_input(gen, {"w": wplus, "noise": stored}))
    assert_parity(_nchw(out), ref["img_wplus"], "stored noise maps as free variables vs img_wplus (const)")
    zeros = {n: jnp.zeros((3, r, r)) for n, r in gen.noise_layers}
    out = render(gen, sp.to_input(gen, {"w": wplus, "noise": zeros}))
    assert_parity(_nchw(out), ref["img_wplus_none"], "zero noise maps vs img_wplus_none")
    # Official renormalisation: zero mean, unit mean square per map and item.
    ren = sp.project({"w": wplus, "noise": {k: 3 * v + 1 for k, v in lat["noise"].items()}})["noise"]
    for k, v in ren.items():
        assert_parity(jnp.mean(v, axis=(1, 2)), np.zeros(3), f"{k} mean")
        assert_parity(jnp.mean(v * v, axis=(1, 2)), np.ones(3), f"{k} mean square")
    assert sp.noise_maps(lat) is lat["noise"]
    assert prepared["w+"].noise_maps({"w": wplus}) is None


def test_priors_are_about_one_on_model_samples(sg, prepared):
    gen, _, _ = sg
    key = jax.random.PRNGKey(5)
    for name in ("w", "w+", "s", "p", "pn"):
        sp = prepared[name]
        val = float(jnp.mean(sp.prior(sp.init(key, gen, 256))))
        assert 0.5 < val < 2.0, f"{name} prior on samples: {val}"
        cen = float(jnp.max(sp.prior(sp.init(key, gen, 2, center=True))))
        assert cen < 0.05 * val, f"{name} prior at the centre: {cen}"


def test_make_space_errors():
    with pytest.raises(ConfigError, match="unknown latent space"):
        spaces.make_space("q")
    with pytest.raises(ConfigError, match="unknown option"):
        spaces.make_space("z", noise=True)
    assert isinstance(spaces.make_space("W+"), spaces.WPlusSpace)
    assert isinstance(spaces.make_space("p_n"), spaces.PNSpace)
    with pytest.raises(ConfigError, match="prepare"):
        spaces.WSpace().init(jax.random.PRNGKey(0), None, 1)


def test_rosinality_adaptor_round_trip():
    # rosinality's G.style gives one w; the adaptor broadcasts it, and W+ / S drive its synthesis.
    require(GOLDEN / "rosinality_r64_cm1.weights.npz")
    gen = Generator.from_model(from_source(read_golden_npz(GOLDEN / "rosinality_r64_cm1.weights.npz")))
    with np.load(GOLDEN / "rosinality_r64_cm1.io.npz") as io:
        ref = {k: io[k] for k in io.files}
    ws = gen.mapping(jnp.asarray(ref["z"]))
    assert_parity(ws, np.broadcast_to(ref["w"][:, None], ws.shape), "rosinality mapping (broadcast)")
    out = jax.jit(lambda g, w: g.render(spaces.WPlusSpace().to_input(g, {"w": w})))(gen, jnp.asarray(ref["wplus"]))
    assert_parity(_nchw(out), ref["img_wplus"], "rosinality W+ vs img_wplus")
    assert [n for n, _ in gen.noise_layers] and gen.mapping_output_activation == (0.2, np.sqrt(2.0))
