"""NVlabs StyleGAN2 family: golden parity, converters from the official containers, config edge cases."""

import json

import jax
import numpy as np
import pytest

from jaxinv.checkpoint import load, save
from jaxinv.models import from_source, nn
from jaxinv.models import stylegan2 as sg2
from jaxinv.parity.core import assert_parity, load_case, run_case
from tests.conftest import GOLDEN, require
from weights_convert.source import Source, read_golden_npz, read_source

CASES = ["sg2ada_r64_skip", "sg2ada_r32_cond10_skip", "sg2ada_r32_resnet_clamp"]
CONTAINERS = {
    "sg2ada_r64_skip.pkl": "sg2ada_r64_skip",
    "sg2ada_r32_cond10_skip.pkl": "sg2ada_r32_cond10_skip",
    "sg2ada_r32_resnet_clamp.pkl": "sg2ada_r32_resnet_clamp",
    "sg3repo_stylegan2_r64_skip.pkl": "sg2ada_r64_skip",
}


def _golden_model(case):
    require(GOLDEN / f"{case}.weights.npz")
    return from_source(read_golden_npz(GOLDEN / f"{case}.weights.npz"))


@pytest.mark.parametrize("case", CASES)
def test_golden_parity(case):
    require(GOLDEN / f"{case}.io.npz")
    checks = list(run_case(load_case(GOLDEN / case)))
    assert len(checks) >= 20
    failures = []
    for check in checks:
        err, tol, ok = check.result()
        if not ok:
            failures.append(f"{check.name}: max_abs_err {err:.3e} > tol {tol:.3e}")
    assert not failures, "; ".join(failures)


@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_official_container_gives_golden_params(container):
    """Converting the official training snapshot (G_ema) yields exactly the golden params and config."""
    path = require(GOLDEN / "containers" / container)
    ref = _golden_model(CONTAINERS[container])
    got = from_source(read_source(path))
    assert got.cfg == ref.cfg
    leaves = jax.tree_util.tree_leaves_with_path(ref.params)
    got_flat = dict(jax.tree_util.tree_leaves_with_path(got.params))
    assert len(leaves) == len(got_flat)
    for key, value in leaves:
        np.testing.assert_array_equal(got_flat[key], value, err_msg=str(key))


def test_container_end_to_end_parity():
    weights = require(GOLDEN / "containers/sg2ada_r32_resnet_clamp.pkl")
    case = load_case(GOLDEN / "sg2ada_r32_resnet_clamp", weights)
    results = [c.result() for c in run_case(case)]
    assert results and all(ok for _, _, ok in results), [r for r in results if not r[2]]


def test_sg3repo_flat_kwargs_equivalence():
    """The stylegan3 repo's networks_stylegan2 (flat kwargs) gives the ada outputs (golden README 4.1b)."""
    eq = json.loads(require(GOLDEN / "sg3repo_stylegan2_equivalence.json").read_text())
    sd = dict(np.load(GOLDEN / "sg2ada_r64_skip.weights.npz"))
    init = {"class_name": "training.networks_stylegan2.Generator", "init_kwargs": eq["init_kwargs_stylegan3_repo"]}
    cfg, params = sg2.from_source(Source("stylegan2", init, sd, {}))
    io = np.load(GOLDEN / "sg2ada_r64_skip.io.npz")
    img = np.asarray(jax.jit(sg2.synthesis, static_argnums=0)(cfg, params, io["wplus"])).transpose(0, 3, 1, 2)
    assert_parity(img, io["img_wplus"], "img_wplus")


def test_sg3repo_default_conv_clamp_when_unstored():
    """Unstored conv_clamp defaults per repo: None in stylegan2-ada-pytorch, 256 in the stylegan3 repo."""
    kw = {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 3}
    ada = sg2.config_from_init({"class_name": "training.networks.Generator", "init_kwargs": kw})
    sg3 = sg2.config_from_init({"class_name": "training.networks_stylegan2.Generator", "init_kwargs": kw})
    assert ada.conv_clamp is None and sg3.conv_clamp == 256


def test_orig_architecture_and_random_noise():
    cfg = sg2.Config(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, channel_base=256, channel_max=32,
                     architecture="orig", resample_filter=tuple(map(tuple, np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64)))
    assert cfg.num_ws == 6 and [n for n in cfg.layer_names if "torgb" in n] == ["b16.torgb"]
    params = sg2.random_params(cfg)
    params["synthesis"]["b8"]["conv0"]["noise_strength"] = np.float32(0.5)
    z = np.random.RandomState(0).randn(2, 16).astype(np.float32)
    ws = sg2.mapping(cfg, params, z)
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    synth = jax.jit(lambda ws, key, mode: sg2.synthesis(cfg, params, ws, noise_mode=mode, key=key), static_argnums=2)
    a = synth(ws, k1, "random")
    b = synth(ws, k1, "random")
    c = synth(ws, k2, "random")
    d = synth(ws, None, "none")
    assert a.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3 and np.abs(np.asarray(a) - np.asarray(d)).max() > 1e-3


