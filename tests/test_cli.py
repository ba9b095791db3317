"""`jaxinv` command line: sample from the embedded DCGAN, a tiny invert run on real faces (with a bad file),
resume, one-line user errors, subcommand registry."""

import csv
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxinv import cli
from jaxinv.models import dcgan
from tests.conftest import REALDATA, ROOT, require

FACES = REALDATA / "images" / "faces_aligned"


def test_sample_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["sample", "--out", str(out), "--n", "6", "--seed", "1", "--grid", "--cols", "3"]) == 0
    sheet = np.asarray(Image.open(out))
    assert sheet.shape == (2 * 66 + 2, 3 * 66 + 2, 3)
    # The first tile is the embedded model's image of z = normal(PRNGKey(1)).
    import jax

    m = dcgan.load_default()
    z = jax.random.normal(jax.random.PRNGKey(1), (6, 100))
    first = np.clip(np.rint((np.asarray(dcgan.generate(m.cfg, m.params, z[:1]))[0] + 1) * 127.5), 0, 255)
    assert np.abs(sheet[2:66, 2:66].astype(int) - first.astype(int)).max() <= 1
    assert "6 samples (dcgan, 64px, seed 1)" in capsys.readouterr().err


def test_sample_bare_images_and_latents(tmp_path, capsys):
    import jax

    m = dcgan.load_default()
    z = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (3, 100)))
    ref = np.clip(np.rint((np.asarray(dcgan.generate(m.cfg, m.params, z)) + 1) * 127.5), 0, 255).astype(int)
    assert cli.main(["sample", "--out", str(tmp_path / "s"), "--n", "3", "--seed", "2"]) == 0
    for i in range(3):
        img = np.asarray(Image.open(tmp_path / "s" / f"{i:05d}.png"))
        assert img.shape == (64, 64, 3)  # the bare sample: no grid border
        assert np.abs(img.astype(int) - ref[i]).max() <= 1
        lat = np.load(tmp_path / "s" / f"{i:05d}.npz")
        np.testing.assert_array_equal(lat["z"], z[i])
        assert int(lat["seed"]) == 2 and int(lat["index"]) == i
    assert cli.main(["sample", "--out", str(tmp_path / "face.png"), "--n", "1"]) == 0
    assert np.asarray(Image.open(tmp_path / "face.png")).shape == (64, 64, 3)
    assert (tmp_path / "face.npz").is_file()
    capsys.readouterr()
    for argv, words in ((["--out", str(tmp_path / "two.png"), "--n", "2"], "a .png holds one sample"),
                        (["--out", str(tmp_path / "d"), "--cols", "2"], "--cols: only with --grid"),
                        (["--out", str(tmp_path / "d"), "--grid"], "expected a .png file name")):
        assert cli.main(["sample", *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err


def test_readme_main_command_recovers_the_sample(tmp_path, monkeypatch):
    """The README's main command (as written there, after the install) recovers the generated face."""
    block = (ROOT / "README.md").read_text().split("<!-- main-command -->")[1].split("<!-- /main-command -->")[0]
    commands = [c.strip().split() for c in block.strip().strip("`").split("&&") if c.strip().startswith("jaxinv")]
    assert [c[1] for c in commands] == ["sample", "invert"]
    monkeypatch.chdir(tmp_path)
    for c in commands:
        assert cli.main(c[1:]) == 0
    with open(tmp_path / "inverted" / "metrics.csv") as f:
        row = next(csv.DictReader(f))
    assert float(row["psnr"]) >= 30.0  # measured 54.1 dB (README)


def test_invert_tiny_run_real_faces(tmp_path, capsys):
    faces = sorted(require(FACES).glob("*/*.jpg"))[:2]
    src = tmp_path / "in"
    src.mkdir()
    for f in faces:
        shutil.copy(f, src / f"{f.parent.name}_{f.name}")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    out = tmp_path / "out"
    argv = ["invert", "--images", str(src), "--out", str(out), "--steps", "6", "--batch", "2", "--seed", "0",
            "--grid", "--no-progress", "--xla-cache", "off"]
    assert cli.main(argv) == 3  # one unreadable image: reported, the others finish
    err = capsys.readouterr().err
    assert "crop dcgan-faces" in err and "2 inverted" in err and "1 unreadable" in err
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert sorted(r["image"] for r in rows) == sorted(p.name for p in src.glob("*.jpg"))
    for r in rows:
        assert 5.0 < float(r["psnr"]) < 40.0 and 0.0 < float(r["ssim"]) <= 1.0 and r["steps"] == "6"
        assert float(r["loss_mse"]) == float(r["loss"]) and float(r["seconds"]) >= 0  # per-term column (mse only)
        d = out / r["image"].rsplit(".", 1)[0]
        assert np.asarray(Image.open(d / "proj.png")).shape == (64, 64, 3)
        assert np.asarray(Image.open(d / "target.png")).shape == (64, 64, 3)
        with np.load(d / "latent.npz") as lat:
            assert lat["z"].shape == (1, 100)
    errors = list(csv.DictReader(open(out / "errors.csv")))
    assert [e["image"] for e in errors] == ["broken.png"] and "broken.png" in errors[0]["reason"]
    assert np.asarray(Image.open(out / "grid.png")).shape[1] == 4 * 66 + 2
    # A rerun resumes: nothing recomputed, results kept.
    before = (out / rows[0]["image"].rsplit(".", 1)[0] / "latent.npz").read_bytes()
    assert cli.main(argv) == 3
    assert "2 already done" in capsys.readouterr().err
    assert (out / rows[0]["image"].rsplit(".", 1)[0] / "latent.npz").read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["--space", "w"], "only a Z space"),
    (["--crop", "1,2,3"], "--crop"),
    (["--loss", "lpips=1"], "--lpips-weights"),
    (["--early-stop", "x"], "--early-stop"),
    (["--model", "/nonexistent/model.pkl"], "no such file"),
])
def test_user_errors_one_line(tmp_path, capsys, extra, message):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    rc = cli.main(["invert", "--images", str(img), "--out", str(tmp_path / "o"), "--steps", "1",
                   "--no-progress", "--xla-cache", "off", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("jaxinv: error: ") and message in err[-1], err
    assert not (tmp_path / "o").exists()  # a failed start leaves no empty output folder


def test_missing_inputs_and_bad_outputs(tmp_path, capsys):
    assert cli.main(["invert", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    assert cli.main(["sample", "--out", str(tmp_path / "x.jpg")]) == 2
    assert "expected a folder or a .png file name" in capsys.readouterr().err


def test_version_and_quiet(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("jaxinv ")
    assert cli.main(["sample", "--n", "1", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    assert capsys.readouterr().err == "" and (tmp_path / "s").is_dir()


def test_registry_and_help():
    assert set(cli.COMMANDS) >= {"sample", "invert"}
    with pytest.raises(SystemExit) as e:
        cli.main(["invert", "--help"])
    assert e.value.code == 0
    assert cli.main([]) == 2
    # `python -m jaxinv` is the same command line.
    r = subprocess.run([sys.executable, "-m", "jaxinv", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "sample" in r.stdout and "invert" in r.stdout
