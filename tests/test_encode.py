"""Encoder inversion: latent spaces started from W+ codes, hybrid inversion (encoder start, then optimisation),
and the `jaxinv encode` / `jaxinv invert --init encoder` commands on an official-layout e4e .pt (torch-written).

The models are small: a rosinality decoder with the e4e/pSp decoder's style_dim (512) and n_mlp (8) at 16 px
(6 styles; no golden generator has w_dim 512, the encoders' fixed code width), and an IR-SE50 Encoder4Editing
with procedural weights."""

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.encode import EncoderPair, encode_images, encoder_start, load_encoder
from jaxinv.errors import ConfigError
from jaxinv.generators import Generator
from jaxinv.invert import invert
from jaxinv.models import Model
from jaxinv.models import encoders as enc
from jaxinv.models import rosinality as ros
from jaxinv.optim import Adam
from jaxinv.parity.core import assert_parity
from jaxinv.spaces import make_space
from tests._encoder_fixtures import random_encoder_state_dict, small_decoder_state_dict
from tests.conftest import REALDATA, require
from weights_convert.source import Source

SIZE, CHANNELS, N_STYLES = 16, (32, 32, 16), 6
ENC_CFG = enc.Config(encoder_type="Encoder4Editing", family="e4e", num_layers=50, mode="ir_se", n_styles=N_STYLES)


def _decoder_sd():
    return small_decoder_state_dict(SIZE, CHANNELS, seed=5)


def _encoder_sd():
    return random_encoder_state_dict(ENC_CFG, "test-encode")


@pytest.fixture(scope="module")
def models():
    dec = Model("rosinality", *ros.from_source(Source("rosinality", {"init_kwargs": {
        "size": SIZE, "style_dim": 512, "n_mlp": 8, "channel_multiplier": 2}}, _decoder_sd(), {})))
    gen = Generator.from_model(dec)
    w = np.asarray(gen.mapping(jax.random.normal(jax.random.PRNGKey(0), (256, 512))))[:, 0]
    sd = _encoder_sd()
    sd["latent_avg"] = np.tile(w.mean(0), (N_STYLES, 1)).astype(np.float32)
    opts = {"encoder_type": "Encoder4Editing", "n_styles": N_STYLES, "start_from_latent_avg": True}
    encoder = Model("e4e", *enc.from_source(Source("e4e", opts, sd, {})))
    return EncoderPair(encoder, dec, "test"), gen


def _targets(gen, n=2, seed=1):
    z = jax.random.normal(jax.random.PRNGKey(seed), (n, 512))
    return np.asarray(gen.synthesis(gen.mapping(z)))


@pytest.mark.parametrize("name", ["w+", "w", "s", "p", "pn"])
def test_spaces_from_ws(models, name):
    """from_ws gives the code whose generator input is the W+ codes (exact for w+, s, p, pn; w = layer mean)."""
    _, gen = models
    sp = make_space(name, num_samples=500).prepare(gen)
    ws = gen.mapping(jax.random.normal(jax.random.PRNGKey(2), (3, 512)))
    ws = ws + 0.3 * jax.random.normal(jax.random.PRNGKey(3), ws.shape)  # distinct per layer
    lat = sp.from_ws(gen, ws)
    inp = sp.to_input(gen, lat)
    if name == "s":
        got, want = inp["styles"], gen.styles(ws)
    else:
        got = inp["ws"]
        want = ws if name != "w" else jnp.broadcast_to(ws.mean(1, keepdims=True), ws.shape)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        assert_parity(a, b, name)
    with pytest.raises(ConfigError, match="W\\+ codes"):
        make_space("z").from_ws(gen, ws)


