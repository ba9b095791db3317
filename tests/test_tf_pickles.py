"""TF-era StyleGAN2 (`G_main`) pickles read without TensorFlow or torch: parity with the official TF outputs
(golden README 10) from the TF-layout npz and from the official snapshot pickle, the legacy.py facts of the
conversion, and one-line refusals."""

import jax
import numpy as np
import pytest

import jaxinv
from jaxinv.errors import CheckpointError
from jaxinv.generators import Generator
from jaxinv.invert import invert
from jaxinv.parity.core import load_case, run_case
from tests.conftest import GOLDEN, require
from weights_convert.source import read_source
from weights_convert.tf_pickles import stylegan2_from_variables
from weights_convert.torch_formats import load_nvlabs_pickle

CASE = GOLDEN / "stylegan2tf_r32_skip"
PKL = GOLDEN / "containers" / "stylegan2tf_r32_skip.pkl"


def _passing_checks(prefix, weights) -> set[str]:
    """The parity tool's checks of a case (weights: None = the TF-layout npz); all must pass."""
    require(prefix.with_name(prefix.name + ".io.npz"))
    checks = list(run_case(load_case(prefix, require(weights) if weights else None)))
    failed = [(c.name, *c.result()[:2]) for c in checks if not c.result()[2]]
    assert not failed, failed
    return {c.name for c in checks}


@pytest.mark.parametrize("weights", [None, PKL], ids=["npz", "pickle"])
def test_parity_with_the_official_tf_outputs(weights):
    names = _passing_checks(CASE, weights)
    assert {"ws", "img", "ws_psi", "img_psi", "ws_psi_cutoff_b", "img_psi_cutoff_b", "img_wplus"} <= names
    assert sum(n.startswith("styles.") for n in names) == 11 and sum(n.startswith("block_img.") for n in names) == 4


