"""BigGAN in the main engine (Huh et al. style inversion): truncated-normal Z conventions, the class embedding
option, class conditioning (also of conditional StyleGAN2), the CLI flags, and known-latent recovery on the
golden BigGAN within the CMA benchmark's budget of 401 generator evaluations per image."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxinv
from jaxinv import spaces
from jaxinv.cli import main
from jaxinv.errors import ConfigError
from jaxinv.generators import Generator, render_jit
from jaxinv.invert import invert
from jaxinv.models import biggan, dcgan
from jaxinv.optim import LBFGS, Adam
from jaxinv.parity.core import assert_parity
from tests.conftest import GOLDEN, require

CASE = "biggan_128_ch8"
TRUNCATION = 0.5  # as benchmarks/pti_cma.py's BigGAN part
BUDGET = 401  # generator evaluations per image of that benchmark


@pytest.fixture(scope="module")
def model():
    return jaxinv.load(require(GOLDEN / f"{CASE}.weights.npz"))


@pytest.fixture(scope="module")
def known(model):
    """The benchmark's 3 known-latent targets: u ~ truncnorm(-2, 2) (PRNGKey(0)), z = 0.5 u, classes rng(0)."""
    gen = Generator.from_model(model, truncation_psi=TRUNCATION)
    labels = np.random.default_rng(0).integers(0, model.cfg.num_classes, 3)
    u = jax.random.truncated_normal(jax.random.PRNGKey(0), -2, 2, (3, gen.z_dim))
    c = jnp.asarray(biggan.one_hot(labels, gen.c_dim))
    return labels, np.asarray(u), np.asarray(render_jit(gen, {"z": TRUNCATION * u, "c": c}))


def _psnr(a, b):
    return 10 * np.log10(4.0 / np.mean((np.asarray(a) - b) ** 2, axis=(1, 2, 3)))  # images in [-1, 1]


def test_z_space_is_truncated_normal(model):
    gen = Generator.from_model(model, truncation_psi=TRUNCATION)
    sp = spaces.ZSpace().prepare(gen)
    c = jnp.asarray(biggan.one_hot([3, 7], gen.c_dim))
    lat = sp.init(jax.random.PRNGKey(0), gen, 2)
    assert float(jnp.max(jnp.abs(lat["z"]))) <= 2.0
    wide = {"z": 3.0 * lat["z"]}
    assert float(jnp.max(jnp.abs(sp.project(wide)["z"]))) <= 2.0
    z = sp.to_input(gen, wide)["z"]  # what the generator takes: truncation_psi * u reflected into [-2, 2]
    v = 3.0 * np.asarray(lat["z"])  # within [-6, 6]: one reflection at most
    np.testing.assert_allclose(np.asarray(z), TRUNCATION * np.where(v > 2, 4 - v, np.where(v < -2, -4 - v, v)),
                               rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(sp.to_input(gen, lat)["z"]), TRUNCATION * np.asarray(lat["z"]))
    # no dead coordinates beyond the bound (a clip would give them a zero gradient)
    grad = jax.grad(lambda u: jnp.sum(sp.to_input(gen, {"z": u})["z"]))(wide["z"])
    np.testing.assert_array_equal(np.abs(np.asarray(grad)), TRUNCATION)
    img = render_jit(gen, {"z": z, "c": c})
    ref = jax.jit(biggan.generate, static_argnums=(0, 4))(model.cfg, model.params, z, c, TRUNCATION)
    assert_parity(np.asarray(img), np.asarray(ref), "Generator.render vs biggan.generate")
    # embedding=True: the embedding starts at the class's and renders as the class-vector path.
    se = spaces.make_space("z", embedding=True)
    spaces.check_space(se, gen)
    se = se.prepare(gen)
    lat = se.init(jax.random.PRNGKey(1), gen, 2, c=c)
    np.testing.assert_allclose(np.asarray(lat["embedding"]), np.asarray(gen.embed(c)), rtol=0, atol=0)
    assert_parity(np.asarray(render_jit(gen, se.to_input(gen, lat))),
                  np.asarray(render_jit(gen, {**sp.to_input(gen, lat), "c": c})), "embedding vs class vector")
    assert se.prior(lat).shape == (2,)


def test_errors_name_api_arguments(model):
    x = np.zeros((1, 128, 128, 3), np.float32)
    with pytest.raises(ConfigError, match="class_idx"):
        invert(model, x, steps=1)
    with pytest.raises(ConfigError, match="class_idx"):
        invert(model, x, steps=1, class_idx=5000)
    with pytest.raises(ConfigError, match="truncation_psi"):
        invert(model, x, steps=1, class_idx=1, truncation_psi=1.5)
    with pytest.raises(ConfigError, match="sphere"):
        invert(model, x, steps=1, class_idx=1, space_options={"sphere": True})
    dc = dcgan.load_default()
    with pytest.raises(ConfigError, match="unconditional"):
        invert(dc, np.zeros((1, 64, 64, 3), np.float32), steps=1, class_idx=1)
    with pytest.raises(ConfigError, match="embedding"):
        invert(dc, np.zeros((1, 64, 64, 3), np.float32), steps=1, space_options={"embedding": True})


