"""Image listing, decoding, preprocessing (incl. the realdata DCGAN crop recipe) and bad-input errors."""
import io

import numpy as np
import pytest
from PIL import Image

from jaxinv import images
from jaxinv.errors import ConfigError, ImageError
from tests.conftest import REALDATA, require

FACES = REALDATA / "images" / "faces_aligned"


def _png(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)


def test_listing_recursive_sorted_filtered(tmp_path, rgb):
    for rel in ("b/2.png", "a/1.JPG", "a/sub/0.webp", "c.txt", ".hidden/x.png", "a/.y.png", "z.tiff"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    got = [p.relative_to(tmp_path).as_posix() for p in images.list_images(tmp_path)]
    assert got == ["a/1.JPG", "a/sub/0.webp", "b/2.png", "z.tiff"]
    # Files named directly are taken whatever their extension (and rejected at load time).
    assert images.list_images([tmp_path / "c.txt"]) == [tmp_path / "c.txt"]
    with pytest.raises(ConfigError, match="no such file"):
        images.list_images(tmp_path / "missing")


def test_dcgan_faces_recipe_matches_pillow_reference():
    # README recipe: resize to 256, crop x 32..220 / y 35..223, resize to 64, Lanczos (pillow, uint8).
    files = images.list_images(require(FACES))
    assert len(files) == 70
    pre = images.parse_crop("dcgan-faces", 64)
    for f in files[:3] + files[-2:]:
        ref = Image.open(f).convert("RGB").resize((256, 256), Image.LANCZOS).crop((32, 35, 220, 223))
        ref = np.asarray(ref.resize((64, 64), Image.LANCZOS), np.float32) / 127.5 - 1.0
        got = images.load_image(f, pre)
        assert got.shape == (64, 64, 3) and got.dtype == np.float32
        err = float(np.abs(got - ref).max())
        assert err <= 1e-6, f"{f.name}: max_abs_err {err:.3g} vs the pillow recipe"


def test_modes_and_depths(tmp_path):
    gray8 = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))  # [64, 64]
    (tmp_path / "g8.png").write_bytes(_png(gray8))
    gray16 = gray8.astype(np.uint16) * 257  # same values on a 16-bit scale
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    Image.fromarray((gray8 / 255.0).astype(np.float32), mode="F").save(tmp_path / "f32.tif")
    rgba = np.dstack([gray8, gray8, gray8, np.full_like(gray8, 7)])
    (tmp_path / "rgba.png").write_bytes(_png(rgba))
    pre = images.Preprocess(64)
    ref = np.repeat((gray8.astype(np.float32) / 127.5 - 1.0)[..., None], 3, axis=2)
    for name in ("g8.png", "g16.png", "f32.tif", "rgba.png"):
        got = images.load_image(tmp_path / name, pre)
        err = float(np.abs(got - ref).max())
        assert got.shape == (64, 64, 3) and err <= 1e-5, f"{name}: max_abs_err {err:.3g}"
    # Grayscale generators get one channel.
    assert images.load_image(tmp_path / "g8.png", images.Preprocess(32, channels=1)).shape == (32, 32, 1)


def test_non_square_centre_crop_and_explicit_crop(tmp_path, rgb):
    (tmp_path / "r.png").write_bytes(_png(rgb))  # 50 wide, 40 high
    got = images.load_image(tmp_path / "r.png", images.Preprocess(40))
    ref = rgb[:, 5:45].astype(np.float32) / 127.5 - 1.0  # centre 40x40, no resize needed
    assert np.abs(got - ref).max() <= 1e-6
    got = images.load_image(tmp_path / "r.png", images.parse_crop("10,0,30,20", 20))
    assert np.abs(got - (rgb[0:20, 10:30].astype(np.float32) / 127.5 - 1.0)).max() <= 1e-6
    with pytest.raises(ImageError, match=r"r\.png: crop box 10,0,60,20 lies outside the 50x40 image"):
        images.load_image(tmp_path / "r.png", images.parse_crop("10,0,60,20", 20))
    for bad in ("1,2,3", "a,b,c,d", "5,5,2,9"):
        with pytest.raises(ConfigError, match="crop="):
            images.parse_crop(bad, 64)
    with pytest.raises(ConfigError, match="preset is for 64px"):
        images.parse_crop("dcgan-faces", 128)


def _bad_files(tmp_path, rgb):
    png = _png(rgb)
    cases = {
        "empty.png": (b"", "empty file"),
        "garbage.png": (b"\x00not an image at all" * 20, "not a recognised image"),
        "truncated.png": (png[: len(png) // 2], "corrupt or truncated"),
        "mislabelled.jpg": (png, "content is PNG but the extension says .jpg"),
        "notes.txt": (png, "extension '.txt' is not an image type"),
        "tiny.png": (_png(np.zeros((1, 1, 3), np.uint8)), "1x1 pixels, too small"),
    }
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), np.nan, np.float32), mode="F").save(buf, format="TIFF")
    cases["nan.tif"] = (buf.getvalue(), "NaN")
    for name, (data, _) in cases.items():
        (tmp_path / name).write_bytes(data)
    return {name: msg for name, (_, msg) in cases.items()}


def test_bad_images_give_one_line_errors_naming_the_file(tmp_path, rgb):
    pre = images.Preprocess(16)
    for name, msg in _bad_files(tmp_path, rgb).items():
        with pytest.raises(ImageError) as e:
            images.load_image(tmp_path / name, pre)
        text = str(e.value)
        assert text.startswith(str(tmp_path / name) + ": "), text
        assert msg in text, text
        assert "\n" not in text
    with pytest.raises(ImageError, match="missing.png: cannot read"):
        images.load_image(tmp_path / "missing.png", pre)


def test_batch_load_skips_bad_images(tmp_path, rgb):
    bad = _bad_files(tmp_path, rgb)
    (tmp_path / "good1.png").write_bytes(_png(rgb))
    (tmp_path / "good2.png").write_bytes(_png(rgb[::-1]))
    files = sorted(tmp_path.iterdir())
    seen = []
    x, names, errors = images.load_images(files, images.Preprocess(16), on_error=lambda p, e: seen.append(p.name))
    assert [p.name for p in names] == ["good1.png", "good2.png"]
    assert x.shape == (2, 16, 16, 3)
    assert sorted(p.name for p, _ in errors) == sorted(bad) == sorted(seen)


def test_grid_and_png_round_trip(tmp_path):
    x = np.linspace(-1, 1, 5 * 8 * 8 * 3, dtype=np.float32).reshape(5, 8, 8, 3)
    sheet = images.image_grid(x, cols=3, pad=1)
    assert sheet.shape == (2 * 9 + 1, 3 * 9 + 1, 3) and sheet.dtype == np.uint8
    np.testing.assert_array_equal(sheet[1:9, 1:9], images.to_uint8(x[0]))
    images.save_png(tmp_path / "s.png", sheet)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "s.png")), sheet)
    assert images.to_uint8(np.array([-1.0, 0.0, 1.0, 3.0])).tolist() == [0, 128, 255, 255]