def test_conversion_facts_of_legacy_py():
    """The mappings the official legacy.py cross-check states bit-exact (golden README 10.5)."""
    gs = load_nvlabs_pickle(require(PKL))[2]
    tf = gs.params()
    sd = read_source(PKL).state_dict
    np.testing.assert_array_equal(sd["mapping.w_avg"], tf["dlatent_avg"])
    np.testing.assert_array_equal(sd["synthesis.b4.const"], tf["synthesis/4x4/Const/const"][0])
    np.testing.assert_array_equal(sd["synthesis.b8.conv0.affine.bias"], tf["synthesis/8x8/Conv0_up/mod_bias"] + 1)
    # Conv0_up is stored flipped; [kh, kw, in, out] -> [out, in, kh, kw]
    w = tf["synthesis/8x8/Conv0_up/weight"]
    np.testing.assert_array_equal(sd["synthesis.b8.conv0.weight"], w[::-1, ::-1].transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(sd["synthesis.b8.conv0.noise_const"], tf["synthesis/noise1"][0, 0])


def test_load_and_render_through_the_engine():
    model = jaxinv.load(require(PKL))
    gen = Generator.from_model(model)
    assert (gen.family, gen.img_resolution, gen.num_ws, gen.w_dim) == ("stylegan2", 32, 8, 64)
    io = np.load(CASE.with_name(CASE.name + ".io.npz"))
    img = np.asarray(gen(io["z"][:1]))
    assert img.shape == (1, 32, 32, 3) and np.isfinite(img).all()


def _variables():
    gs = load_nvlabs_pickle(require(PKL))[2]
    return gs.static_kwargs, gs.params()


@pytest.mark.parametrize("edit, words", [
    (lambda kw, tf: kw.update(unknown_switch=1), "build kwargs this reader does not know: ['unknown_switch']"),
    (lambda kw, tf: kw.update(label_size=10), "conditional StyleGAN2 TF pickles (label_size=10)"),
    (lambda kw, tf: tf.pop("synthesis/16x16/Conv1/bias"), "no variable 'synthesis/16x16/Conv1/bias'"),
    (lambda kw, tf: tf.update({"synthesis/extra/weight": np.zeros(3, np.float32)}), "cannot place"),
])
def test_malformed_gs_is_one_line(edit, words):
    kw, tf = _variables()
    kw, tf = dict(kw), dict(tf)
    edit(kw, tf)
    with pytest.raises(CheckpointError) as err:
        stylegan2_from_variables("x.pkl", "G_main", kw, tf)
    assert str(err.value).startswith("x.pkl: ") and words in str(err.value) and "\n" not in str(err.value)


def test_full_size_config_f_manifest_maps_onto_the_parameters():
    """stylegan2-ffhq-config-f.pkl's variables (names, shapes as pickled; golden manifest, no weights) fill every
    parameter of the converted config with the right shape, and nothing is left over."""
    import json

    from jaxinv.models import from_source
    from weights_convert.source import Source

    m = json.loads(require(GOLDEN / "manifests" / "stylegan2tf_ffhq1024_configf.json").read_text())
    loc = {"state['variables']": "", "state['components']['mapping']['variables']": "mapping/",
           "state['components']['synthesis']['variables']": "synthesis/"}
    tf = {loc[v["pickle_location"]] + v["pickle_name"]: np.zeros(v["shape"], np.float32)
          for v in m["variable_manifest"]}
    init, sd = stylegan2_from_variables("config-f", "G_main", m["static_kwargs_as_pickled"]["Gs"], tf)
    model = from_source(Source("stylegan2", init, sd, {"source": "config-f"}))
    gen = Generator.from_model(model)
    assert (gen.img_resolution, gen.num_ws, gen.w_dim, gen.z_dim) == (1024, m["num_ws"], m["w_dim"], 512)
    n_params = sum(int(np.prod(np.shape(a))) for a in jax.tree_util.tree_leaves(model.params))
    # every variable but lod is a parameter (w_avg included); noise inputs are [1, 1, R, R] -> [R, R]
    assert n_params == m["param_count_all_variables"] - 1


# ----------------------------------------------------------------------------------------------------------
# PGGAN (G_paper)

PG_CASE = GOLDEN / "pggan_r32"
PG_PKL = GOLDEN / "containers" / "pggan_r32.pkl"


@pytest.mark.parametrize("weights", [None, PG_PKL], ids=["npz", "pickle"])
def test_pggan_parity_with_the_official_tf_outputs(weights):
    assert _passing_checks(PG_CASE, weights) == {"img", "img_lod_a", "img_lod_b", "block_x.4x4", "block_x.8x8",
                                                 "block_x.16x16", "block_x.32x32"}


@pytest.mark.parametrize("layout", ["primary", "theano_import_fused_scale_false"])
def test_pggan_celebahq_manifest_maps_onto_the_parameters(layout):
    """The published CelebA-HQ file's variables in both layouts it may have (golden README 10.8)."""
    import json

    from jaxinv.models import from_source, pggan
    from weights_convert.source import Source

    m = json.loads(require(GOLDEN / "manifests" / "pggan_celebahq1024.json").read_text())
    if layout == "primary":
        kw, manifest = m["static_kwargs_as_pickled"]["Gs"], m["variable_manifest"]
    else:
        alt = m["alternative_layouts"][layout]
        kw, manifest = alt["pickle_state"]["static_kwargs"], alt["variable_manifest"]
    tf = {v["pickle_name"]: np.zeros(v["shape"], np.float32) for v in manifest}
    model = from_source(Source("pggan", {"build_func": "G_paper", "static_kwargs": kw}, tf, {"source": layout}))
    assert (model.cfg.z_dim, model.cfg.img_resolution, model.cfg.fused_scale) == (512, 1024, layout == "primary")
    assert set(tf) == set(pggan.variable_table(model.cfg))
    n = sum(int(np.prod(np.shape(a))) for a in jax.tree_util.tree_leaves(model.params))
    assert n == m["param_count"]  # every trainable variable; lod is not a parameter


def test_pggan_in_the_engine_recovers_its_own_sample():
    model = jaxinv.load(require(PG_PKL))
    gen = Generator.from_model(model)
    assert (gen.family, gen.z_dim, gen.img_resolution, gen.has_w) == ("pggan", 64, 32, False)
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (1, 64)))
    target = np.asarray(gen(z))
    res = invert(model, target, space="z", optimizer="lbfgs", steps=60, restarts=2)
    assert float(res.losses[0]) < 1e-4 * float(np.mean(target**2))  # measured: MSE 1.5e-12, power 0.54


# ----------------------------------------------------------------------------------------------------------
# StyleGAN v1 (G_style)

S1_CASE = GOLDEN / "stylegan1_r32"
S1_PKL = GOLDEN / "containers" / "stylegan1_r32.pkl"


