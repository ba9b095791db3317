"""e4e / pSp encoders: procedural weight generator (known answers, per-tensor checks), golden parity of the
full-size IR-SE50 heads, e4e progressive stages and fewer styles (derived from the goldens), a plain-numpy
reference of the official forward for the W / W+ heads at every depth and mode, resampling matrices vs torch,
and an official-layout .pt checkpoint written with torch read back torch-free."""

import dataclasses
import json
import math
from collections import OrderedDict

import jax
import numpy as np
import pytest

from jaxinv import winograd
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models import encoders as enc
from jaxinv.parity import encoders as handler
from jaxinv.parity.core import assert_parity, load_case
from jaxinv.procedural import proc_tensor, proc_uniform, verify_recipe
from tests._encoder_fixtures import random_encoder_state_dict
from tests.conftest import GOLDEN, require
from weights_convert.encoders import read_encoder_checkpoint, split_checkpoint
from weights_convert.source import Source

CASES = ("e4e_ffhq1024", "psp_ffhq1024")
OUTPUTS = ("encoder_out", "latent_avg", "codes", "feat2.input_layer", "feat8.c1", "feat8.c2", "feat8.c3")
_encode = jax.jit(enc.encode, static_argnums=0, static_argnames=("return_intermediates",))
_forward = jax.jit(enc.encoder_forward, static_argnums=0)


# ---------------------------------------------------------------------------------------------
# Procedural weights


def test_procedural_selftest():
    st = json.loads(require(GOLDEN / "procedural_selftest.json").read_text())
    np.testing.assert_array_equal(proc_uniform(st["proc_uniform_key"], 8), np.asarray(st["proc_uniform_first8"]))
    value = proc_tensor(seed="s", name="w", shape=[2, 3], scale=0.5, offset=1.0)
    assert value.dtype == np.float32
    np.testing.assert_array_equal(value, np.asarray(st["proc_tensor_value"], np.float32))


@pytest.fixture(scope="module", params=CASES)
def golden(request):
    """(case, Config, params, generated state_dict) of one golden case, generated from its recipe."""
    case = load_case(require(GOLDEN / f"{request.param}.meta.json"))
    src = handler.procedural_source(case)
    cfg, params = enc.from_source(src)
    return case, cfg, params, src.state_dict


def test_procedural_recipe(golden):
    case, _, _, sd = golden
    recipe = case.meta["procedural_weights"]
    bad = verify_recipe(recipe, sd)
    assert not bad, f"{len(bad)} tensors disagree with check_sum/check_first: {bad[:5]}"
    manifest = {e["name"]: (tuple(e["shape"]), e["dtype"]) for e in recipe["tensors"]}
    assert {k: (v.shape, str(v.dtype)) for k, v in sd.items() if k != "latent_avg"} == manifest
    np.testing.assert_array_equal(sd["latent_avg"], case.io["latent_avg"])


# ---------------------------------------------------------------------------------------------
# Golden parity (one full-size forward per case)


def test_golden_parity(golden):
    case, cfg, params, _ = golden
    assert (cfg.num_layers, cfg.mode, cfg.n_styles, cfg.input_nc) == (50, "ir_se", 18, 3)
    checks = {c.name: c for c in handler.run_checks(case, cfg, params)}
    assert set(checks) == set(OUTPUTS)
    results = {name: checks[name].result() for name in OUTPUTS}
    assert all(ok for _, _, ok in results.values()), "; ".join(
        f"{name}: max abs err {err:.2e} (tol {tol:.2e})" for name, (err, tol, _) in results.items())


