"""Image files in and out: listing, decoding (pillow), preprocessing to the generator's input, writing.

    pre = Preprocess(64, resize_to=256, crop=(32, 35, 220, 223))   # = PRESETS["dcgan-faces"]
    x = load_image("face.png", pre)          # [64, 64, 3] float32 in [-1, 1]
    xs, names, errors = load_images(list_images("photos/"), pre)   # bad files reported, others loaded

Any mode pillow decodes is accepted: RGB, grayscale, palette, RGBA / LA (alpha dropped: the colour channels
are kept as stored), CMYK, 16-bit grayscale (`I;16*`, `I`: scaled by 1/65535) and 32-bit float (`F`, taken as
[0, 1]); JPEG EXIF orientation is applied. Preprocessing: an optional first resize to a square `resize_to`,
an optional crop box (x0, y0, x1, y1) in the pixels of that image, otherwise a centre crop to a square, then
a Lanczos resize to the generator's resolution. 8-bit images are resized by pillow in uint8 (as the
reference recipes do); other depths as float per channel.

Every problem with a file raises `ImageError("<file>: <problem>")`: missing, empty (0 bytes), not an image,
content not matching the extension, truncated/corrupt data, too small, non-finite values.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jaxinv.errors import ConfigError, ImageError

# Extensions read when walking a folder, and the pillow format each one must contain.
FORMAT_EXTS: dict[str, frozenset[str]] = {
    "PNG": frozenset({".png"}),
    "JPEG": frozenset({".jpg", ".jpeg", ".jfif", ".jpe"}),
    "BMP": frozenset({".bmp"}),
    "GIF": frozenset({".gif"}),
    "WEBP": frozenset({".webp"}),
    "TIFF": frozenset({".tif", ".tiff"}),
    "PPM": frozenset({".ppm", ".pgm", ".pbm", ".pnm"}),
    "TGA": frozenset({".tga"}),
}
IMAGE_EXTS = frozenset().union(*FORMAT_EXTS.values())
MIN_SIZE = 8  # smaller images carry no usable content for a generator


@dataclass(frozen=True)
class Preprocess:
    resolution: int  # output size (the generator's img_resolution)
    resize_to: int | None = None  # first resize to this square size (after a centre crop to square)
    crop: tuple[int, int, int, int] | None = None  # box (x0, y0, x1, y1) in pixels, after resize_to
    channels: int = 3  # 3 = RGB, 1 = grayscale
    resample: str = "lanczos"  # pillow filter: lanczos, or bilinear (torchvision's Resize on PIL images)
    stretch: bool = False  # non-square images resized to a square as torchvision's Resize((s, s)), no crop
    as_is_at_resolution: bool = False  # images already R x R (e.g. the model's own samples) skip resize and crop

    def __post_init__(self) -> None:
        if self.resolution < 1 or (self.resize_to is not None and self.resize_to < 1):
            raise ConfigError(f"preprocess: bad sizes (resolution {self.resolution}, resize_to {self.resize_to})")
        if self.crop is not None:
            x0, y0, x1, y1 = self.crop
            if not (0 <= x0 < x1 and 0 <= y0 < y1):
                raise ConfigError(f"crop=({x0}, {y0}, {x1}, {y1}): need 0 <= x0 < x1 and 0 <= y0 < y1")
        if self.channels not in (1, 3):
            raise ConfigError(f"preprocess: channels must be 1 or 3, got {self.channels}")
        if self.resample not in _FILTERS:
            raise ConfigError(f"preprocess: resample must be one of {', '.join(_FILTERS)}, got {self.resample!r}")


# The realdata recipe for FFHQ-style aligned faces into the DCGAN DigiFace model (shared/realdata/README.md).
PRESETS: dict[str, dict] = {
    "dcgan-faces": {"resolution": 64, "resize_to": 256, "crop": (32, 35, 220, 223)},
}


def parse_crop(spec: str | None, resolution: int, channels: int = 3,
               resize_to: int | None = None) -> Preprocess:
    """--crop value -> Preprocess: None/"none" (centre square), a preset name, or "x0,y0,x1,y1"."""
    if spec is None or spec.lower() == "none":
        return Preprocess(resolution, resize_to=resize_to, channels=channels)
    if spec in PRESETS:
        p = PRESETS[spec]
        if p["resolution"] != resolution:
            raise ConfigError(f"crop={spec!r}: preset is for {p['resolution']}px generators, this one is "
                              f"{resolution}px")
        return Preprocess(channels=channels, **p)
    try:
        box = tuple(int(v) for v in spec.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ConfigError(f"crop={spec!r}: expected x0,y0,x1,y1 (integers) or one of: none, {', '.join(PRESETS)}")
    return Preprocess(resolution, resize_to=resize_to, crop=box, channels=channels)  # type: ignore[arg-type]


def list_images(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Image files of folders (recursively; hidden entries and other extensions skipped) and files given
    directly, sorted by path."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=True):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                out += [Path(root) / f for f in files
                        if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTS]
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise ConfigError(f"paths={p}: no such file or directory")
    return sorted(out)


def _check_format(path: Path, fmt: str | None) -> None:
    ext = path.suffix.lower()
    if ext not in IMAGE_EXTS:
        raise ImageError(f"{path}: extension {ext or '(none)'!r} is not an image type "
                         f"({', '.join(sorted(IMAGE_EXTS))})")
    if fmt in FORMAT_EXTS and ext not in FORMAT_EXTS[fmt]:
        raise ImageError(f"{path}: content is {fmt} but the extension says {ext}")


def _to_array(im: Image.Image, path: Path, channels: int) -> tuple[Image.Image | None, np.ndarray | None]:
    """8-bit images stay pillow images (RGB/L); deeper ones become float arrays [H, W, C] in [0, 1]."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if mode == "F":
            scale = 1.0
        elif mode == "I" and np.nanmax(a, initial=0) > 65535:
            scale = 1.0 / 4294967295.0
        else:
            scale = 1.0 / 65535.0
        a = a * scale
        if not np.isfinite(a).all():
            raise ImageError(f"{path}: contains NaN or infinite pixel values")
        a = a[..., None].astype(np.float32)
        return None, (np.repeat(a, 3, axis=2) if channels == 3 else a)
    return im.convert("RGB" if channels == 3 else "L"), None


