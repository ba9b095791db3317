"""BigGAN-deep (HF pytorch-pretrained-BigGAN): golden parity, BN-stat interpolation, converters, manifests."""

import importlib.util
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models import biggan
from jaxinv.models.nn import bind, shapes
from jaxinv.parity.core import assert_parity
from tests.conftest import GOLDEN, ROOT, require
from weights_convert.hf_biggan import looks_like_biggan, read_biggan

CASES = sorted(p.name[: -len(".meta.json")] for p in GOLDEN.glob("biggan_*.meta.json")) or ["biggan_128_ch8"]
MANIFESTS = ["biggan_deep_128", "biggan_deep_256", "biggan_deep_512"]


def _assert_close(name, out, ref):
    assert_parity(out, ref, name)


@pytest.fixture(scope="module", params=CASES)
def golden(request):
    case = request.param
    require(GOLDEN / f"{case}.weights.npz")
    src = read_biggan(GOLDEN / f"{case}.weights.npz")
    cfg, params = biggan.from_source(src)
    io = dict(np.load(GOLDEN / f"{case}.io.npz"))
    meta = json.loads((GOLDEN / f"{case}.meta.json").read_text())
    return case, src, cfg, params, io, meta


_generate = jax.jit(biggan.generate, static_argnums=(0, 4))


@pytest.mark.parametrize("i", range(4))
def test_images(golden, i):
    case, _, cfg, params, io, _ = golden
    truncations = np.asarray(io["truncations"], np.float64).tolist()
    if i >= len(truncations):
        pytest.skip(f"{case} has {len(truncations)} truncations")
    img = _generate(cfg, params, io[f"z_t{i}"], io["class_vector"], float(truncations[i]))
    assert img.shape == (io["z_t0"].shape[0], cfg.output_dim, cfg.output_dim, 3)  # NHWC
    _assert_close(f"{case} img_t{i} (t={truncations[i]})", np.asarray(img).transpose(0, 3, 1, 2), io[f"img_t{i}"])


def test_embed_and_cond_vector(golden):
    case, _, cfg, params, io, _ = golden
    _assert_close(f"{case} embed", np.asarray(biggan.embed(cfg, params, io["class_vector"])), io["embed"])
    cond = biggan.cond_vector(cfg, params, io["z_t0"], io["class_vector"])
    _assert_close(f"{case} cond_vector_t0", np.asarray(cond), io["cond_vector_t0"])


def test_spectral_sigmas(golden):
    case, src, cfg, _, io, _ = golden
    modules = biggan.spectral_norm_modules(cfg)
    assert sorted(k[len("sn_sigma."):] for k in io if k.startswith("sn_sigma.")) == sorted(modules)
    for m in modules:
        sigma = biggan.spectral_sigma(*(src.state_dict[f"{m}.weight_{s}"] for s in ("orig", "u", "v")))
        _assert_close(f"{case} sn_sigma.{m}", np.asarray(sigma), io[f"sn_sigma.{m}"])


def test_params_hold_normalised_weights(golden):
    # conv_0 of block 0: params store weight_orig / sigma in HWIO.
    case, src, cfg, params, io, _ = golden
    stem = "generator.layers.0.conv_0"
    w = src.state_dict[stem + ".weight_orig"] / io[f"sn_sigma.{stem}"]
    _assert_close(f"{case} {stem}", np.asarray(params["generator"]["layers"]["0"]["conv_0"]["weight"]),
                  w.transpose(2, 3, 1, 0))


def test_module_tree_declares_the_converted_params(golden):
    # BigGAN(cfg) declares exactly the dict convert_state_dict writes (same paths, shapes, float32).
    case, _, cfg, params, _, _ = golden
    got = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), params)
    want = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), shapes(biggan.BigGAN, cfg))
    assert got == want, f"{case}: params differ from the BigGAN module tree"


def test_bn_interpolation_index(golden):
    case, _, cfg, _, _, meta = golden
    for t, ref in meta["bn_stat_interpolation"].items():
        start, coef = biggan.bn_stat_interpolation(float(t), cfg.n_stats)
        assert (start, coef) == (ref["start_idx"], ref["coef"]), f"{case} t={t}: {(start, coef)} != {ref}"