@pytest.mark.parametrize("golden", ["e4e_ffhq1024"], indirect=True)
def test_e4e_progressive_stage(golden):
    """Stage 2 (deltas 1, 2 only): styles 0-2 as in Inference, the rest are w0 (+ latent_avg)."""
    case, cfg, params, _ = golden
    staged = enc.Config(**{**cfg.__dict__, "progressive_stage": 2})
    codes, aux = _encode(staged, params, case.io["x"][:1].transpose(0, 2, 3, 1), return_intermediates=True)
    out = np.asarray(aux["encoder_out"])
    ref = case.io["encoder_out"][:1]
    assert_parity(out[:, :3], ref[:, :3], "styles 0-2 at stage 2")
    np.testing.assert_array_equal(out[:, 3:], np.broadcast_to(out[:, :1], out[:, 3:].shape))
    np.testing.assert_allclose(np.asarray(codes), out + case.io["latent_avg"], rtol=0, atol=1e-6)


def test_config_errors():
    with pytest.raises(ConfigError, match="50-layer"):
        enc.Config(encoder_type="GradualStyleEncoder", num_layers=100)
    with pytest.raises(ConfigError, match="num_layers"):
        enc.Config(encoder_type="BackboneEncoderUsingLastLayerIntoW", num_layers=34)
    with pytest.raises(ConfigError, match="e4e"):
        enc.Config(encoder_type="Encoder4Editing", family="psp")
    with pytest.raises(ConfigError, match="unknown"):
        enc.Config(encoder_type="ResNetEncoder")


# ---------------------------------------------------------------------------------------------
# Small configs vs a plain numpy (float64, NCHW) reference of the official forward

def _np_conv(x, w, stride=1, pad=0):
    b, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((b, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            out += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j])
    return out


def _np_bn(x, sd, p):
    c = lambda k: np.asarray(sd[f"{p}.{k}"], np.float64)[None, :, None, None]
    return (x - c("running_mean")) / np.sqrt(c("running_var") + 1e-5) * c("weight") + c("bias")


def _np_prelu(x, a):
    return np.where(x >= 0, x, x * np.asarray(a, np.float64)[None, :, None, None])


def _np_adaptive_pool(x, n):
    h, w = x.shape[2:]
    rows = [(math.floor(i * h / n), math.ceil((i + 1) * h / n)) for i in range(n)]
    cols = [(math.floor(j * w / n), math.ceil((j + 1) * w / n)) for j in range(n)]
    return np.stack([np.stack([x[:, :, r0:r1, c0:c1].mean((2, 3)) for c0, c1 in cols], -1) for r0, r1 in rows], -2)


def _np_forward(cfg: enc.Config, sd: dict, x: np.ndarray) -> np.ndarray:
    sd = {k: np.asarray(v, np.float64) for k, v in sd.items()}
    x = _np_prelu(_np_bn(_np_conv(x, sd["input_layer.0.weight"], pad=1), sd, "input_layer.1"),
                  sd["input_layer.2.weight"])
    for i, (cin, depth, stride) in enumerate(enc.get_blocks(cfg.num_layers)):
        p = f"body.{i}"
        if cin == depth:
            sc = x[:, :, ::stride, ::stride]
        else:
            sc = _np_bn(_np_conv(x, sd[f"{p}.shortcut_layer.0.weight"], stride), sd, f"{p}.shortcut_layer.1")
        r = _np_conv(_np_bn(x, sd, f"{p}.res_layer.0"), sd[f"{p}.res_layer.1.weight"], pad=1)
        r = _np_conv(_np_prelu(r, sd[f"{p}.res_layer.2.weight"]), sd[f"{p}.res_layer.3.weight"], stride, pad=1)
        r = _np_bn(r, sd, f"{p}.res_layer.4")
        if cfg.mode == "ir_se":
            s = np.maximum(r.mean((2, 3)) @ sd[f"{p}.res_layer.5.fc1.weight"][:, :, 0, 0].T, 0)
            s = 1 / (1 + np.exp(-(s @ sd[f"{p}.res_layer.5.fc2.weight"][:, :, 0, 0].T)))
            r = r * s[:, :, None, None]
        x = r + sc
    eq = lambda v, p: v @ (sd[f"{p}.weight"] / math.sqrt(sd[f"{p}.weight"].shape[1])).T + sd[f"{p}.bias"]
    if cfg.encoder_type == "BackboneEncoderUsingLastLayerIntoW":
        out = eq(x.mean((2, 3)), "linear")
        return np.repeat(out[:, None], cfg.n_styles, 1) if cfg.family == "e4e" else out
    v = _np_adaptive_pool(_np_bn(x, sd, "output_layer_2.0"), 7).reshape(x.shape[0], -1)
    v = v @ sd["output_layer_2.3.weight"].T + sd["output_layer_2.3.bias"]
    return eq(v, "linear").reshape(-1, cfg.n_styles, 512)


