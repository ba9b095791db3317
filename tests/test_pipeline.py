"""Streaming input: deterministic listing, fixed-shape padded batches, per-file errors, bounded prefetch."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxinv.errors import ConfigError, ImageError
from jaxinv.pipeline import ImageRef, list_images, stream_batches


def _png(path: Path, value: int, size=(6, 5)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def _load(ref: ImageRef) -> np.ndarray:
    with Image.open(ref.path) as im:
        return np.asarray(im.convert("RGB").resize((4, 4)), np.float32)


def test_listing_is_recursive_sorted_and_keyed_by_relative_path(tmp_path):
    root = tmp_path / "set"
    for rel in ["b.png", "a/z.jpg", "a/c.PNG", "a/.hidden.png", ".cache/x.png", "notes.txt", "c.webp"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    extra = tmp_path / "single.dat"
    extra.write_bytes(b"x")
    refs = list_images([root, extra])
    assert [r.key for r in refs] == ["a/c.PNG", "a/z.jpg", "b.png", "c.webp", "single.dat"]
    assert refs[0].path == root / "a" / "c.PNG"
    # The key does not depend on how the folder was named on the command line.
    assert [r.key for r in list_images([str(root) + "/"])] == [r.key for r in refs[:4]]


def test_listing_errors_are_one_line_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        list_images([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no image files"):
        list_images([tmp_path / "empty"])
    _png(tmp_path / "d1" / "x.png", 1)
    _png(tmp_path / "d2" / "x.png", 2)
    with pytest.raises(ConfigError, match="same name 'x.png'") as e:
        list_images([tmp_path / "d1", tmp_path / "d2"])
    assert "\n" not in str(e.value)


def test_batches_have_fixed_shape_padding_and_listing_order(tmp_path):
    refs = [ImageRef(f"{i}.png", _png(tmp_path / f"{i}.png", 10 * i)) for i in range(7)]
    batches = list(stream_batches(refs, _load, batch_size=3, item_shape=(4, 4, 3), workers=3))
    assert [b.count for b in batches] == [3, 3, 1]
    assert [k for b in batches for k in b.keys] == [r.key for r in refs]
    for b in batches:
        assert b.images.shape == (3, 4, 4, 3) and b.images.dtype == np.float32
        for row, ref in enumerate(b.refs):
            np.testing.assert_array_equal(b.images[row], _load(ref))
    last = batches[-1]
    np.testing.assert_array_equal(last.images[1], last.images[0])  # padding repeats the last real row
    np.testing.assert_array_equal(last.images[2], last.images[0])


def test_bad_items_become_errors_and_the_rest_go_on(tmp_path):
    good = [ImageRef(f"g{i}.png", _png(tmp_path / f"g{i}.png", i)) for i in range(4)]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    refs = [good[0], ImageRef("corrupt.png", corrupt), good[1], ImageRef("empty.png", empty), good[2], good[3]]

    def load(ref):
        if ref.key == "g3.png":
            raise ImageError(f"{ref.path}: image is 1x1, too small")
        return _load(ref)

    batches = list(stream_batches(refs, load, batch_size=2, item_shape=(4, 4, 3), workers=2))
    assert [k for b in batches for k in b.keys] == ["g0.png", "g1.png", "g2.png"]
    errors = {r.key: why for b in batches for r, why in b.errors}
    assert set(errors) == {"corrupt.png", "empty.png", "g3.png"}
    assert errors["g3.png"].endswith("image is 1x1, too small")  # user errors keep their own message
    assert errors["corrupt.png"].startswith(("OSError", "UnidentifiedImageError"))
    assert all("\n" not in why for why in errors.values())


def test_wrong_shape_from_loader_is_an_item_error(tmp_path):
    refs = [ImageRef("a.png", _png(tmp_path / "a.png", 1)), ImageRef("b.png", _png(tmp_path / "b.png", 2))]
    load = lambda ref: np.zeros((4, 4, 3) if ref.key == "a.png" else (5, 4, 3), np.float32)  # noqa: E731
    batches = list(stream_batches(refs, load, batch_size=4, item_shape=(4, 4, 3)))
    assert [b.count for b in batches] == [1]
    assert "expected (4, 4, 3)" in batches[0].errors[0][1]


def test_prefetch_is_bounded_and_listing_is_consumed_lazily():
    """With a stalled consumer, only a bounded number of items is listed and decoded ahead."""
    listed, loaded = [], []
    lock = threading.Lock()

    def items():
        for i in range(100_000):  # a huge image set: must never be materialised
            listed.append(i)
            yield ImageRef(f"{i}", Path(f"{i}.png"))

    def load(ref):
        with lock:
            loaded.append(ref.key)
        return np.full((2, 2, 1), float(ref.key), np.float32)

    batch_size, prefetch, workers = 4, 2, 2
    with stream_batches(items(), load, batch_size=batch_size, item_shape=(2, 2, 1), workers=workers,
                        prefetch=prefetch) as stream:
        first = next(stream)
        time.sleep(0.5)  # consumer busy: the producer must stop at the bound
        bound = (1 + prefetch + 1) * batch_size + 2 * workers + 1
        assert len(loaded) <= bound, f"{len(loaded)} items decoded ahead, bound {bound}"
        assert len(listed) <= bound + 1, f"{len(listed)} items listed ahead, bound {bound + 1}"
        second = next(stream)
    assert first.keys == ["0", "1", "2", "3"] and second.keys == ["4", "5", "6", "7"]
    np.testing.assert_array_equal(second.images[:, 0, 0, 0], [4, 5, 6, 7])


def test_failure_of_the_listing_reaches_the_consumer():
    def items():
        yield ImageRef("0", Path("0.png"))
        raise ConfigError("--images x: cannot list directory (Permission denied)")

    stream = stream_batches(items(), lambda r: np.zeros((1,), np.float32), batch_size=2, item_shape=(1,))
    with pytest.raises(ConfigError, match="cannot list directory"):
        list(stream)


def test_input_wait_is_measured():
    def load(ref):
        time.sleep(0.05)
        return np.zeros((1,), np.float32)

    refs = [ImageRef(str(i), Path(f"{i}")) for i in range(4)]
    with stream_batches(refs, load, batch_size=2, item_shape=(1,), workers=1) as stream:
        assert sum(b.count for b in stream) == 4
    assert stream.wait_seconds >= 0.1  # the consumer had nothing to do but wait for 4 x 50 ms of decoding