def test_bn_interpolation_values(golden):
    # t = 0.456 -> 22.8: coef 0.8 weights the LOWER row (official quirk), computed in float32.
    case, _, cfg, params, _, _ = golden
    p = params["generator"]["layers"]["0"]["bn_0"]
    bn = bind(biggan.BigGAN, cfg, params).generator.layers["0"].bn_0
    mean, var = bn.stats(0.456)
    m = np.asarray(p["running_means"], np.float64)
    ref = m[22] * 0.8000000000000007 + m[23] * (1 - 0.8000000000000007)
    err = float(np.abs(np.asarray(mean) - ref).max())
    assert err <= 1e-6, f"{case} interpolated mean: max abs err {err:.2e}"
    mean1, _ = bn.stats(1.0)
    assert np.array_equal(np.asarray(mean1), np.asarray(p["running_means"][cfg.n_stats - 1]))
    mean04, _ = bn.stats(0.4)
    assert np.array_equal(np.asarray(mean04), np.asarray(p["running_means"][20]))


def test_truncation_must_be_static_and_in_range(golden):
    _, _, cfg, params, io, _ = golden
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ConfigError, match="truncation"):
            biggan.generate(cfg, params, io["z_t0"], io["class_vector"], bad)
    with pytest.raises(ConfigError, match="static"):
        jax.jit(biggan.generate, static_argnums=(0,))(cfg, params, io["z_t0"], io["class_vector"], 0.5)


# ---------------------------------------------------------------------------------------------- converters


@pytest.mark.parametrize("member", ["", "pytorch_model.bin", "pytorch_model.legacy.bin"])
def test_containers(golden, member):
    case, src, cfg, params, io, _ = golden
    pytest.importorskip("weights_convert.torch_formats", reason="torch_formats (load_torch) not available yet")
    path = require(GOLDEN / "containers" / case / member)
    assert looks_like_biggan(path)
    got = read_biggan(path)
    assert got.family == "biggan" and got.provenance["format"] == (
        "torch_legacy" if "legacy" in member else "torch_zip")
    assert list(got.state_dict) == list(src.state_dict), f"{path}: names/order differ from the golden npz"
    for k, v in src.state_dict.items():
        assert got.state_dict[k].dtype == v.dtype and np.array_equal(got.state_dict[k], v), f"{path}: {k} differs"
    cfg2, params2 = biggan.from_source(got)
    assert cfg2 == cfg
    img = _generate(cfg2, params2, io["z_t2"], io["class_vector"], float(io["truncations"][2]))
    _assert_close(f"{path} img_t2", np.asarray(img).transpose(0, 3, 1, 2), io["img_t2"])


def test_detection(tmp_path):
    require(GOLDEN / "biggan_128_ch8.weights.npz")
    assert looks_like_biggan(GOLDEN / "biggan_128_ch8.weights.npz")
    assert not looks_like_biggan(require(GOLDEN / "sg3t_r64.weights.npz"))
    assert not looks_like_biggan(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"x")
    (tmp_path / "config.json").write_text('{"z_dim": 128}')
    assert not looks_like_biggan(tmp_path)


def test_missing_extra_and_bad_shapes(golden):
    _, src, cfg, _, _, _ = golden
    sd = dict(src.state_dict)
    sd.pop("generator.layers.3.conv_1.weight_u")
    sd["generator.layers.3.conv_9.bias"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"missing \['generator.layers.3.conv_1.weight_u'\].*"
                                              r"unexpected \['generator.layers.3.conv_9.bias'\]"):
        biggan.convert_state_dict(cfg, sd, "x.bin")
    sd = dict(src.state_dict)
    sd["generator.gen_z.bias"] = sd["generator.gen_z.bias"][:-1]
    with pytest.raises(CheckpointError, match="generator.gen_z.bias"):
        biggan.convert_state_dict(cfg, sd, "x.bin")