def test_hybrid_starts_at_encoder_loss_and_improves(models):
    pair, gen = models
    targets = _targets(gen)
    sp = make_space("w+", num_samples=500).prepare(gen)
    start = encoder_start(pair, targets, gen, sp)
    # Independent: the encoder on the 256-px input, the decoder on its codes, MSE to the targets.
    x256 = jax.image.resize(jnp.asarray(targets), (2, 256, 256, 3), "linear", antialias=True)
    codes = jax.jit(enc.encode, static_argnums=0)(pair.encoder.cfg, pair.encoder.params, x256)
    np.testing.assert_allclose(start["w"], np.asarray(codes), rtol=0, atol=1e-5)
    rec = np.asarray(gen.synthesis(codes))
    enc_loss = np.mean((rec.astype(np.float64) - targets) ** 2, axis=(1, 2, 3))
    opt = Adam(learning_rate=0.02, initial_noise_factor=0.0)
    res = invert(gen, targets, space=sp, loss="mse", optimizer=opt, steps=30, init_latents=start)
    first = res.history[0, :, 0]  # loss of step 0 = at the start (no latent noise)
    np.testing.assert_allclose(first, enc_loss, rtol=1e-4, err_msg="hybrid does not start at the encoder loss")
    assert np.all(res.losses < 0.9 * enc_loss), f"no improvement: {res.losses} vs encoder {enc_loss}"


def test_encode_and_hybrid_cli_on_pt(models, tmp_path):
    """An official-layout e4e .pt (torch zip) -> `jaxinv encode` (codes, reconstructions, metrics) and
    `jaxinv invert --init encoder` on real face photos; both read the .pt without torch."""
    torch = pytest.importorskip("torch")
    from PIL import Image

    from jaxinv.cli import main
    from jaxinv.images import load_image

    pair, _ = models
    root = require(REALDATA / "images" / "faces_aligned")
    faces = [sorted((root / "idinvert").glob("*.png"))[0], root / "e4e" / "input_img.jpg"]  # 256 px, 1024 px
    state = {f"encoder.{k}": torch.from_numpy(v) for k, v in _encoder_sd().items()}
    state.update({f"decoder.{k}": torch.from_numpy(v) for k, v in _decoder_sd().items()})
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": SIZE, "start_from_latent_avg": True,
            "input_nc": 3, "lpips_lambda": 0.8}
    pt = tmp_path / "e4e_small.pt"
    torch.save({"state_dict": state, "opts": opts,
                "latent_avg": torch.from_numpy(np.asarray(pair.encoder.params["latent_avg"]))}, pt)

    loaded = load_encoder(pt)
    out = tmp_path / "enc"
    assert main(["encode", "--model", str(pt), "--images", *map(str, faces), "--out", str(out), "--batch", "2",
                 "--no-progress", "--xla-cache", "off"]) == 0
    x = np.stack([load_image(f, loaded.preprocess()) for f in faces])
    ref = encode_images(loaded, x)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["image"] for r in rows] == [f.name for f in faces]
    for i, f in enumerate(faces):
        d = out / f.stem
        codes = np.load(d / "latent.npz")["w"]
        np.testing.assert_allclose(codes, ref["codes"][i:i + 1], rtol=0, atol=1e-4)
        assert np.load(d / "projected_w.npz")["w"].shape == (1, N_STYLES, 512)
        assert Image.open(d / "proj.png").size == (SIZE, SIZE)
        assert Image.open(d / "proj_256.png").size == (256, 256)
        assert np.isfinite(float(rows[i]["psnr"])) and -1 <= float(rows[i]["ssim"]) <= 1
    # face_pool of a 16-px decoder output to 256 repeats each pixel 16x16 times.
    np.testing.assert_allclose(ref["images_256"][:, ::16, ::16], ref["images"], rtol=0, atol=1e-6)

    inv = tmp_path / "inv"
    assert main(["invert", "--model", str(pt), "--init", "encoder", "--space", "w+", "--images", *map(str, faces),
                 "--out", str(inv), "--steps", "3", "--batch", "2", "--noise-factor", "0", "--no-progress",
                 "--xla-cache", "off"]) == 0
    rows = list(csv.DictReader(open(inv / "metrics.csv")))
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) for r in rows)
    assert np.load(inv / faces[0].stem / "projected_w.npz")["w"].shape == (1, N_STYLES, 512)
    with pytest.raises(SystemExit):
        main(["invert", "--init", "bogus", "--images", str(faces[0]), "--out", str(tmp_path / "x")])
    assert main(["invert", "--init", "encoder", "--images", str(faces[0]), "--out", str(tmp_path / "y"),
                 "--no-progress"]) == 2  # the default DCGAN is no e4e / pSp checkpoint