_FILTERS = {"lanczos": Image.LANCZOS, "bilinear": Image.BILINEAR}


def _resize(im: Image.Image | None, a: np.ndarray | None, size: tuple[int, int], resample: str = "lanczos"):
    f = _FILTERS[resample]
    if im is not None:
        return (im if im.size == size else im.resize(size, f)), None
    if a.shape[1::-1] == size:
        return None, a
    chans = [np.asarray(Image.fromarray(a[..., c], mode="F").resize(size, f)) for c in range(a.shape[2])]
    return None, np.stack(chans, axis=2)


def _crop(im: Image.Image | None, a: np.ndarray | None, box: tuple[int, int, int, int]):
    if im is not None:
        return im.crop(box), None
    x0, y0, x1, y1 = box
    return None, a[y0:y1, x0:x1]


def read_image(path: str | os.PathLike, channels: int = 3) -> tuple[Image.Image | None, np.ndarray | None]:
    """Decode one file (see module docstring); returns (8-bit pillow image, None) or (None, float array)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        with Image.open(path) as im:
            _check_format(path, im.format)
            im.load()
            im = ImageOps.exif_transpose(im) if im.format == "JPEG" else im
            w, h = im.size
            if min(w, h) < MIN_SIZE:
                raise ImageError(f"{path}: image is {w}x{h} pixels, too small (minimum {MIN_SIZE}x{MIN_SIZE})")
            return _to_array(im, path, channels)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a recognised image (unknown or damaged header)") from None
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError) as e:  # truncated / corrupt data, decoder errors
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ImageError(f"{path}: corrupt or truncated image data ({msg})") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: too large to decode safely ({e})") from None


def preprocess(im: Image.Image | None, a: np.ndarray | None, pre: Preprocess, name: str = "image") -> np.ndarray:
    """Resize/crop (see `Preprocess`) -> float32 [R, R, C] in [-1, 1]."""
    w, h = im.size if im is not None else a.shape[1::-1]
    if pre.as_is_at_resolution and w == h == pre.resolution:
        pre = Preprocess(pre.resolution, channels=pre.channels)
    if pre.crop is None or pre.resize_to is not None:
        if w != h and not pre.stretch:  # centre crop to a square (aspect kept)
            s = min(w, h)
            x0, y0 = (w - s) // 2, (h - s) // 2
            im, a = _crop(im, a, (x0, y0, x0 + s, y0 + s))
            w = h = s
        if pre.resize_to is not None:
            im, a = _resize(im, a, (pre.resize_to, pre.resize_to), pre.resample)
            w = h = pre.resize_to
    if pre.crop is not None:
        x0, y0, x1, y1 = pre.crop
        if x1 > w or y1 > h:
            raise ImageError(f"{name}: crop box {x0},{y0},{x1},{y1} lies outside the {w}x{h} image")
        im, a = _crop(im, a, pre.crop)
    im, a = _resize(im, a, (pre.resolution, pre.resolution), pre.resample)
    if im is not None:
        x = np.asarray(im, np.float32) / 255.0
        x = x[..., None] if x.ndim == 2 else x
    else:
        x = np.clip(a, 0.0, 1.0)
    if not np.isfinite(x).all():
        raise ImageError(f"{name}: contains NaN or infinite pixel values")
    return (x * 2.0 - 1.0).astype(np.float32)


# The embedded default model; `crop="auto"` applies its face preset (to images larger than 64 x 64).
DEFAULT_MODEL_SOURCE = "jaxinv:assets/dcgan_digiface64/"


def preprocess_for(model: Any, crop: str | None = "auto", resize_to: int | None = None) -> Preprocess:
    """The command line's preprocessing for `model` (a `jaxinv.models.Model` or anything with `cfg`):
    crop "auto" = the dcgan-faces preset for the embedded DCGAN (images already 64 x 64 are taken as they are),
    a centre square otherwise; or any `parse_crop` value."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise ConfigError(f"model: expected a jaxinv model, got {type(model).__name__}")
    res = int(cfg.img_resolution)
    channels = 3 if not hasattr(cfg, "img_channels") else int(cfg.img_channels)
    if crop == "auto":
        source = str((getattr(model, "provenance", None) or {}).get("source", ""))
        if source.startswith(DEFAULT_MODEL_SOURCE):
            pre = parse_crop("dcgan-faces", res, channels, resize_to)
            return dataclasses.replace(pre, as_is_at_resolution=True)
        crop = "none"
    return parse_crop(crop, res, channels, resize_to)