def test_config_errors(golden):
    _, _, cfg, _, _, _ = golden
    d = cfg.to_hf()
    assert biggan.Config.from_hf(d) == cfg
    assert biggan.Config.from_hf({"family": "x", "config": d}) == cfg
    with pytest.raises(ConfigError, match="n_stats"):
        biggan.Config.from_hf({k: v for k, v in d.items() if k != "n_stats"})
    with pytest.raises(ConfigError, match="output_dim"):
        biggan.Config.from_hf({**d, "output_dim": 256})


def test_read_biggan_needs_config(tmp_path):
    npz = require(GOLDEN / "biggan_128_ch8.weights.npz")
    (tmp_path / "w.npz").write_bytes(npz.read_bytes())
    with pytest.raises(CheckpointError, match="no BigGAN config"):
        read_biggan(tmp_path / "w.npz")
    cfg = json.loads((GOLDEN / "biggan_128_ch8.config.json").read_text())
    assert read_biggan(tmp_path / "w.npz", config=cfg).init == cfg


# ---------------------------------------------------------------------------------------------- parity tool


@pytest.mark.parametrize("weights", [None, "pytorch_model.bin", "pytorch_model.legacy.bin"])
def test_parity_handler(weights):
    core = pytest.importorskip("jaxinv.parity.core", reason="parity core not available yet")
    from jaxinv.parity import biggan as handler

    prefix = GOLDEN / "biggan_128_ch8"
    require(prefix.with_name(prefix.name + ".io.npz"))
    if weights is not None:
        pytest.importorskip("weights_convert.torch_formats", reason="torch_formats not available yet")
    case = core.load_case(prefix, weights=None if weights is None else GOLDEN / "containers" / prefix.name / weights)
    assert handler.detect(case)
    names = []
    for check in handler.run(case):
        assert_parity(check.out, check.ref, check.name, check.tol)
        names.append(check.name)
    assert {"embed", "cond_vector_t0", "img_t0", "img_t3", "sn_sigma.generator.gen_z"} <= set(names)


# ---------------------------------------------------------------------------------------------- full size


def _manifest(name):
    return json.loads(require(GOLDEN / "manifests" / f"{name}.json").read_text())


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_names_and_shapes(name):
    m = _manifest(name)
    cfg = biggan.Config.from_hf(m["config_json"])
    expected = biggan.state_dict_shapes(cfg)
    listed = {e["name"]: tuple(e["shape"]) for e in m["state_dict"]}
    assert sorted(set(listed) - set(expected)) == [], f"{name}: manifest names with no param"
    assert sorted(set(expected) - set(listed)) == [], f"{name}: params missing from the manifest"
    bad = {k: (listed[k], s) for k, s in expected.items() if listed[k] != s}
    assert not bad, f"{name}: shape mismatches {bad}"
    shapes = biggan.param_shapes(cfg)
    n = sum(math.prod(x.shape) for p, x in jax.tree_util.tree_flatten_with_path(shapes)[0]
            if not str(p[-1].key).startswith("running_"))
    assert n == m["param_count"], f"{name}: {n} params != manifest {m['param_count']}"
    out = jax.eval_shape(lambda p, z, c: biggan.generate(cfg, p, z, c, 0.456), shapes,
                         jax.ShapeDtypeStruct((2, cfg.z_dim), jnp.float32),
                         jax.ShapeDtypeStruct((2, cfg.num_classes), jnp.float32))
    assert out.shape == (2, cfg.output_dim, cfg.output_dim, 3) and out.dtype == jnp.float32


def test_fullsize_128_forward():
    """Random manifest-shaped tensors through from_source and one batch-1 forward (256/512: script only)."""
    from weights_convert.source import Source

    m = _manifest("biggan_deep_128")
    spec = importlib.util.spec_from_file_location("fullsize_forward", ROOT / "benchmarks" / "fullsize_forward.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sd = mod.biggan_random_state_dict(m)
    cfg, params = biggan.from_source(Source("biggan", m["config_json"], sd, {"source": "biggan_deep_128"}))
    del sd
    img = _generate(cfg, params, np.zeros((1, cfg.z_dim), np.float32), biggan.one_hot([1], 1000), 1.0)
    assert img.shape == (1, 128, 128, 3) and bool(jnp.isfinite(img).all())