def test_cli_flags(model, known, tmp_path, capsys):
    from PIL import Image

    labels, _, targets = known
    img = tmp_path / "in" / "t0.png"
    img.parent.mkdir()
    Image.fromarray(np.clip(np.rint((targets[0] + 1) * 127.5), 0, 255).astype(np.uint8)).save(img)
    path = str(GOLDEN / f"{CASE}.weights.npz")
    common = ["invert", "--model", path, "--images", str(img.parent), "--steps", "2", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "a"), "--truncation", "1.5", "--class", "1"]) == 2
    assert "--truncation" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "b")]) == 2
    assert "--class" in capsys.readouterr().err
    out = tmp_path / "c"
    assert main([*common, "--out", str(out), "--class", str(labels[0]), "--truncation", str(TRUNCATION),
                 "--embedding"]) == 0
    with np.load(out / "t0" / "latent.npz") as z:
        assert set(z.files) == {"z", "embedding"} and np.abs(z["z"]).max() <= 2.0


def test_conditional_stylegan2_class(tmp_path):
    model = jaxinv.load(require(GOLDEN / "sg2ada_r32_cond10_skip.weights.npz"))
    gen = Generator.from_model(model)
    z = jax.random.normal(jax.random.PRNGKey(4), (2, gen.z_dim))
    c = jnp.asarray(np.eye(gen.c_dim, dtype=np.float32)[[2, 7]])
    targets = np.asarray(render_jit(gen, {"z": z, "c": c}))
    res = invert(model, targets, space="z", class_idx=[2, 7], steps=3)
    again = render_jit(gen, {"z": jnp.asarray(res.latents["z"]), "c": c})
    assert_parity(np.asarray(again), res.images, "result images are G(z, c) of the class given")
    with pytest.raises(ConfigError, match="class_idx"):
        invert(model, targets, space="z", steps=1)


# Settings within the budget: an Adam step evaluates once, an L-BFGS step once per line-search trial (res.evals
# counts both), and the engine evaluates every restart's final latent once more. Measured (AVX-512 EPYC):
# Adam 1 x 400 steps 32.7 / 35.7 / 39.1 dB (401 evaluations); L-BFGS (memory 60) 1 x 360 steps 35.6 / 40.3 / 44.1
# dB (381 / 381 / 375). Target 0 is an ill-conditioned valley, not a wrong basin: its PSNR still rises at the end
# of the budget (Adam +0.6 dB per 100 steps; L-BFGS memory 10: 34.9, memory 60: 35.6); restarts cost more than
# they find (Adam 4 x 99: 28.8; L-BFGS 3 x 110: 33.9), as do coarse-to-fine (a down:4 first stage, 31.9), larger
# learning rates (0.1-0.2 with the official schedule: 33.1-33.4, but target 1 falls to 28.6) and the embedding
# option (33.4).
RECOVERY = {
    "adam": dict(optimizer=Adam(learning_rate=0.05, schedule="constant", initial_noise_factor=0.0), steps=400,
                 restarts=1),
    "lbfgs": dict(optimizer=LBFGS(memory_size=60), steps=360, restarts=1),
}
PSNR_FLOOR = {"adam": (31.5, 34.5), "lbfgs": (34.5, 39.0)}  # (every target, median): ~1 dB below the measured


@pytest.mark.parametrize("solver", sorted(RECOVERY))
def test_known_latent_recovery(model, known, solver):
    labels, _, targets = known
    res = invert(model, targets, space="z", class_idx=labels, truncation_psi=TRUNCATION, loss="mse", seed=0,
                 lane_group=None, **RECOVERY[solver])
    evals = res.evals.sum(axis=1) + res.evals.shape[1]  # + the final evaluation of every restart
    psnr = _psnr(res.images, targets)
    print(f"{solver}: PSNR {np.round(psnr, 2).tolist()} dB, evaluations {evals.tolist()}")
    assert np.all(evals <= BUDGET), f"{solver}: {evals} evaluations > {BUDGET}"
    # Below the measured figures by ~1 dB (float32 rounding differs across CPU kinds and compounds over 400
    # steps). The acceptance (> 35 dB on all 3 targets) is met by L-BFGS, not by Adam on target 0.
    floor, median = PSNR_FLOOR[solver]
    assert np.all(psnr > floor) and np.median(psnr) > median, f"{solver}: PSNR {psnr} dB"
    assert np.abs(res.latents["z"]).max() <= 2.0  # returned in the support (`ZSpace.canonical`)