def load_image(path: str | os.PathLike, pre: Preprocess) -> np.ndarray:
    """One file -> float32 [R, R, C] in [-1, 1]; ImageError naming the file on any problem."""
    im, a = read_image(path, pre.channels)
    return preprocess(im, a, pre, str(path))


def load_images(paths: Sequence[str | os.PathLike], pre: Any,
                on_error: Callable[[Path, ImageError], None] | None = None,
                ) -> tuple[np.ndarray, list[Path], list[tuple[Path, str]]]:
    """Load many files -> (images [N, R, R, C] in [-1, 1], their paths, [(path, message)] of the bad ones,
    which are skipped and passed to on_error). `pre`: a `Preprocess`, or a model (`preprocess_for(model)`:
    what `jaxinv invert` does with its default --crop)."""
    pre = pre if isinstance(pre, Preprocess) else preprocess_for(pre)
    good, names, errors = [], [], []
    for p in map(Path, paths):
        try:
            good.append(load_image(p, pre))
            names.append(p)
        except ImageError as e:
            errors.append((p, str(e)))
            if on_error is not None:
                on_error(p, e)
    shape = (0, pre.resolution, pre.resolution, pre.channels)
    return (np.stack(good) if good else np.zeros(shape, np.float32)), names, errors


# ---------------------------------------------------------------------------------------------------------
# Output


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[-1, 1] float -> uint8 as the official code writes images ((x + 1) * 127.5, rounded, clipped)."""
    return np.clip(np.rint((np.asarray(img, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(images: np.ndarray, cols: int | None = None, pad: int = 2) -> np.ndarray:
    """[N, H, W, C] in [-1, 1] -> one uint8 sheet [rows*(H+pad)+pad, cols*(W+pad)+pad, C] (white gaps)."""
    x = to_uint8(images)
    n, h, w, c = x.shape
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        sheet[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = x[i]
    return sheet


def save_png(path: str | os.PathLike, img: np.ndarray) -> None:
    """Write a uint8 [H, W, C] array (C = 1 or 3) or a [-1, 1] float image as PNG."""
    a = np.asarray(img)
    a = to_uint8(a) if a.dtype != np.uint8 else a
    Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path, format="PNG")
