"""DCGAN family: golden parity (the wheel's own PyTorch module, eval mode), converter checks, embedded asset."""
import hashlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import ops
from jaxinv.errors import CheckpointError
from jaxinv.models import dcgan
from jaxinv.parity.core import assert_parity
from tests.conftest import REALDATA, require

DCGAN_DIR = REALDATA / "weights" / "dcgan_digiface64"


@pytest.fixture(scope="module")
def golden():
    with np.load(require(DCGAN_DIR / "golden_eval_mode.npz")) as g:
        return {k: g[k] for k in g.files}


@pytest.fixture(scope="module")
def shared_state_dict():
    with np.load(require(DCGAN_DIR / "netG.npz")) as d:
        return {k: d[k] for k in d.files}


@pytest.mark.parametrize("weights", ["shared_netG", "embedded_default"])
def test_golden_eval_mode(golden, shared_state_dict, weights):
    if weights == "shared_netG":
        cfg, params = dcgan.from_source(shared_state_dict)
    else:
        model = dcgan.load_default()
        assert model.family == "dcgan"
        cfg, params = model.cfg, model.params
    assert cfg == dcgan.Config(z_dim=100, channels=(512, 256, 128, 64), img_channels=3)
    assert cfg.img_resolution == 64
    out = np.asarray(jax.jit(lambda z: dcgan.generate(cfg, params, z))(golden["z"]))
    ref = golden["x"].transpose(0, 2, 3, 1)  # golden NCHW -> NHWC
    assert_parity(out, ref, f"dcgan {weights} vs golden_eval_mode")


def test_read_source_and_jaxinv_load(golden, tmp_path):
    # The shared netG.npz through the user path (read_source -> Model), and a converted directory round trip.
    import jaxinv
    from jaxinv import checkpoint

    model = jaxinv.load(require(DCGAN_DIR / "netG.npz"))
    assert model.family == "dcgan"
    checkpoint.save(model, tmp_path / "conv")
    again = jaxinv.load(tmp_path / "conv")
    assert again.cfg == model.cfg
    out = np.asarray(dcgan.generate(again.cfg, again.params, golden["z"]))
    assert_parity(out, golden["x"].transpose(0, 2, 3, 1), "converted dir vs golden")


def test_embedded_asset_matches_shared_tensors(shared_state_dict):
    # The package data must be the shared tensors, bit for bit (minus num_batches_tracked).
    with np.load(dcgan._asset_dir() / "netG.npz") as d:
        assert set(d.files) == {k for k in shared_state_dict if not k.endswith("num_batches_tracked")}
        for k in d.files:
            np.testing.assert_array_equal(d[k], shared_state_dict[k], err_msg=k)


def test_provenance_record():
    prov = dcgan.default_provenance()
    assert prov["origin"]["package"] == "gan-face-generate==1.1.1"
    assert prov["origin"]["wheel_sha256"] == "24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569"
    assert prov["origin"]["key"] == "netG_state_dict"
    assert prov["license"] == "MIT"
    raw = (dcgan._asset_dir() / "netG.npz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == prov["files"]["netG.npz"]["sha256"]
    assert "MIT License" in (dcgan._asset_dir() / "LICENSE").read_text()
    json.dumps(prov)


def test_transposed_conv_matches_numpy_reference():
    # Independent scatter-add definition of torch ConvTranspose2d(stride 2, padding 1, 4x4), in numpy.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 3)).astype(np.float32)  # NCHW
    w = rng.standard_normal((4, 6, 4, 4)).astype(np.float32)  # [in, out, kh, kw]
    s, p, k = 2, 1, 4
    full = np.zeros((2, 6, (5 - 1) * s + k, (3 - 1) * s + k))
    for i in range(5):
        for j in range(3):
            full[:, :, i * s:i * s + k, j * s:j * s + k] += np.einsum("bc,cokl->bokl", x[:, :, i, j], w)
    ref = full[:, :, p:full.shape[2] - p, p:full.shape[3] - p].transpose(0, 2, 3, 1)
    w_hwio = w[:, :, ::-1, ::-1].transpose(2, 3, 0, 1)
    out = np.asarray(ops.conv_transpose2d(jnp.asarray(x.transpose(0, 2, 3, 1)), jnp.asarray(w_hwio.copy()), s, (p, p),
                                          flip_weight=False))
    assert_parity(out, ref, "conv_transpose")


def test_channel_table_from_weight_shapes():
    # A smaller DCGAN (z 8, 2 hidden layers, 1 output channel) converts with its own table.
    rng = np.random.default_rng(1)
    sd = {"main.0.weight": rng.standard_normal((8, 16, 4, 4)), "main.3.weight": rng.standard_normal((16, 4, 4, 4)),
          "main.6.weight": rng.standard_normal((4, 1, 4, 4))}
    for i, c in ((1, 16), (4, 4)):
        sd |= {f"main.{i}.weight": np.ones(c), f"main.{i}.bias": np.zeros(c), f"main.{i}.running_mean": np.zeros(c),
               f"main.{i}.running_var": np.ones(c), f"main.{i}.num_batches_tracked": np.array(3)}
    cfg, params = dcgan.from_source(sd)
    assert cfg == dcgan.Config(z_dim=8, channels=(16, 4), img_channels=1)
    img = dcgan.generate(cfg, params, np.zeros((2, 8), np.float32))
    assert img.shape == (2, 16, 16, 1)


def test_state_dict_errors_name_the_problem(shared_state_dict):
    sd = dict(shared_state_dict)
    del sd["main.4.running_var"]
    sd["main.99.extra"] = np.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing \['main.4.running_var'\].*unexpected \['main.99.extra'\]"):
        dcgan.from_source(sd)
    with pytest.raises(CheckpointError, match="main.0.weight"):
        dcgan.from_source({"foo": np.zeros(3)})
    bad = dict(shared_state_dict)
    bad["main.3.weight"] = np.zeros((256, 256, 4, 4), np.float32)
    with pytest.raises(CheckpointError, match="main.3.weight takes 256 channels"):
        dcgan.from_source(bad)


def test_load_default_by_name():
    """jaxinv.load("default") is the CLI's --model default: the embedded DCGAN."""
    import jaxinv

    a, b = jaxinv.load("default"), dcgan.load_default()
    assert a.family == b.family == "dcgan" and a.cfg == b.cfg
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True))
