"""Resumable batch jobs: atomic files, journal, manifest, errors.csv, resume after SIGKILL, NaN items.

Subprocess runs are `python -m jaxinv invert` on the embedded DCGAN with 3-10 step inversions; they share one
compilation cache per pytest session (tests/test_distributed.py runs the same programs).
"""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxinv import jobs
from jaxinv.errors import ConfigError
from jaxinv.pipeline import ImageRef

ROOT = Path(__file__).resolve().parents[1]
BOOKKEEPING = ("jaxinv-job.json",)  # job files that legitimately differ between runs (plus journals)


# ---------------------------------------------------------------------------------------------------------
# Helpers shared with tests/test_distributed.py


def make_images(folder: Path, good: int = 6, bad: bool = True) -> Path:
    """`good` decodable images of assorted modes and sizes (img0.png ...), plus corrupt / empty / non-image
    files when `bad`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(7)
    for i in range(good):
        kind = i % 4
        h, w = 48 + 8 * i, 72 - 4 * i
        if kind == 0:
            im = Image.fromarray(rng.randint(0, 256, (h, w, 3), np.uint8))
        elif kind == 1:
            im = Image.fromarray(rng.randint(0, 256, (h, w), np.uint8))  # grayscale
        elif kind == 2:
            im = Image.fromarray(rng.randint(0, 256, (h, w, 4), np.uint8))  # RGBA
        else:
            im = Image.fromarray(rng.randint(0, 65536, (h, w), np.uint16))  # 16-bit
        im.save(folder / f"img{i}.png")
    if bad:
        (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
        (folder / "empty.png").write_bytes(b"")
        (folder / "notes.png").write_text("this is not an image\n")
    return folder


def invert_cmd(images: Path, out: Path, *, batch: int = 2, steps: int = 3, seed: int = 0, restarts: int = 2,
               extra: tuple[str, ...] = ()) -> list[str]:
    """The real command line: `python -m jaxinv invert` with the embedded DCGAN (default model and crop)."""
    return [sys.executable, "-m", "jaxinv", "invert", "--images", str(images), "--out", str(out), "--steps",
            str(steps), "--batch", str(batch), "--seed", str(seed), "--restarts", str(restarts), "--no-progress",
            *extra]


def read_journals(out: Path) -> dict[int, list[dict]]:
    res = {}
    for p in sorted(out.glob("journal.p*.jsonl")):
        res[int(p.name[len("journal.p"):-len(".jsonl")])] = [json.loads(line) for line in p.read_text().splitlines()]
    return res


def _metrics_without_seconds(path: Path) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(path.read_text())))
    col = rows[0].index("seconds")
    return [r[:col] + r[col + 1:] for r in rows]


def compare_dirs(a: Path, b: Path, skip: tuple[str, ...] = ()) -> int:
    """Assert both output directories hold the same files with the same bytes (metrics.csv: all columns but
    the wall-clock `seconds`); journals and the manifest are bookkeeping. Returns the number of files."""
    def files(d):
        return {p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file()
                and not p.name.startswith("journal.") and p.name not in BOOKKEEPING + skip}

    fa, fb = files(a), files(b)
    assert fa == fb, f"file sets differ: only in {a.name}: {sorted(fa - fb)}, only in {b.name}: {sorted(fb - fa)}"
    for rel in sorted(fa):
        if rel == "metrics.csv":
            assert _metrics_without_seconds(a / rel) == _metrics_without_seconds(b / rel), rel
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs between {a} and {b}"
    return len(fa)


def _cache_env(tmp_path_factory) -> dict:
    return {**os.environ, "JAXINV_XLA_CACHE": str(tmp_path_factory.getbasetemp() / "jaxinv-xla-cache"),
            "XLA_FLAGS": ""}


def _run(cmd, env, **kw):
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, **kw)


# ---------------------------------------------------------------------------------------------------------
# Units


def test_atomic_write_replaces_whole_files_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.bin"
    jobs.atomic_write(p, b"one")
    jobs.atomic_write(p, b"two")
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.bin"]
    (tmp_path / f".b.png{jobs.TMP_TAG}-999").write_bytes(b"partial")  # left by a killed process
    jobs.remove_stale_temps(tmp_path)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.bin"]


def test_npz_bytes_are_deterministic_and_readable(tmp_path):
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "noise/b4": np.ones((1, 4, 4), np.float32)}
    first = jobs.npz_bytes(arrays)
    time.sleep(2.1)  # zip timestamps have 2 s resolution: np.savez output would change here
    assert jobs.npz_bytes(dict(reversed(arrays.items()))) == first
    (tmp_path / "x.npz").write_bytes(first)
    with np.load(tmp_path / "x.npz") as z:
        assert sorted(z.files) == ["noise/b4", "w"]
        np.testing.assert_array_equal(z["w"], arrays["w"])
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_image_id_is_the_sha256_of_the_key():
    import hashlib

    for key in ["img0.png", "a/b/ü.jpg"]:
        ref = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little") % 2**31
        assert jobs.image_id(key) == ref
    assert jobs.image_id("a.png") != jobs.image_id("b.png")


def test_output_names_keep_stems_unless_they_collide():
    refs = [ImageRef(k, Path(k)) for k in ["a/001.png", "b/001.png", "x.png", "x.jpg", "y.tar.png"]]
    assert jobs.output_names(refs) == {"a/001.png": "a/001", "b/001.png": "b/001", "x.png": "x_png",
                                       "x.jpg": "x_jpg", "y.tar.png": "y.tar"}


def test_journal_cuts_a_torn_last_line_and_merges_processes(tmp_path):
    j = jobs.Journal(tmp_path, 0)
    j.append([{"key": "a", "status": "ok", "files": ["a/proj.png"], "metrics": {}},
              {"key": "b", "status": "error", "files": [], "reason": "corrupt"}])
    j.close()
    with open(tmp_path / "journal.p0.jsonl", "ab") as f:
        f.write(b'{"key": "c", "stat')  # killed mid-append
    j = jobs.Journal(tmp_path, 0)
    j.append([{"key": "d", "status": "nan", "files": [], "reason": "NaN"}])
    j.close()
    j1 = jobs.Journal(tmp_path, 1)
    j1.append([{"key": "b", "status": "ok", "files": [], "metrics": {}}])  # fixed image done by process 1
    j1.close()
    entries = jobs.Journal.load_all(tmp_path)
    assert sorted(entries) == ["a", "b", "d"]
    assert entries["b"]["status"] == "ok"
    assert all(line.endswith("}") for line in (tmp_path / "journal.p0.jsonl").read_text().splitlines())
    # "a" counts as finished only while its files exist.
    assert jobs.finished_keys(tmp_path, entries) == {"b", "d"}
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "proj.png").write_bytes(b"x")
    assert jobs.finished_keys(tmp_path, entries) == {"a", "b", "d"}


def test_manifest_refuses_an_incompatible_rerun(tmp_path):
    m = {"model": "ab" * 32, "steps": 100, "seed": 0}
    jobs.check_manifest(tmp_path, m)
    jobs.check_manifest(tmp_path, dict(m))  # same job: fine
    with pytest.raises(ConfigError) as e:
        jobs.check_manifest(tmp_path, {**m, "steps": 200, "model": "cd" * 32})
    msg = str(e.value)
    assert "holds a different job" in msg and "steps: 100 -> 200" in msg and "model: abab" in msg
    assert "\n" not in msg


def test_unwritable_or_full_output_fails_fast(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        jobs.check_writable(blocker / "out")

    class Usage:
        free = 10 * 2**20

    monkeypatch.setattr(jobs.shutil, "disk_usage", lambda p: Usage)
    jobs.check_free_space(tmp_path, 2**20)
    with pytest.raises(ConfigError, match=r"10.0 MiB free, the job needs about 20.0 MiB"):
        jobs.check_free_space(tmp_path, 20 * 2**20)


def test_full_disk_is_refused_before_any_work(tmp_path, monkeypatch):
    images = make_images(tmp_path / "imgs", good=2, bad=False)

    class Usage:
        free = 1000

    monkeypatch.setattr(jobs.shutil, "disk_usage", lambda p: Usage)
    spec = jobs.JobSpec(kind="test", manifest={}, item_shape=(2,), load=lambda r: pytest.fail("loaded"),
                        compute=lambda x, i: pytest.fail("computed"), write=lambda *a: {}, columns=[],
                        bytes_per_image=10_000, batch_size=2)
    with pytest.raises(ConfigError, match="MiB free"):
        jobs.run_job(spec, [images], tmp_path / "out", progress=False)


def nan_if_white(img, target):
    """MSE, but NaN for an all-white target (a NaN that no reseed can fix)."""
    mse = jnp.mean(jnp.square(img - target), axis=(1, 2, 3))
    return jnp.where(jnp.mean(target, axis=(1, 2, 3)) > 0.99, jnp.nan, mse)


def test_nan_item_is_flagged_and_the_rest_of_its_batch_is_unaffected(tmp_path):
    from jaxinv.models.dcgan import load_default

    model = load_default()
    rng = np.random.RandomState(3)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(rng.randint(0, 256, (64, 64, 3), np.uint8)).save(folder / f"n{i}.png")
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(folder / "white.png")

    def load(ref):
        with Image.open(ref.path) as im:
            return np.asarray(im.convert("RGB"), np.float32) / 127.5 - 1

    spec = jobs.invert_spec(model, load, loss=[(1.0, nan_if_white)], steps=2, batch_size=4, max_reseeds=2)
    rep = jobs.run_job(spec, [folder], tmp_path / "with", progress=False)
    assert (rep.done, rep.flagged) == (3, 1)
    errors = list(csv.reader(io.StringIO((tmp_path / "with" / "errors.csv").read_text())))
    assert errors == [["image", "reason"], ["white.png", "loss is NaN/inf after 2 reseeds"]]
    assert not (tmp_path / "with" / "white").exists()
    # The same three images without the NaN item (padding instead): identical files.
    (folder / "white.png").unlink()
    rep = jobs.run_job(spec, [folder], tmp_path / "without", progress=False)
    assert (rep.done, rep.flagged) == (3, 0)
    assert compare_dirs(tmp_path / "with", tmp_path / "without", skip=("errors.csv",)) == 9 + 1


# ---------------------------------------------------------------------------------------------------------
# Real jobs in subprocesses


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run over good and bad images."""
    images = make_images(tmp_path_factory.mktemp("imgs"))
    out = tmp_path_factory.mktemp("ref") / "out"
    r = _run(invert_cmd(images, out, steps=10), _cache_env(tmp_path_factory))
    assert r.returncode == 3, r.stderr[-3000:]  # 3: finished, some images unreadable
    assert "6 inverted, 0 already done, 3 unreadable, 0 failed" in r.stderr
    return images, out


