"""MP4 writing for `jaxinv invert --video` (optional extra: `pip install 'jaxinv[video]'` = imageio + imageio-ffmpeg,
which bundles an ffmpeg binary). As the official projector's `--save-video`: H.264 (libx264), 16 Mbit/s, 10 fps,
each frame the target beside the current reconstruction."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from jaxinv.errors import ConfigError

FPS = 10  # the official projector's video
BITRATE = "16M"
_MISSING = "--video: needs imageio and imageio-ffmpeg (pip install 'jaxinv[video]')"


def require() -> None:
    """One-line ConfigError unless imageio with its ffmpeg plugin is importable (call before any work)."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg
    except ImportError:
        raise ConfigError(_MISSING) from None
    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise ConfigError(f"{_MISSING}: no ffmpeg binary ({e})") from None


def side_by_side(target: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """uint8 target [H, W, C] and frames [T, H, W, C] -> [T, H, 2W, 3] (gray repeated to RGB)."""
    t = np.broadcast_to(target, frames.shape)
    out = np.concatenate([t, frames], axis=2)
    return np.repeat(out, 3, axis=3) if out.shape[3] == 1 else out


def mp4_bytes(frames: np.ndarray, fps: float = FPS, **writer_options: Any) -> bytes:
    """An H.264 MP4 of uint8 frames [T, H, W, 3] (sides rounded up to multiples of 16 by imageio-ffmpeg's
    macro-block padding when needed)."""
    require()
    import imageio

    fd, path = tempfile.mkstemp(suffix=".mp4", prefix=".jaxinv-video-")
    os.close(fd)
    try:
        with imageio.get_writer(path, format="FFMPEG", mode="I", fps=fps, codec="libx264", bitrate=BITRATE,
                                **writer_options) as w:
            for f in frames:
                w.append_data(np.ascontiguousarray(f))
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)
