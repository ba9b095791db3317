"""The Python API as the README and the docstrings write it: `jaxinv.invert(...)`, `jaxinv.load("default")`,
`jaxinv.images.load_images(files, model)`, one seeding rule for API and CLI, image dtype checks."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import jaxinv
from jaxinv import cli
from jaxinv import invert as engine
from jaxinv.errors import ConfigError, ImageError


def test_import_is_light_and_attributes_are_lazy():
    code = "import sys, jaxinv; assert 'jax' not in sys.modules; import jaxinv.invert; print(callable(jaxinv.invert))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr[-2000:]


def test_docstring_example_runs(tmp_path, monkeypatch):
    """The module docstring's example, as written (after sampling the face.png it reads)."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sample", "--n", "1", "--out", "face.png", "--quiet"]) == 0
    doc = engine.__doc__.split("\n\n")[1]
    code = "\n".join(line[4:] for line in doc.splitlines())
    assert "jaxinv.invert(" in code
    scope: dict = {"jaxinv": jaxinv}
    exec(compile(code, "jaxinv/invert.py docstring", "exec"), scope)
    res = scope["result"]
    assert res.psnr.shape == (1,) and res.ssim.shape == (1,) and res.latents["z"].shape == (1, 100)
    assert res.psnr[0] > 30  # the model's own sample comes back (L-BFGS, 4 restarts, 200 steps)


def test_api_and_cli_share_one_seeding_rule(tmp_path):
    """image_keys = the file names: the API draws what `jaxinv invert` draws for those files (same lane group,
    so the same bits)."""
    assert cli.main(["sample", "--n", "2", "--out", str(tmp_path / "s"), "--quiet"]) == 0
    files = sorted((tmp_path / "s").glob("*.png"))
    out = tmp_path / "inv"
    assert cli.main(["invert", "--images", str(tmp_path / "s"), "--out", str(out), "--steps", "3", "--restarts",
                     "2", "--seed", "7", "--quiet", "--xla-cache", "off"]) == 0
    model = jaxinv.load("default")
    images, names, bad = jaxinv.images.load_images(files, model)
    assert not bad and names == files
    res = jaxinv.invert(model, images, steps=3, restarts=2, seed=7, image_keys=[f.name for f in files])
    for i, f in enumerate(files):
        z_cli = np.load(out / f.stem / "latent.npz")["z"]
        np.testing.assert_array_equal(res.latents["z"][i], z_cli.reshape(res.latents["z"][i].shape))
    # image indices are the other spelling; keys and indices together are refused
    with pytest.raises(ConfigError, match="not both"):
        jaxinv.invert(model, images, steps=1, image_keys=["a", "b"], image_indices=[0, 1])


def test_default_space_and_image_dtypes():
    model = jaxinv.load("default")
    x = np.zeros((1, 64, 64, 3), np.float32)
    assert engine.default_space(jaxinv.generators.Generator.from_model(model)) == "z"
    with pytest.raises(ConfigError, match="uint8 array"):
        jaxinv.invert(model, np.zeros((1, 64, 64, 3), np.uint8), steps=1)
    with pytest.raises(ImageError, match=re.escape("x / 127.5 - 1")):
        jaxinv.invert(model, x + 200.0, steps=1)
    assert jaxinv.invert(model, x, steps=1).space.name == "z"