@pytest.mark.parametrize("family,head,num_layers,mode,input_nc,n_styles,size", [
    ("psp", "BackboneEncoderUsingLastLayerIntoW", 50, "ir_se", 3, 18, 32),
    ("e4e", "BackboneEncoderUsingLastLayerIntoW", 100, "ir", 3, 14, 32),
    ("psp", "BackboneEncoderUsingLastLayerIntoWPlus", 152, "ir_se", 1, 6, 32),
])
def test_small_heads_vs_numpy(family, head, num_layers, mode, input_nc, n_styles, size):
    """Whole forward vs numpy, plain-conv params (the Winograd convs are checked by the goldens and
    test_winograd_vs_direct_conv; compiling them for three more bodies would double this file's runtime)."""
    cfg = enc.Config(encoder_type=head, family=family, num_layers=num_layers, mode=mode, n_styles=n_styles,
                     input_nc=input_nc, start_from_latent_avg=False, fast=False)
    sd = random_encoder_state_dict(cfg, f"test-{head}-{num_layers}")
    opts = {"encoder_type": head, "n_styles": n_styles, "input_nc": input_nc}
    loaded, params = enc.from_source(Source(family, opts, sd, {}), fast=False)
    assert loaded == cfg
    x = np.tanh(np.random.default_rng(0).normal(size=(2, input_nc, size, size))).astype(np.float32)
    out = np.asarray(_forward(cfg, params, x.transpose(0, 2, 3, 1)))
    ref = _np_forward(cfg, sd, x.astype(np.float64))
    assert_parity(out, ref, f"{head} {num_layers} {mode}")
    codes = np.asarray(_encode(cfg, params, x.transpose(0, 2, 3, 1)))
    assert codes.shape == (2, n_styles, 512)
    np.testing.assert_array_equal(codes, np.broadcast_to(out.reshape(2, -1, 512), codes.shape))


def test_converter_errors():
    cfg = enc.Config(encoder_type="BackboneEncoderUsingLastLayerIntoW", mode="ir")
    sd = {k: np.zeros(s, np.float32) for k, s in enc.state_dict_shapes(cfg).items()}
    opts = {"encoder_type": cfg.encoder_type}
    with pytest.raises(CheckpointError, match="missing.*body.3.res_layer.1.weight"):
        enc.from_source(Source("psp", opts, {k: v for k, v in sd.items() if k != "body.3.res_layer.1.weight"}, {}))
    with pytest.raises(CheckpointError, match="unexpected.*styles.0.linear.weight"):
        enc.from_source(Source("psp", opts, {**sd, "styles.0.linear.weight": np.zeros((512, 512))}, {}))
    with pytest.raises(CheckpointError, match="shape"):
        enc.from_source(Source("psp", opts, {**sd, "linear.bias": np.zeros(3, np.float32)}, {}))
    with pytest.raises(CheckpointError, match=r"constructor says \(50, 'ir_se'\)"):
        enc.from_source(Source("psp", {**opts, "constructor": "X(50, 'ir_se', opts)"}, sd, {}))
    with pytest.raises(CheckpointError, match="latent_avg"):
        enc.from_source(Source("psp", {**opts, "start_from_latent_avg": True}, sd, {}))