def test_s_space_round_trip():
    model = _golden_model("sg2ada_r64_skip")
    io = np.load(GOLDEN / "sg2ada_r64_skip.io.npz")
    styles = jax.jit(sg2.styles, static_argnums=0)(model.cfg, model.params, io["wplus"])
    synth = jax.jit(lambda p, ws, st: sg2.synthesis(model.cfg, p, ws, styles=st))
    a = synth(model.params, io["wplus"], None)
    b = synth(model.params, None, styles)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_checkpoint_round_trip(tmp_path):
    model = _golden_model("sg2ada_r32_cond10_skip")
    save(model, tmp_path / "m")
    back = load(tmp_path / "m")
    assert back.cfg == model.cfg and back.family == "stylegan2"
    assert back.provenance["format"] == "golden_npz" and len(back.provenance["sha256"]) == 64
    for (k, a), (_, b) in zip(jax.tree_util.tree_leaves_with_path(model.params),
                              jax.tree_util.tree_leaves_with_path(back.params), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=str(k))


def test_state_dict_mismatch_is_reported():
    sd = dict(np.load(require(GOLDEN / "sg2ada_r64_skip.weights.npz")))
    init = json.loads((GOLDEN / "sg2ada_r64_skip.init_kwargs.json").read_text())
    del sd["synthesis.b8.conv0.weight"]
    sd["synthesis.b8.bogus"] = np.zeros(3, np.float32)
    with pytest.raises(Exception, match=r"missing .*conv0.weight.*unexpected .*b8.bogus"):
        sg2.from_source(Source("stylegan2", init, sd, {"source": "x.npz"}))
    sd = dict(np.load(GOLDEN / "sg2ada_r64_skip.weights.npz"))
    sd["mapping.fc0.weight"] = sd["mapping.fc0.weight"][:, :5]
    with pytest.raises(Exception, match=r"mapping.fc0.weight has shape \(128, 5\), expected \(128, 128\)"):
        sg2.from_source(Source("stylegan2", init, sd, {"source": "x.npz"}))


@pytest.mark.parametrize("manifest", ["sg2ada_ffhq1024_stylegan2cfg", "sg2ada_512_cbase32768", "sg2ada_256_paper256",
                                      "sg3repo_stylegan2_1024"])
def test_full_size_manifest_names_and_shapes(manifest):
    """Every official name of the full-size configs maps to a param of the right shape (no missing/extra keys)."""
    m = json.loads(require(GOLDEN / "manifests" / f"{manifest}.json").read_text())
    entries = m.get("state_dict_manifest") or m.get("state_dict") or m.get("tensors")
    assert entries, f"no state_dict listing in {manifest}: keys {list(m)}"
    shapes = {e["name"]: tuple(e["shape"]) for e in entries}
    cls = m.get("class_name", "training.networks.Generator")
    cfg = sg2.config_from_init({"class_name": cls, "init_kwargs": m["init_kwargs"]})
    table = sg2.param_table(cfg)
    assert set(sg2.state_dict_names(cfg)) == set(shapes)
    for e in table:
        assert shapes[e.name] == e.shape, e.name
    # the module tree's weight paths are the official names (resample filters are build-time constants)
    module_paths = {".".join(k.key for k in path)
                    for path, _ in jax.tree_util.tree_leaves_with_path(nn.shapes(sg2.Generator, cfg))}
    assert module_paths == {n for n in shapes if not n.endswith("resample_filter")}


@pytest.mark.parametrize("arch,c_dim,use_noise", [("skip", 0, True), ("resnet", 3, True), ("orig", 0, False)])
def test_module_tree_declares_the_converter_params(arch, c_dim, use_noise):
    """`nn.shapes(Generator, cfg)` is exactly the converter's params tree (optional embed / noise / skip / torgb
    decided by the config), and a weight reads at its official path."""
    cfg = sg2.Config(z_dim=16, c_dim=c_dim, w_dim=16, img_resolution=16, channel_base=256, channel_max=32,
                     architecture=arch, use_noise=use_noise)
    params = sg2.random_params(cfg)
    want = nn.shapes(sg2.Generator, cfg)
    assert jax.tree.structure(want) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(params), strict=True):
        assert a.shape == np.shape(b)
    g = nn.build(sg2.Generator, cfg, params)
    np.testing.assert_array_equal(g.synthesis.b8.conv0.weight[...], params["synthesis"]["b8"]["conv0"]["weight"])
    np.testing.assert_array_equal(g.mapping.fc0.bias[...], params["mapping"]["fc0"]["bias"])