def test_bad_images_are_listed_in_errors_csv_and_the_rest_finish(reference):
    images, out = reference
    errors = list(csv.reader(io.StringIO((out / "errors.csv").read_text())))
    assert errors[0] == ["image", "reason"]
    assert sorted(r[0] for r in errors[1:]) == ["corrupt.png", "empty.png", "notes.png"]
    assert all(r[1] and "\n" not in r[1] for r in errors[1:])
    metrics = list(csv.DictReader(io.StringIO((out / "metrics.csv").read_text())))
    assert [m["image"] for m in metrics] == [f"img{i}.png" for i in range(6)]
    for i in range(6):
        for f in ("target.png", "proj.png", "latent.npz"):
            assert (out / f"img{i}" / f).is_file()
        with Image.open(out / f"img{i}" / "proj.png") as im:
            assert im.size == (64, 64)
        with np.load(out / f"img{i}" / "latent.npz") as z:
            assert z["z"].shape == (1, 100) and np.isfinite(z["z"]).all()


def test_resume_after_sigkill_gives_the_same_files(reference, tmp_path, tmp_path_factory):
    images, ref_out = reference
    out = tmp_path / "out"
    env = _cache_env(tmp_path_factory)
    proc = subprocess.Popen(invert_cmd(images, out, steps=10), env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    journal = out / "journal.p0.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and b'"status": "ok"' in journal.read_bytes():
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"job ended before it could be killed: {proc.stderr.read()[-2000:]!r}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    done = [e["key"] for e in read_journals(out)[0] if e["status"] == "ok"]
    assert 0 < len(done) < 6, f"the kill did not interrupt the job (done: {done})"
    assert not (out / "metrics.csv").exists()
    r = _run(invert_cmd(images, out, steps=10), env)
    assert r.returncode == 3, r.stderr[-3000:]
    assert f"{len(done)} of 9 images already done" in r.stderr
    # The rerun computed only the rest.
    entries = read_journals(out)[0]
    assert sorted(e["key"] for e in entries if e["status"] == "ok") == [f"img{i}.png" for i in range(6)]
    assert compare_dirs(ref_out, out) >= 6 * 3 + 2


def test_incompatible_rerun_is_refused_and_a_finished_job_is_a_no_op(reference, tmp_path_factory):
    images, out = reference
    env = _cache_env(tmp_path_factory)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    r = _run(invert_cmd(images, out, steps=10, seed=1), env)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "holds a different job" in lines[0] and "seed: 0 -> 1" in lines[0], r.stderr
    r = _run(invert_cmd(images, out, steps=10), env)
    assert r.returncode == 3, r.stderr[-3000:]
    assert "6 of 9 images already done" in r.stderr and "0 inverted, 6 already done" in r.stderr
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
