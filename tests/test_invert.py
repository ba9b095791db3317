"""The inversion engine on the real DCGAN and real faces: solvers reduce the loss, batching and padding do not
change per-item results, best-of selection, early stop, official Adam schedule, loss specs, bad inputs.
(StyleGAN2 projections: tests/test_invert_stylegan2.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import images
from jaxinv.errors import ConfigError, ImageError
from jaxinv.invert import MSE, Fn, Identity, Loss, NoiseReg, Prior, invert, make_loss, parse_loss_spec
from jaxinv.models import dcgan
from jaxinv.optim import LBFGS, Adam
from tests.conftest import ADAM_ROUNDING_ATOL, REALDATA, require

FACES = REALDATA / "images" / "faces_aligned"


@pytest.fixture(scope="module")
def model():
    return dcgan.load_default()


@pytest.fixture(scope="module")
def faces():
    files = images.list_images(require(FACES))[:3]
    x, _, errors = images.load_images(files, images.parse_crop("dcgan-faces", 64))
    assert not errors
    return x


@pytest.mark.parametrize("optimizer", [Adam(), LBFGS()], ids=["adam", "lbfgs"])
def test_solvers_reduce_loss_and_batching_is_transparent(model, faces, optimizer):
    steps, restarts, seed = 8, 2, 3
    full = invert(model, faces, space="z", optimizer=optimizer, steps=steps, restarts=restarts, seed=seed)
    assert full.history.shape == (steps, 3, restarts)
    assert full.latents["z"].shape == (3, 100) and full.images.shape == (3, 64, 64, 3)
    # The loss falls (first step vs final, every lane).
    assert np.all(full.restart_losses < 0.8 * full.history[0]), (full.history[0], full.restart_losses)
    # Best-of over restarts.
    np.testing.assert_array_equal(full.best_restart, np.argmin(full.restart_losses, axis=1))
    np.testing.assert_array_equal(full.losses, full.restart_losses.min(axis=1))
    # The returned image is the generator's output for the returned latent, and the loss its MSE.
    img = np.asarray(dcgan.generate(model.cfg, model.params, full.latents["z"]))
    assert np.abs(img - full.images).max() <= 1e-5
    np.testing.assert_allclose(full.terms["mse"], ((img - faces) ** 2).mean(axis=(1, 2, 3)), rtol=1e-4)
    # One image per compiled batch (each with its global index) and padded batches: the same numbers, bit
    # for bit.
    for bs in (1, 2):
        part = invert(model, faces, space="z", optimizer=optimizer, steps=steps, restarts=restarts, seed=seed,
                      batch_size=bs)
        np.testing.assert_array_equal(part.latents["z"], full.latents["z"])
        np.testing.assert_array_equal(part.history, full.history)
        np.testing.assert_array_equal(part.best_restart, full.best_restart)
    # The image's global index and the seed select its draws.
    one = invert(model, faces[2:3], space="z", optimizer=optimizer, steps=steps, restarts=restarts, seed=seed,
                 image_indices=[2])
    np.testing.assert_array_equal(one.latents["z"][0], full.latents["z"][2])
    other = invert(model, faces[2:3], space="z", optimizer=optimizer, steps=steps, restarts=restarts,
                   seed=seed + 1, image_indices=[2])
    assert not np.array_equal(other.history[0, 0], full.history[0, 2])


def test_lane_group_fixes_the_bits_whatever_the_batch(model, faces):
    """With a fixed lane group an image's arithmetic has the same shapes in every batch: any batch size and
    any order of the images give the same bits. Different groups (other kernels, other float32 sum order)
    agree to float32 rounding, amplified a little by the steps."""
    kw = dict(space="z", steps=6, restarts=2, seed=5, lane_group=2)
    ref = invert(model, faces, **kw)
    for bs in (1, 3):
        part = invert(model, faces, batch_size=bs, **kw)
        np.testing.assert_array_equal(part.latents["z"], ref.latents["z"])
        np.testing.assert_array_equal(part.history, ref.history)
    perm = [2, 0, 1]
    shuffled = invert(model, faces[perm], image_indices=perm, **kw)
    np.testing.assert_array_equal(shuffled.latents["z"], ref.latents["z"][perm])
    for group in (None, 1):
        other = invert(model, faces, **{**kw, "lane_group": group})
        np.testing.assert_allclose(other.latents["z"], ref.latents["z"], rtol=0, atol=ADAM_ROUNDING_ATOL)
        np.testing.assert_allclose(other.history, ref.history, rtol=1e-3)
    with pytest.raises(ConfigError, match="lane_group=0"):
        invert(model, faces, **{**kw, "lane_group": 0})


def test_official_adam_schedule():
    opt = Adam()
    n = 1000
    t = np.arange(n) / n
    ramp = np.minimum(1.0, (1.0 - t) / 0.25)
    ramp = 0.5 - 0.5 * np.cos(ramp * np.pi)
    ramp = ramp * np.minimum(1.0, t / 0.05)
    lr = np.asarray(jax.vmap(lambda s: opt.lr_at(s, n))(jnp.arange(n)))
    np.testing.assert_allclose(lr, 0.1 * ramp, atol=1e-6)
    noise = np.asarray(jax.vmap(lambda s: opt.noise_at(s, n))(jnp.arange(n)))
    np.testing.assert_allclose(noise, 0.05 * np.maximum(0.0, 1.0 - t / 0.75) ** 2, atol=1e-7)
    assert float(Adam(schedule="constant", learning_rate=0.05).lr_at(7, n)) == pytest.approx(0.05)
    with pytest.raises(ConfigError, match="schedule"):
        Adam(schedule="cosine")


def test_adam_matches_torch_formula_on_a_quadratic():
    # torch.optim.Adam written out in numpy (constant lr), against the solver's step on f(x) = sum(a x^2).
    a = np.array([1.0, 3.0, 0.1], np.float32)
    opt = Adam(learning_rate=0.05, schedule="constant", initial_noise_factor=0.0)
    from jaxinv.optim import Objective

    obj = Objective(lambda lat: jnp.sum(a * lat["x"] ** 2))
    st = opt.init({"x": jnp.ones(3)}, obj)
    x, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    for k in range(1, 6):
        st, info = opt.step(st, k - 1, 10, jax.random.PRNGKey(0), obj)
        g = 2 * a * x
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = x - 0.05 / (1 - 0.9**k) * m / (np.sqrt(v) / np.sqrt(1 - 0.999**k) + 1e-8)
    np.testing.assert_allclose(np.asarray(st.latent["x"]), x, rtol=1e-5)


def test_early_stop_freezes_lanes(model, faces):
    # Huge tolerance: every lane stalls from its 2nd step; patience 3 -> 4 steps taken, then frozen.
    res = invert(model, faces[:2], space="z", optimizer=Adam(), steps=10, restarts=2, seed=0, early_stop=(1e9, 3))
    np.testing.assert_array_equal(res.steps_done, np.full((2, 2), 4))
    ref = invert(model, faces[:2], space="z", optimizer=Adam(), steps=10, restarts=2, seed=0)
    assert not np.array_equal(res.latents["z"], ref.latents["z"])
    hist = res.history
    np.testing.assert_array_equal(hist[4:], np.broadcast_to(hist[3], hist[4:].shape))  # frozen lanes


def test_loss_specs_and_terms(model, faces):
    loss = make_loss("mse=1, l1=0.5,prior=1e-3")
    assert loss.weights == (1.0, 0.5, 1e-3) and loss.names == ["mse", "l1", "prior"]
    assert make_loss([(2.0, MSE()), (1.0, MSE())]).names == ["mse", "mse_1"]
    # The one spec parser (make_loss, the CLI's --loss, the preset check): names lower-cased, bare name = 1.
    assert parse_loss_spec(" LPIPS , noise=1e5,") == [("lpips", 1.0), ("noise", 1e5)]
    for bad, msg in (("foo=1", "unknown term"), ("mse=x", "not a number"), ("", "no loss terms"),
                     ("lpips=1", r"resources\['lpips'\]"), ("id=0.1", r"resources\['id'\]")):
        with pytest.raises(ConfigError, match=msg):
            make_loss(bad)
    # A plain function term and the regularisers: values reported per term at the best restart.
    res = invert(model, faces[:2], space="z", loss=[(1.0, _abs_err), (0.01, Prior()), (1.0, NoiseReg())],
                 steps=3, seed=0)
    assert set(res.terms) == {"fn", "prior", "noise"}
    np.testing.assert_array_equal(res.terms["noise"], np.zeros(2))
    np.testing.assert_allclose(res.terms["prior"], (res.latents["z"] ** 2).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(res.losses, res.terms["fn"] + 0.01 * res.terms["prior"], rtol=1e-5)
    assert isinstance(make_loss(Fn(fn=_abs_err)), Loss)


def _abs_err(img, target):
    return jnp.mean(jnp.abs(img - target), axis=(1, 2, 3))


def test_identity_term_is_zero_at_the_target(faces):
    from jaxinv.losses import load_face_id

    params = load_face_id(require(REALDATA / "weights" / "face_id_dlib_resnet_faceapi"))
    term = Identity(params=params)
    x = jnp.asarray(faces[:2])
    prep = term.prepare(x)
    assert prep.shape == (2, 128)
    np.testing.assert_allclose(np.asarray(term(x, prep, None, None)), 0.0, atol=1e-5)
    assert float(term(x[::-1], prep, None, None)[0]) > 1e-3


def test_bad_inputs(model, faces):
    with pytest.raises(ConfigError, match=r"expected \[N, 64, 64, 3\]"):
        invert(model, faces[:, :32], steps=1)
    bad = faces[:2].copy()
    bad[1, 3, 3, 0] = np.nan
    with pytest.raises(ImageError, match="image 1: contains NaN"):
        invert(model, bad, steps=1)
    with pytest.raises(ConfigError, match="only a Z space"):
        invert(model, faces[:1], space="w", steps=1)
    with pytest.raises(ConfigError, match="steps=0"):
        invert(model, faces[:1], steps=0)
    with pytest.raises(ConfigError, match="unknown"):
        invert(model, faces[:1], optimizer="sgd", steps=1)


def test_warm_start_from_given_latents(model):
    # Restart 0 starts at the given latent: a generated target is reproduced from step 0, restart 1 is random.
    z = jax.random.normal(jax.random.PRNGKey(7), (2, 100))
    target = np.asarray(dcgan.generate(model.cfg, model.params, z))
    opt = Adam(learning_rate=0.01, schedule="constant", initial_noise_factor=0.0)
    res = invert(model, target, space="z", optimizer=opt, steps=3, restarts=2, seed=0, init_latents={"z": z},
                 batch_size=1)
    assert np.all(res.history[0, :, 0] < 1e-9) and np.all(res.history[0, :, 1] > 1e-2)
    np.testing.assert_array_equal(res.best_restart, [0, 0])
    np.testing.assert_allclose(res.latents["z"], z, atol=3 * 0.01 + 1e-6)  # Adam moves <= lr per step
    with pytest.raises(ConfigError, match="init_latents"):
        invert(model, target, steps=1, init_latents={"z": z[:, :50]})


def test_trajectory_recording(model, faces):
    opt = Adam(learning_rate=0.05, schedule="constant", initial_noise_factor=0.0)
    plain = invert(model, faces[:2], optimizer=opt, steps=6, restarts=2, seed=1)
    rec = invert(model, faces[:2], optimizer=opt, steps=6, restarts=2, seed=1, record_every=3)
    assert plain.trajectory is None and rec.trajectory["z"].shape == (2, 2, 100)
    np.testing.assert_allclose(rec.trajectory["z"][:, -1], rec.latents["z"], atol=1e-6)
    np.testing.assert_allclose(rec.latents["z"], plain.latents["z"], atol=1e-5)
    np.testing.assert_allclose(rec.history, plain.history, rtol=1e-5)
    with pytest.raises(ConfigError, match="record_every"):
        invert(model, faces[:1], steps=5, record_every=3)


def test_library_errors_speak_api_names_and_the_cli_its_flags():
    from jaxinv.cli import flag_words

    for bad, api, flag in (("lpips=1", "resources['lpips']", "--lpips-weights FILE"),
                           ("foo=1", "loss='foo=1'", "--loss 'foo=1'")):
        with pytest.raises(ConfigError) as e:
            make_loss(bad)
        assert api in str(e.value) and "--" not in str(e.value)
        assert flag in flag_words(str(e.value))