@pytest.mark.parametrize("alg", [winograd.F43, winograd.S2F2], ids=lambda a: a.name)
@pytest.mark.parametrize("hw", [(16, 16), (9, 13), (1, 1), (2, 5)])
def test_winograd_vs_direct_conv(alg, hw):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, *hw, 6)).astype(np.float32)
    w = rng.normal(size=(3, 3, 6, 5)).astype(np.float32)
    ref = _np_conv(x.transpose(0, 3, 1, 2).astype(np.float64), w.transpose(3, 2, 0, 1).astype(np.float64),
                   alg.stride, pad=1).transpose(0, 2, 3, 1)
    out = np.asarray(winograd.conv3x3(x, winograd.transform_weight(w, alg), alg))
    err = float(np.abs(out - ref).max())
    assert out.shape == ref.shape and err <= 1e-5 * np.abs(ref).max(), f"{alg.name} {hw}: max abs err {err:.2e}"


def test_resampling_matrices_vs_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(1).normal(size=(1, 3, 9, 16)).astype(np.float32)
    for out_hw in ((18, 32), (17, 31), (32, 64), (1, 5)):
        ref = F.interpolate(torch.from_numpy(x), size=out_hw, mode="bilinear", align_corners=True).numpy()
        mh, mw = enc.bilinear_matrix(out_hw[0], 9), enc.bilinear_matrix(out_hw[1], 16)
        np.testing.assert_allclose(np.einsum("ih,jw,bchw->bcij", mh, mw, x), ref, rtol=0, atol=1e-6)
    for out_hw in ((7, 7), (4, 11), (9, 16)):
        ref = F.adaptive_avg_pool2d(torch.from_numpy(x), out_hw).numpy()
        mh, mw = enc.adaptive_avg_matrix(out_hw[0], 9), enc.adaptive_avg_matrix(out_hw[1], 16)
        np.testing.assert_allclose(np.einsum("ih,jw,bchw->bcij", mh, mw, x), ref, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Checkpoints


def test_split_checkpoint_without_torch():
    cfg = enc.Config(encoder_type="BackboneEncoderUsingLastLayerIntoW", family="e4e", mode="ir")
    sd = {f"encoder.{k}": np.zeros(s, np.float32) for k, s in enc.state_dict_shapes(cfg).items()}
    sd["decoder.style.1.weight"] = np.zeros((512, 512), np.float32)
    avg = np.tile(np.arange(512, dtype=np.float32), (16, 1))
    obj = {"state_dict": sd, "latent_avg": avg, "opts": {"encoder_type": "SingleStyleCodeEncoder",
                                                         "stylegan_size": 512, "start_from_latent_avg": True}}
    encoder, decoder = split_checkpoint("e4e.pt", obj)
    assert encoder.family == "e4e" and encoder.init["n_styles"] == 16
    assert decoder.family == "rosinality" and decoder.init["init_kwargs"]["size"] == 512
    assert set(decoder.state_dict) == {"style.1.weight", "latent_avg"}
    np.testing.assert_array_equal(decoder.state_dict["latent_avg"], avg[0])
    loaded, params = enc.from_source(encoder, fast=False)
    assert (loaded.encoder_type, loaded.family, loaded.n_styles) == (cfg.encoder_type, "e4e", 16)
    assert params["latent_avg"].shape == (16, 512)
    for stored in (avg[0], avg[:1]):  # [512] / [1, 512] in the checkpoint: one row per style in params
        _, p1 = enc.from_source(split_checkpoint("e4e.pt", {**obj, "latent_avg": stored})[0], fast=False)
        np.testing.assert_array_equal(p1["latent_avg"], avg)
    with pytest.raises(CheckpointError, match="outside encoder"):
        split_checkpoint("x.pt", {**obj, "state_dict": {**sd, "face_pool.weight": np.zeros(1)}})
    with pytest.raises(CheckpointError, match="opts"):
        split_checkpoint("x.pt", {"state_dict": sd})


def test_converted_directory_round_trip(tmp_path):
    """weights_convert.encoders CLI path: split checkpoint -> jaxinv model directories -> jaxinv load."""
    from jaxinv.checkpoint import load, save
    from jaxinv.models import Model

    cfg = enc.Config(encoder_type="BackboneEncoderUsingLastLayerIntoW", family="e4e", mode="ir", n_styles=16)
    sd = {f"encoder.{k}": v for k, v in random_encoder_state_dict(cfg, "ckpt").items()}
    avg = np.tile(np.linspace(-1, 1, 512, dtype=np.float32), (16, 1))
    encoder, _ = split_checkpoint("e4e.pt", {"state_dict": sd, "latent_avg": avg, "opts": {
        "encoder_type": "SingleStyleCodeEncoder", "stylegan_size": 512}})
    model = Model("e4e", *enc.from_source(encoder, fast=False))
    loaded = load(save(model, tmp_path / "encoder"))
    assert loaded.family == "e4e" and loaded.cfg == model.cfg and model.cfg.start_from_latent_avg
    x = np.tanh(np.random.default_rng(3).normal(size=(1, 32, 32, 3))).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(_encode(loaded.cfg, loaded.params, x)),
                                  np.asarray(_encode(model.cfg, model.params, x)))


