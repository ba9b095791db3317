"""`jaxinv invert --preset official`: the settings it resolves to are those the official projector replay drives
(`jaxinv.parity.projector`, checked there against a recorded official run), and contradicting options are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import GOLDEN, REALDATA, require

from jaxinv import cli, presets
from jaxinv.errors import ConfigError
from jaxinv.invert import LPIPS, NoiseReg, _lane_value, make_loss
from jaxinv.optim import LBFGS, Adam
from jaxinv.spaces import WSpace, make_space

CASE = "projector_sg2ada_r64_skip"


def _settings(*extra: str) -> tuple[dict, object]:
    argv = ["invert", "--images", "x.png", "--out", "out", *extra]
    args = cli.build_parser("invert").parse_args(argv)
    return cli._invert_settings(args), args


def test_official_preset_is_the_replayed_projector():
    from jaxinv.parity import projector
    from jaxinv.parity.core import load_case

    require(GOLDEN / f"{CASE}.io.npz")
    require(REALDATA / "weights" / "lpips_linear_heads" / "vgg_v0.1.npz")
    case = load_case(GOLDEN / CASE)
    rec = projector.recorded_settings(case)
    s, args = _settings("--preset", "official", "--lpips-weights", "vgg16.pt")

    # The optimizer object the replay steps (lr / latent-noise ramps of project()) is the preset's.
    assert s["optimizer"] == rec["optimizer"] == Adam()
    # The space: W with free noise maps, w statistics from RandomState(rec seed); the recording ran
    # w_avg_samples=1000, the official default (and the preset) is 10000.
    space = make_space(s["space"], **s["space_options"])
    assert space == WSpace(noise=True, num_samples=10000, seed=rec["seed"])
    assert dataclasses.replace(space, num_samples=rec["num_samples"]) == \
        WSpace(noise=True, num_samples=rec["num_samples"], seed=rec["seed"])
    # run_projection's options and project()'s start.
    assert (s["steps"], s["seed"], s["restarts"], s["start"], s["crop"]) == (1000, 303, 1, "center", "none")
    assert (args.steps, args.seed, args.optimizer, args.noise) == (1000, 303, "adam", True)

    # The loss: LPIPS + reg_weight x noise regulariser, and its value at the recording's step 0 (w_avg plus the
    # recorded w noise, the recorded initial noise maps) is the recorded loss.
    lp = projector._lpips(case)
    lossf = make_loss(s["loss"], {"lpips": lp})
    assert [type(t) for t in lossf.terms] == [LPIPS, NoiseReg] and lossf.weights == (1.0, rec["reg_weight"])
    io = case.io
    gen = projector._generator(case)
    sp = dataclasses.replace(space, num_samples=rec["num_samples"]).prepare(gen)
    target = io["target"].transpose(1, 2, 0)[None].astype(np.float32) / 127.5 - 1.0
    prep = tuple(t.prepare(target) for t in lossf.terms)
    latent = {"w": io["w_avg"].reshape(1, -1) + io["w_noise"][0].reshape(1, -1),
              "noise": {n: io[f"rand_noise_init.{n}.noise_const"][None] for n, _ in gen.noise_layers}}
    total, (_, _, (dist, reg)) = _lane_value(gen, sp, lossf, prep, latent)
    np.testing.assert_allclose(float(dist), float(io["dist"][0]), rtol=1e-4)
    np.testing.assert_allclose(float(total), float(io["loss"][0]), rtol=1e-4)


@pytest.mark.parametrize("extra, message", [
    (["--steps", "200"], "--steps 200: contradicts --preset official (1000 steps)"),
    (["--seed", "0"], "--seed 0: contradicts --preset official (seed 303)"),
    (["--space", "w+"], "--space w+: contradicts --preset official (space w)"),
    (["--loss", "lpips=1"], "--loss lpips=1: contradicts --preset official (loss lpips=1,noise=1e5)"),
    (["--optimizer", "lbfgs"], "--optimizer lbfgs: contradicts --preset official (adam)"),
    (["--restarts", "4"], "--restarts 4: contradicts --preset official (1 restart(s))"),
    (["--lr", "0.05"], "--lr 0.05: contradicts --preset official (lr 0.1)"),
    (["--crop", "dcgan-faces"], "--crop dcgan-faces: contradicts --preset official (crop none)"),
    (["--start", "random"], "--start random: contradicts --preset official (start center)"),
    (["--sphere"], "--sphere: not part of --preset official"),
    (["--early-stop", "1e-4,20"], "--early-stop: not part of --preset official"),
])
def test_official_preset_refuses_contradicting_options(extra, message):
    with pytest.raises(ConfigError) as e:
        _settings("--preset", "official", "--lpips-weights", "vgg16.pt", *extra)
    assert str(e.value) == message


def test_official_preset_accepts_agreeing_options():
    s, _ = _settings("--preset", "official", "--lpips-weights", "vgg16.pt", "--steps", "1000", "--seed", "303",
                     "--space", "W", "--noise", "--loss", "noise=100000,lpips", "--crop", "none")
    assert s["steps"] == 1000 and s["preset"] is presets.OFFICIAL


def test_official_preset_needs_lpips_weights(tmp_path, capsys):
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    rc = cli.main(["invert", "--images", str(img), "--out", str(tmp_path / "out"), "--preset", "official"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("jaxinv: error: --preset official: needs --lpips-weights FILE|URL")
    assert not (tmp_path / "out").exists()


def test_official_preset_needs_a_stylegan(tmp_path, capsys):
    from jaxinv.jobs import png_bytes

    img = tmp_path / "a.png"
    img.write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8)))
    rc = cli.main(["invert", "--images", str(img), "--out", str(tmp_path / "out"), "--preset", "official",
                   "--lpips-weights", "vgg16.pt", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("jaxinv: error: --preset official: needs a StyleGAN generator with noise inputs "
                               "(--model default is dcgan)")


def test_defaults_without_preset():
    s, args = _settings()
    assert s["preset"] is None and s["optimizer"] == Adam(learning_rate=0.1, schedule="official",
                                                          initial_noise_factor=0.05)
    assert (s["steps"], s["restarts"], s["seed"], s["loss"], s["crop"], s["space"], s["space_options"]) == \
        (400, 1, 0, "mse", "auto", None, {})
    s, _ = _settings("--noise", "--steps", "7", "--optimizer", "lbfgs")
    assert s["space_options"] == {"noise": True} and s["steps"] == 7 and type(s["optimizer"]).__name__ == "LBFGS"


def test_solver_options_belong_to_their_solver():
    s, _ = _settings("--optimizer", "lbfgs", "--lbfgs-memory", "4")
    assert s["optimizer"] == LBFGS(memory_size=4) and _settings("--optimizer", "lbfgs")[0]["optimizer"] == LBFGS()
    for extra, message in ((["--lbfgs-memory", "4"], "--lbfgs-memory: not an option of --optimizer adam"),
                           (["--optimizer", "lbfgs", "--lr", "0.05"], "--lr: not an option of --optimizer lbfgs"),
                           (["--optimizer", "lbfgs", "--schedule", "constant"],
                            "--schedule: not an option of --optimizer lbfgs"),
                           (["--optimizer", "lbfgs", "--lbfgs-memory", "0"],
                            "--lbfgs-memory 0: expected an integer >= 1"),
                           (["--preset", "official", "--lpips-weights", "v.pt", "--lbfgs-memory", "4"],
                            "--lbfgs-memory: not part of --preset official")):
        with pytest.raises(ConfigError) as e:
            _settings(*extra)
        assert str(e.value) == message
    for bad in (0, 2.5, True):
        with pytest.raises(ConfigError, match="lbfgs memory_size"):
            LBFGS(memory_size=bad)
