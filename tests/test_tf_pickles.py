"""TF-era StyleGAN2 (`G_main`) pickles read without TensorFlow or torch: parity with the official TF outputs
(golden README 10) from the TF-layout npz and from the official snapshot pickle, the legacy.py facts of the
conversion, and one-line refusals."""

import jax
import numpy as np
import pytest

import jaxinv
from jaxinv.errors import CheckpointError
from jaxinv.generators import Generator
from jaxinv.parity.core import load_case, run_case
from tests.conftest import GOLDEN, require
from weights_convert.source import read_source
from weights_convert.tf_pickles import stylegan2_from_variables
from weights_convert.torch_formats import load_nvlabs_pickle

CASE = GOLDEN / "stylegan2tf_r32_skip"
PKL = GOLDEN / "containers" / "stylegan2tf_r32_skip.pkl"


@pytest.mark.parametrize("weights", [None, PKL], ids=["npz", "pickle"])
def test_parity_with_the_official_tf_outputs(weights):
    require(CASE.with_name(CASE.name + ".io.npz"))
    case = load_case(CASE, require(weights) if weights else None)
    checks = list(run_case(case))
    names = {c.name for c in checks}
    assert {"ws", "img", "ws_psi", "img_psi", "ws_psi_cutoff_b", "img_psi_cutoff_b", "img_wplus"} <= names
    assert sum(n.startswith("styles.") for n in names) == 11 and sum(n.startswith("block_img.") for n in names) == 4
    failed = [(c.name, *c.result()[:2]) for c in checks if not c.result()[2]]
    assert not failed, failed


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
