"""`jaxinv invert --video`: proj.mp4 per image (target | reconstruction per recorded step), as the official
projector's --save-video; needs the optional imageio + imageio-ffmpeg (`pip install 'jaxinv[video]'`)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import GOLDEN, require

from jaxinv import cli
from jaxinv.jobs import png_bytes


def _mp4(path):
    imageio = pytest.importorskip("imageio")
    with imageio.get_reader(path, format="FFMPEG") as r:
        frames = [np.asarray(f) for f in r]
    return np.stack(frames)


def _luma(a):
    return np.asarray(a, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


@pytest.mark.parametrize("model, extra, steps, every, size", [
    ("sg2ada", ["--space", "w", "--noise", "--loss", "mse=1,noise=1e5"], 4, 2, 64),  # W + free noise maps
    ("default", ["--restarts", "2", "--crop", "none"], 3, None, 64),  # DCGAN, Z, best of 2 restarts
])
def test_video_frames(tmp_path, capsys, model, extra, steps, every, size):
    pytest.importorskip("imageio_ffmpeg", reason="optional video extra: pip install 'jaxinv[video]'")
    model_arg = str(require(GOLDEN / "containers" / "sg2ada_r64_skip.pkl")) if model == "sg2ada" else "default"
    yy, xx = np.mgrid[0:size, 0:size] / size  # smooth colours: H.264 (4:2:0) keeps them, unlike pixel noise
    img = np.stack([200 * xx + 30, 200 * yy + 30, 120 + 80 * np.sin(6 * xx) * np.cos(4 * yy)], -1)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png_bytes(img.astype(np.uint8)))
    out = tmp_path / "out"
    argv = ["invert", "--images", str(tmp_path / "in"), "--out", str(out), "--model", model_arg, "--steps",
            str(steps), "--video", "--quiet", *extra] + (["--video-every", str(every)] if every else [])
    assert cli.main(argv) == 0, capsys.readouterr().err
    frames = _mp4(out / "a" / "proj.mp4")
    assert frames.shape == (steps // (every or 1), size, 2 * size, 3)
    # Left half: the target; right half of the last frame: the final reconstruction (for the W run: the final w
    # with the stored noise). H.264 is lossy, its 4:2:0 chroma too: luma is compared, loosely.
    from PIL import Image

    target = np.asarray(Image.open(out / "a" / "target.png").convert("RGB"), np.float32)
    assert np.abs(_luma(frames[:, :, :size]) - _luma(target)).mean() < 8
    if model == "default":
        last = np.asarray(Image.open(out / "a" / "proj.png").convert("RGB"), np.float32)
    else:  # the final w with the generator's stored noise (proj.png has the optimised noise maps)
        import jaxinv
        from jaxinv.generators import Generator
        from jaxinv.images import to_uint8

        gen = Generator.from_model(jaxinv.load(model_arg))
        last = to_uint8(np.asarray(gen.synthesis(np.load(out / "a" / "projected_w.npz")["w"])))[0].astype(np.float32)
    err = np.abs(_luma(frames[-1, :, size:]) - _luma(last)).mean()
    assert err < 8, err


def test_video_without_the_package_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails
    (tmp_path / "a.png").write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8)))
    rc = cli.main(["invert", "--images", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--video"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == "jaxinv: error: --video: needs imageio and imageio-ffmpeg (pip install 'jaxinv[video]')"
    assert not (tmp_path / "out").exists()


def test_video_every_must_divide_steps(tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg", reason="optional video extra: pip install 'jaxinv[video]'")
    (tmp_path / "a.png").write_bytes(png_bytes(np.zeros((64, 64, 3), np.uint8)))
    rc = cli.main(["invert", "--images", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--video",
                   "--steps", "5", "--video-every", "2"])
    assert rc == 2 and capsys.readouterr().err.strip() == \
        "jaxinv: error: --video-every 2: must be >= 1 and divide --steps 5"