@pytest.mark.parametrize("golden", ["psp_ffhq1024"], indirect=True)
def test_pt_round_trip_fewer_styles(golden, tmp_path):
    """Official-layout pSp .pt (torch.save zip) of a 2-style encoder (output_size 4) built from the golden psp
    weights: its heads are the golden's first 2, so the output must be the golden's first 2 styles."""
    torch = pytest.importorskip("torch")
    case, _, _, sd = golden
    n = 2
    state = OrderedDict()
    for k, v in sd.items():
        if k == "latent_avg" or (k.startswith("styles.") and int(k.split(".")[1]) >= n):
            continue
        state[f"encoder.{k}"] = torch.from_numpy(v)
    state["decoder.style.1.weight"] = torch.ones(512, 512)
    state["decoder.input.input"] = torch.zeros(1, 512, 4, 4)
    opts = {"encoder_type": "GradualStyleEncoder", "output_size": 4, "input_nc": 3, "label_nc": 0,
            "start_from_latent_avg": True, "learn_in_w": False, "n_styles": n, "exp_dir": "/x", "lr": 1e-4}
    path = tmp_path / "psp_4.pt"
    torch.save({"state_dict": state, "opts": opts, "latent_avg": torch.from_numpy(sd["latent_avg"][:n].copy())},
               path)
    del state
    encoder, decoder = read_encoder_checkpoint(path)
    assert decoder.family == "rosinality" and decoder.init["init_kwargs"] == {
        "size": 4, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2}
    assert set(decoder.state_dict) == {"style.1.weight", "input.input"}  # latent_avg rows differ: not a mean w
    cfg = enc.config_from_source(encoder.family, encoder.init, encoder.state_dict)
    assert (cfg.family, cfg.encoder_type, cfg.n_styles) == ("psp", "GradualStyleEncoder", n)
    del encoder, decoder
    # The parity handler's checkpoint path (python -m jaxinv.parity CASE --weights FILE), on the golden's
    # first sample and first 2 styles; plain-conv params (the Winograd path is covered by test_golden_parity).
    io = {k: v[:1] for k, v in case.io.items()}
    io.update(encoder_out=case.io["encoder_out"][:1, :n], codes=case.io["codes"][:1, :n],
              latent_avg=case.io["latent_avg"][:n])  # per style, not per sample
    checks = list(handler.run(dataclasses.replace(case, io=io, weights=path, options={"fast": False})))
    assert {c.name for c in checks} == set(OUTPUTS)
    for c in checks:
        assert_parity(c.out, c.ref, f"{c.name} (2 styles, via .pt)", c.tol)