@pytest.mark.parametrize("weights", [None, S1_PKL], ids=["npz", "pickle"])
def test_stylegan1_parity_with_the_official_tf_outputs(weights):
    names = _passing_checks(S1_CASE, weights)
    assert {"ws", "img", "ws_psi", "img_psi", "ws_psi_cutoff_b", "img_psi_cutoff_b", "img_wplus", "img_wplus_fused",
            "img_lod_a", "img_lod_b"} <= names
    assert sum(n.startswith("styles.") for n in names) == 8 and sum(n.startswith("layer_out.") for n in names) == 8


def test_stylegan1_ffhq_manifest_maps_onto_the_parameters():
    import json

    from jaxinv.models import from_source
    from weights_convert.source import Source

    m = json.loads(require(GOLDEN / "manifests" / "stylegan1_ffhq1024.json").read_text())
    loc = {"state['variables']": "", "state['components']['mapping']['variables']": "mapping/",
           "state['components']['synthesis']['variables']": "synthesis/"}
    tf = {loc[v["pickle_location"]] + v["pickle_name"]: np.zeros(v["shape"], np.float32)
          for v in m["variable_manifest"]}
    kw = m["static_kwargs_as_pickled"]
    init = {"build_func": "G_style", "static_kwargs": kw["Gs"], "mapping_kwargs": kw["mapping"],
            "synthesis_kwargs": kw["synthesis"]}
    model = from_source(Source("stylegan1", init, tf, {"source": "ffhq"}))
    gen = Generator.from_model(model)
    assert (gen.img_resolution, gen.num_ws, gen.w_dim) == (1024, m["num_ws"], m["w_dim"])
    fused = [model.cfg.fused(res) for name, res, *_ in model.cfg.layers if name.endswith("Conv0_up")]
    assert fused == [False] * 4 + [True] * 4  # 8..64 not, 128..1024 fused; 'auto': the fused up-conv from 128 px
    n = sum(int(np.prod(np.shape(a))) for a in jax.tree_util.tree_leaves(model.params))
    assert n == m["param_count_all_variables"] - 2  # all but the two lod variables


def test_stylegan1_in_the_engine_w_space():
    model = jaxinv.load(require(S1_PKL))
    gen = Generator.from_model(model)
    assert (gen.family, gen.num_ws, gen.w_dim, len(gen.noise_layers)) == ("stylegan1", 8, 64, 8)
    ws = np.asarray(gen.mapping(np.asarray(jax.random.normal(jax.random.PRNGKey(3), (1, 64)))))
    target = np.asarray(gen.synthesis(ws))
    res = invert(model, target, space="w", optimizer="adam", steps=200, restarts=2)
    assert float(res.losses[0]) < 1e-3 * float(np.mean(target**2))  # measured: MSE 5.3e-5, power 1.85


@pytest.mark.parametrize("space, options", [("z", {}), ("w+", {}), ("s", {}), ("w", {"noise": True})])
def test_stylegan1_other_spaces_reduce_the_loss(space, options):
    model = jaxinv.load(require(S1_PKL))
    gen = Generator.from_model(model)
    target = np.asarray(gen(np.asarray(jax.random.normal(jax.random.PRNGKey(4), (1, 64)))))
    res = invert(model, target, space=space, space_options=options, optimizer="adam", steps=30)
    assert np.isfinite(res.history).all() and res.losses[0] < 0.5 * res.history[0, 0, 0]



@pytest.mark.parametrize("pkl", [S1_PKL, PG_PKL], ids=["stylegan1", "pggan"])
def test_cli_invert_takes_a_tf_pickle(tmp_path, pkl):
    from PIL import Image

    from jaxinv import cli

    gen = Generator.from_model(jaxinv.load(require(pkl)))
    img = np.asarray(gen(np.asarray(jax.random.normal(jax.random.PRNGKey(0), (1, gen.z_dim)))))[0]
    (tmp_path / "in").mkdir()
    Image.fromarray(np.clip(np.rint((img + 1) * 127.5), 0, 255).astype(np.uint8)).save(tmp_path / "in" / "a.png")
    argv = ["invert", "--model", str(pkl), "--images", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
            "--crop", "none", "--steps", "3"]
    assert cli.main(argv) == 0
    assert (tmp_path / "out" / "a" / "proj.png").is_file() and (tmp_path / "out" / "a" / "latent.npz").is_file()
