"""Resumable batch jobs: output directory, journal, manifest, errors, and the generic job loop.

Layout of an output directory DIR:

    DIR/jaxinv-job.json        manifest: job kind, model fingerprint, every option that changes results
    DIR/journal.p<K>.jsonl     append-only (fsync'd) record of the images process K finished or rejected
    DIR/<name>/...             per-image result files, each written atomically (temp file + os.replace)
    DIR/metrics.csv            one row per finished image, sorted by image (rebuilt from the journals)
    DIR/errors.csv             image,reason for every corrupt/unsupported image and every NaN result

An image counts as done once its journal line is on disk, and that line is written only after all of its
files are (fsync'd, renamed into place). A rerun of the same command reads the journals, skips the done
images, and recomputes the rest; since each image's randomness is a function of (seed, image key) only
(`image_id`), and the compiled program computes every image independently of its batch neighbours and of
the device count, the files are byte-identical to those of an uninterrupted run (metrics.csv differs only
in its `seconds` column, a wall-clock measurement). Images that failed to load are tried again on a rerun.
A rerun with a different model or result-changing option into the same DIR is refused (`check_manifest`).

The job loop (`run_job`) is generic: a `JobSpec` gives the per-item loader, a per-batch compute function
(dispatched asynchronously, so the next batch is decoded and the previous one written while it runs) and a
per-image writer. `invert_spec` builds the spec of `jaxinv invert`; `jaxinv encode` can build its own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import queue
import shutil
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxinv import degrade, metrics, video
from jaxinv import invert as engine
from jaxinv.distributed import (
    Devices,
    ProcessInfo,
    barrier,
    enable_compilation_cache,
    init_distributed,
    item_finite,
    process_info,
    reseeding,
    shard_items,
)
from jaxinv.errors import ConfigError
from jaxinv.generators import Generator
from jaxinv.images import to_uint8
from jaxinv.invert import class_vectors, image_id, likelihood_loss, make_loss, resolve_lane_group, space_from_spec
from jaxinv.optim import make_optimizer
from jaxinv.pipeline import ImageRef, list_images, stream_batches
from jaxinv.spaces import ZSpace, check_space

MANIFEST = "jaxinv-job.json"
MANIFEST_VERSION = 1
TMP_TAG = ".jaxinv-tmp"


# ---------------------------------------------------------------------------------------------------------
# Identity and names


def output_names(refs: Sequence[ImageRef]) -> dict[str, str]:
    """key -> output folder (relative to DIR): the key without its extension ('a/001.png' -> 'a/001'), or
    with it ('a/001_png') when two keys share a stem. Decided on the whole image list, so every process
    of a job and every rerun agrees."""
    stems: dict[str, int] = {}
    for r in refs:
        s = str(Path(r.key).with_suffix(""))
        stems[s] = stems.get(s, 0) + 1
    out = {}
    for r in refs:
        p = Path(r.key)
        s = str(p.with_suffix(""))
        out[r.key] = s if stems[s] == 1 else str(p.with_name(p.name.replace(".", "_")))
    return out


# ---------------------------------------------------------------------------------------------------------
# Atomic, deterministic files


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    """Write `data` to `path` via a temp file in the same folder and os.replace: readers see the old file or
    the whole new one, never a part. The parent folder's entry is made durable by the caller
    (`ItemWriter.commit` / `_fsync_dir`)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}{TMP_TAG}-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_stale_temps(folder: Path) -> None:
    """Delete temp files a killed run left in `folder` (not recursive)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in entries:
        if e.name.startswith(".") and TMP_TAG in e.name and e.is_file(follow_symlinks=False):
            try:
                os.unlink(e.path)
            except OSError:
                pass


def png_bytes(img: np.ndarray) -> bytes:
    """PNG of an image [H, W, C] uint8 (C = 1 or 3) or float in [-1, 1] (quantised as `jaxinv.images`);
    pillow writes no timestamps, so equal pixels give equal bytes."""
    from PIL import Image


    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = to_uint8(img)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (readable by np.load) with fixed timestamps, so equal arrays give equal bytes (np.savez
    stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            arr = io.BytesIO()
            np.lib.format.write_array(arr, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            zf.writestr(info, arr.getvalue())
    return buf.getvalue()


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays -> {"a/b": array} (names of latent.npz)."""
    if isinstance(tree, dict):
        out: dict[str, np.ndarray] = {}
        for k in sorted(tree):
            out.update(flatten_tree(tree[k], f"{prefix}{k}/"))
        return out
    return {prefix.rstrip("/"): np.asarray(tree)}


class ItemWriter:
    """Writes one image's result files into DIR/<name>/ atomically; `commit()` makes the folder durable."""

    def __init__(self, root: Path, name: str, fsync: bool = True):
        self.folder = root / name
        self.fsync = fsync
        self.files: list[str] = []
        self._name = name
        self._ready = False

    def write(self, filename: str, data: bytes) -> None:
        if not self._ready:  # created on the first file: a rejected item leaves no folder
            self.folder.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.folder)
            self._ready = True
        atomic_write(self.folder / filename, data, self.fsync)
        self.files.append(f"{self._name}/{filename}")

    def commit(self) -> None:
        if self.fsync and self._ready:
            _fsync_dir(self.folder)


# ---------------------------------------------------------------------------------------------------------
# Output directory: checks, manifest, journal


def check_writable(out_dir: Path) -> None:
    """Create DIR and prove a file can be written, synced and removed there; ConfigError otherwise."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-probe{TMP_TAG}-{os.getpid()}"
        with open(probe, "wb") as f:
            f.write(b"jaxinv")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink(missing_ok=True)  # another process's start-up clean-up may have taken it already
    except OSError as e:
        raise ConfigError(f"out_dir={out_dir}: not writable ({e.strerror or type(e).__name__})") from None


def check_free_space(out_dir: Path, needed_bytes: int) -> None:
    """Refuse to start when DIR's file system has less free space than the expected outputs."""
    free = shutil.disk_usage(out_dir).free
    if needed_bytes > free:
        raise ConfigError(f"out_dir={out_dir}: {free / 2**20:.1f} MiB free, the job needs about "
                          f"{needed_bytes / 2**20:.1f} MiB for its outputs")


def check_manifest(out_dir: Path, manifest: dict, write: bool = True) -> None:
    """Compare with DIR's manifest (refuse an incompatible rerun) or write it for a new job."""
    path = out_dir / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"out_dir={out_dir}: unreadable {MANIFEST} ({e}); use a new out_dir") from None
        if old != manifest:
            diffs = _diff(old, manifest)
            raise ConfigError(f"out_dir={out_dir}: holds a different job ({'; '.join(diffs[:4])}); use a new out_dir "
                              "or the original options")
        return
    if write:
        atomic_write(path, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
        _fsync_dir(out_dir)


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{prefix}{k}.")
        return out
    if old == new:
        return []
    return [f"{prefix.rstrip('.')}: {_short(old)} -> {_short(new)}"]


def _short(x: Any) -> str:
    s = json.dumps(x) if not isinstance(x, str) else x
    return s if len(s) <= 24 else s[:12] + "..." + s[-8:]


class Journal:
    """This process's append-only journal (`DIR/journal.p<K>.jsonl`); `load_all` merges every process's.

    One JSON object per line: {"key", "status": "ok" | "nan" | "error", "files", "metrics" | "reason"}. A
    line is appended, flushed and fsync'd after the files it names are in place; a torn last line (killed
    mid-write) is cut off when the journal is reopened."""

    def __init__(self, out_dir: Path, process_id: int = 0, fsync: bool = True):
        self.path = out_dir / f"journal.p{process_id}.jsonl"
        self.fsync = fsync
        self._repair()
        self._f = open(self.path, "ab")
        self._lock = threading.Lock()  # the job loop (load errors) and the writer thread both append

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def append(self, entries: Iterable[dict]) -> None:
        lines = b"".join((json.dumps(e, sort_keys=True) + "\n").encode() for e in entries)
        if not lines:
            return
        with self._lock:
            self._f.write(lines)
            self._f.flush()
            if self.fsync:
                os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    @staticmethod
    def load_all(out_dir: Path) -> dict[str, dict]:
        """key -> last entry, over all journals in DIR ("ok"/"nan" beat "error" across journals)."""
        final: dict[str, dict] = {}
        for p in sorted(out_dir.glob("journal.p*.jsonl")):
            with open(p, "rb") as f:
                for line in f:
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue  # torn last line of a killed process
                    old = final.get(e.get("key"))
                    if old is None or e["status"] != "error" or old["status"] == "error":
                        final[e["key"]] = e
        return final


def finished_keys(out_dir: Path, entries: dict[str, dict]) -> set[str]:
    """Keys whose result is final: "ok" with every file still present, or "nan" (flagged)."""
    done = set()
    for k, e in entries.items():
        if e["status"] == "nan" or (e["status"] == "ok" and all((out_dir / f).exists() for f in e["files"])):
            done.add(k)
    return done


def _csv_bytes(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def write_summaries(out_dir: Path, columns: Sequence[str]) -> tuple[int, int]:
    """Rebuild DIR/metrics.csv and DIR/errors.csv from the journals (sorted by image). Returns
    (number of finished images, number of errors)."""
    entries = Journal.load_all(out_dir)
    ok = sorted((k, e) for k, e in entries.items() if e["status"] == "ok")
    bad = sorted((k, e) for k, e in entries.items() if e["status"] != "ok")
    atomic_write(out_dir / "metrics.csv",
                 _csv_bytes(["image", *columns], ([k, *(e["metrics"].get(c, "") for c in columns)] for k, e in ok)))
    atomic_write(out_dir / "errors.csv", _csv_bytes(["image", "reason"], ([k, e["reason"]] for k, e in bad)))
    _fsync_dir(out_dir)
    return len(ok), len(bad)


# ---------------------------------------------------------------------------------------------------------
# The generic job loop


class ItemFlagged(Exception):
    """Raised by a writer for an item whose result is unusable (e.g. NaN after all reseeds)."""


@dataclass
class JobSpec:
    """What a batch job computes. `compute` is called with the padded host batch and its image ids and may
    return device arrays still being computed (async dispatch); `fetch` brings them to the host; `write`
    stores item `row` of the fetched batch and returns its metrics (or raises ItemFlagged)."""

    kind: str  # "invert", "encode", ...
    manifest: dict  # model fingerprint + every option that changes results
    item_shape: tuple[int, ...]
    load: Callable[[ImageRef], np.ndarray]
    compute: Callable[[np.ndarray, np.ndarray], Any]
    write: Callable[[ItemWriter, ImageRef, Any, int, np.ndarray], dict[str, Any]]
    columns: Sequence[str]  # metrics.csv columns after "image"
    bytes_per_image: int  # upper estimate of one image's files (free-space check)
    batch_size: int  # global batch (compiled shape)
    fetch: Callable[[Any], Any] = lambda out: jax.tree_util.tree_map(np.asarray, out)
    # > 0: `compute` reports lane-steps via jaxinv.invert.progress_hook (the bar's unit)
    lane_steps_per_item: int = 0


@dataclass
class JobReport:
    total: int = 0  # images in the job (all processes)
    assigned: int = 0  # images of this process
    skipped: int = 0  # already finished by an earlier run
    done: int = 0  # finished now
    errors: int = 0  # failed to load (this run)
    flagged: int = 0  # NaN/inf after all reseeds (this run)
    batches: int = 0
    seconds: float = 0.0  # wall time of the batch loop
    first_batch_seconds: float = 0.0  # dispatch to completion of batch 0 (compilation included)
    compile_seconds: float = 0.0  # tracing + compiling (also excluded from metrics.csv's per-image `seconds`)
    input_wait_seconds: float = 0.0  # device idle while the loop waited for decoded input (after batch 0)
    device_idle_seconds: float = 0.0  # device idle for any reason (after batch 0)
    busy_seconds: float = 0.0  # device busy (after batch 0)
    completions: list[float] = field(default_factory=list)

    @property
    def input_wait_share(self) -> float:
        span = self.busy_seconds + self.device_idle_seconds
        return self.input_wait_seconds / span if span > 0 else 0.0


class _Watch:
    """Records when a dispatched batch's results are ready (device done), without blocking the loop.
    `waits` are the intervals the loop spent blocked on input since the previous dispatch."""

    def __init__(self, out: Any, t_dispatch: float, prev: _Watch | None, waits: list[tuple[float, float]],
                 compile_seconds: float = 0.0):
        self.t_dispatch = t_dispatch
        self.compile_seconds = compile_seconds
        self.t_done = 0.0
        self.prev = prev
        self.waits = waits
        self._t = threading.Thread(target=self._run, args=(out,), daemon=True)
        self._t.start()

    def _run(self, out: Any) -> None:
        try:
            jax.block_until_ready(out)
        finally:
            self.t_done = time.perf_counter()

    def join(self) -> float:
        self._t.join()
        return self.t_done


def run_job(spec: JobSpec, images: Sequence[str | os.PathLike] | Sequence[ImageRef], out_dir: str | os.PathLike, *,
            process: ProcessInfo | None = None, workers: int | None = None, prefetch: int = 2,
            progress: bool = True, fsync: bool = True, log: Callable[[str], None] | None = None) -> JobReport:
    """Run `spec` over `images` (files / directories, or ImageRefs from `list_images`) into `out_dir`,
    resumably. Multi-process jobs (`process`) must have called `init_distributed` first."""
    process = process or ProcessInfo()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out_dir)
    refs = list(images) if images and all(isinstance(r, ImageRef) for r in images) else list_images(images)
    names = output_names(refs)
    check_writable(out)
    check_manifest(out, {"version": MANIFEST_VERSION, "kind": spec.kind, **spec.manifest},
                   write=process.process_id == 0)
    if process.process_id == 0:
        remove_stale_temps(out)
    mine = shard_items(refs, process)
    done_keys = finished_keys(out, Journal.load_all(out))
    todo = [r for r in mine if r.key not in done_keys]
    check_free_space(out, len(todo) * spec.bytes_per_image + (1 << 20))
    rep = JobReport(total=len(refs), assigned=len(mine), skipped=len(mine) - len(todo))
    if rep.skipped:
        log(f"jaxinv {spec.kind}: {rep.skipped} of {len(mine)} images already done in {out}, {len(todo)} to go")
    journal = Journal(out, process.process_id, fsync)
    unit = max(1, spec.lane_steps_per_item)  # progress unit per image: lane-steps, or the image itself
    bar = _progress(len(todo) * unit, spec.kind, progress, "step" if spec.lane_steps_per_item else "img")
    finished = [0]  # images through (written, flagged or unreadable): the bar is set to that after each batch
    bar_lock = threading.Lock()  # the bar moves from XLA's threads (in-loop reports) and the writer thread

    def report(lane_steps: float) -> None:  # in-loop reports include padded lanes: capped at the total
        with bar_lock:
            bar.update(int(min(lane_steps, max(0, bar.total - bar.n))))

    def count_through(n: int) -> None:
        with bar_lock:
            finished[0] += n
            bar.n = max(bar.n, finished[0] * unit)  # at least exact after each batch
            bar.refresh()

    pending = None
    watches: list[_Watch] = []
    t_start = time.perf_counter()

    def finish(batch, host, watch) -> None:  # runs on the writer thread
        t_done = watch.join()
        started = max(watch.t_dispatch, watch.prev.t_done if watch.prev else 0.0)
        per_item = max(0.0, t_done - started - watch.compile_seconds) / max(batch.count, 1)
        entries = []
        for row, ref in enumerate(batch.refs):
            w = ItemWriter(out, names[ref.key], fsync)
            try:
                metrics = spec.write(w, ref, host, row, batch.images[row])
            except ItemFlagged as e:
                entries.append({"key": ref.key, "status": "nan", "files": [], "reason": str(e)})
                rep.flagged += 1
                continue
            w.commit()
            metrics = {**metrics, "seconds": round(per_item, 4)}
            entries.append({"key": ref.key, "status": "ok", "files": w.files, "metrics": metrics})
        journal.append(entries)
        rep.done += len(entries) - sum(e["status"] != "ok" for e in entries)
        count_through(len(entries))

    writer = _BackgroundWriter(finish)
    try:
        with engine.progress_hook(report if spec.lane_steps_per_item else None), \
                stream_batches(todo, spec.load, batch_size=spec.batch_size, item_shape=spec.item_shape,
                               workers=workers, prefetch=prefetch) as stream:
            n_waits = 0
            for batch in stream:
                if batch.errors:
                    journal.append({"key": r.key, "status": "error", "files": [], "reason": why}
                                   for r, why in batch.errors)
                    rep.errors += len(batch.errors)
                    count_through(len(batch.errors))
                    for r, why in batch.errors:
                        log(f"jaxinv {spec.kind}: skipped " + (why if str(r.path) in why else f"{r.path}: {why}"))
                if batch.count == 0:
                    continue
                ids = np.asarray([image_id(k) for k in batch.keys], np.int32)
                ids = np.concatenate([ids, np.repeat(ids[-1:], spec.batch_size - len(ids))])
                t_dispatch = time.perf_counter()
                compiled_before = _COMPILE_CLOCK.seconds()
                dev_out = spec.compute(batch.images, ids)
                compile_s = _COMPILE_CLOCK.seconds() - compiled_before  # jit compiles before it dispatches
                rep.compile_seconds += compile_s
                watch = _Watch(dev_out, t_dispatch, watches[-1] if watches else None, stream.waits[n_waits:],
                               compile_s)
                n_waits = len(stream.waits)
                watches.append(watch)
                rep.batches += 1
                if pending is not None:  # batch k-1 to the host (done by now or soon), written in the background
                    writer.submit(pending[0], spec.fetch(pending[1]), pending[2])
                pending = (batch, dev_out, watch)
                if _ready(dev_out):  # finished already (a program with host callbacks on XLA:CPU): written now
                    writer.submit(batch, spec.fetch(dev_out), watch)
                    pending = None
            if pending is not None:
                writer.submit(pending[0], spec.fetch(pending[1]), pending[2])
                pending = None
        writer.close()
    finally:
        writer.close(raise_error=False)
        journal.close()
        bar.close()
    rep.seconds = time.perf_counter() - t_start
    _timeline(rep, watches)
    if rep.batches > 1:
        steady = rep.completions[-1] - rep.completions[0]
        n_after = rep.done + rep.flagged - min(rep.done + rep.flagged, spec.batch_size)
        log(f"jaxinv {spec.kind}: process {process.process_id}: {rep.batches} batches of {spec.batch_size} in "
            f"{rep.seconds:.1f} s, first {rep.first_batch_seconds:.1f} s (compilation {rep.compile_seconds:.1f} s), "
            "then "
            f"{n_after / max(steady, 1e-9):.2f} images/s; device waited for input "
            f"{100 * rep.input_wait_share:.1f}% of the time")
    barrier("jaxinv-job-end", process)
    if process.process_id == 0:
        n_ok, n_bad = write_summaries(out, [*spec.columns, "seconds"])
        log(f"jaxinv {spec.kind}: {n_ok} images in {out}" + (f", {n_bad} listed in {out / 'errors.csv'}"
                                                              if n_bad else ""))
    return rep


class _BackgroundWriter:
    """Writes finished batches on one thread (PNG/zlib encoding releases the GIL), in order, at most `depth`
    batches behind, so the next batch is dispatched without waiting for the files of the previous one."""

    def __init__(self, fn: Callable[..., None], depth: int = 2):
        self._fn = fn
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._exc: BaseException | None = None
        self._closed = False
        self._t = threading.Thread(target=self._run, name="jaxinv-writer", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._exc is None:
                try:
                    self._fn(*item)
                except BaseException as e:  # noqa: BLE001 - re-raised on the job loop's thread
                    self._exc = e

    def submit(self, *item: Any) -> None:
        if self._exc is not None:
            raise self._exc
        self._q.put(item)

    def close(self, raise_error: bool = True) -> None:
        if not self._closed:
            self._closed = True
            self._q.put(None)
            self._t.join()
        if raise_error and self._exc is not None:
            raise self._exc


def _timeline(rep: JobReport, watches: list[_Watch]) -> None:
    """Device busy/idle split after batch 0 (which includes compilation): the device is idle between the
    completion of batch k and the dispatch of batch k+1; the part of that gap spent blocked on the input
    queue is input wait."""
    if not watches:
        return
    rep.first_batch_seconds = watches[0].t_done - watches[0].t_dispatch
    rep.completions = [w.t_done for w in watches]
    for cur in watches[1:]:
        prev = cur.prev
        rep.busy_seconds += cur.t_done - max(cur.t_dispatch, prev.t_done)
        gap0, gap1 = prev.t_done, cur.t_dispatch
        if gap1 > gap0:
            rep.device_idle_seconds += gap1 - gap0
            rep.input_wait_seconds += sum(max(0.0, min(gap1, w1) - max(gap0, w0)) for w0, w1 in cur.waits)


def _progress(total: int, kind: str, enabled: bool, unit: str = "img"):
    return tqdm(total=total, desc=f"jaxinv {kind}", unit=unit, disable=not enabled or total == 0,
                file=sys.stderr, dynamic_ncols=True)


def _ready(out: Any) -> bool:
    return all(getattr(a, "is_ready", lambda: True)() for a in jax.tree_util.tree_leaves(out))


class _CompileClock:
    """Seconds jax spent tracing, lowering and compiling (jax.monitoring events) per thread, summed since import
    (the job loop reads its own thread's: compiles of loader or writer threads are not its batch's)."""

    EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
                        "/jax/core/compile/backend_compile_duration"})

    def __init__(self) -> None:
        self._by_thread: dict[int, float] = {}
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name: str, duration: float, **_: Any) -> None:
        if name in self.EVENTS:
            t = threading.get_ident()
            self._by_thread[t] = self._by_thread.get(t, 0.0) + duration

    def seconds(self) -> float:
        return self._by_thread.get(threading.get_ident(), 0.0)


_COMPILE_CLOCK = _CompileClock()


# ---------------------------------------------------------------------------------------------------------
# `jaxinv invert` as a job


def tree_fingerprint(tree: Any) -> str:
    """sha256 over the leaves of a pytree (names, dtypes, shapes, bytes): keys the manifest on resources
    such as LPIPS / face-ID weights."""
    h = hashlib.sha256()
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(tree)[0], key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _invert_program(gen, sp, lossf, encoder, c, deg, targets, ids, seed, *, optimizer, steps, restarts, start_center,
                    early_stop, max_reseeds, restart_shards=1, lane_group=None, layout=None, progress_every=None,
                    record_every=None):
    """One padded batch through the engine (`jaxinv.invert._run_batch`), NaN/inf items reseeded, plus the
    per-item outputs the writer needs. Every output has the batch as leading axis. Runs per device under
    shard_map; with restart_shards > 1 the devices along mesh axis "restart" each run a contiguous block of
    restarts, and the best restart is chosen across them exactly as the engine chooses it. `encoder` (or None):
    restart 0 starts from its codes of the targets (hybrid inversion), computed inside the engine's lane
    groups (`lane_group`, see `jaxinv.invert.per_group`) so that they too do not depend on the batch. `c`
    (or None): the class vector [c_dim] of every item (conditional generators). `deg` (or None): a
    `jaxinv.degrade.Degradation` (static part); targets are then observations, or, with per-image masks
    (`layout`: the observation's shape and each operator's mask shape or None), rows holding the observation
    and its masks flattened one after another (`_pack_item`). `record_every` (or None): also output the best
    restart's latent without noise maps after every k steps ("trajectory" [B, steps / k, ...], for videos)."""

    local_r = restarts // restart_shards
    given = None if encoder is None else lambda t: sp.from_ws(gen, encoder.from_generator_images(t))
    cs = None if c is None else jnp.broadcast_to(c, (targets.shape[0], c.shape[-1]))

    deg_data = None
    if layout is not None:
        targets, deg_data = _unpack_items(targets, layout)

    def attempt(t, i, s, d):
        offset = jax.lax.axis_index("restart") * local_r if restart_shards > 1 else 0
        out = engine._run_batch(gen, sp, lossf, t, i, s, optimizer=optimizer, steps=steps, restarts=local_r,
                                start_center=start_center, early_stop=early_stop, restart_offset=offset,
                                init_latents=given, lane_group=lane_group, c=cs, degradation=deg, deg_data=d,
                                progress_every=progress_every, record_every=record_every, record_noise=False)
        out = dict(out)
        out.pop("history")  # [steps, n, R]: not written by the job
        if restart_shards > 1:
            out = _combine_restart_shards(out)
        out["inputs"] = sp.to_input(gen, out["latents"])
        return out

    # An item needs a reseed when its best result is not finite (a restart that diverged while another one
    # succeeded is just not the best).
    best_finite = lambda o, b: item_finite({k: o[k] for k in ("losses", "latents", "images")}, b)  # noqa: E731
    out, attempts, failed = reseeding(attempt, max_reseeds, best_finite)(targets, ids, seed, deg_data)
    if deg is None:
        out["psnr"], out["ssim"] = engine.per_group(metrics.psnr_ssim_signed, lane_group, out["images"], targets)
    else:  # D(G(z*)) against the observation as the loss sees it
        out["psnr"], out["ssim"] = engine.per_group(lambda o, t, d: metrics.psnr_ssim_signed(o, deg.target(t, d)),
                                                    lane_group, out["observed"], targets, deg_data)
    out["attempts"] = attempts
    out["failed"] = failed
    return out


def _pack_item(obs: np.ndarray, masks: Sequence[np.ndarray | None]) -> np.ndarray:
    """One image's observation and per-image masks as one flat row (the pipeline streams one array per image)."""
    return np.concatenate([obs.reshape(-1), *(m.reshape(-1) for m in masks if m is not None)]).astype(np.float32)


def _unpack_items(rows: Any, layout: tuple) -> tuple[Any, tuple]:
    """Rows of `_pack_item` [B, P] -> (observations [B, h, w, c], per-operator masks [B, H, W] or None)."""
    obs_shape, mask_shapes = layout
    n = int(np.prod(obs_shape))
    obs, at, data = rows[:, :n].reshape(rows.shape[0], *obs_shape), n, []
    for s in mask_shapes:
        if s is None:
            data.append(None)
            continue
        k = int(np.prod(s))
        data.append(rows[:, at:at + k].reshape(rows.shape[0], *s))
        at += k
    return obs, tuple(data)


def _combine_restart_shards(out: dict) -> dict:
    """Per-shard engine outputs (best of the shard's restarts) -> the best over all restarts, the same on every
    shard. The engine's rule is the first minimum of the finite final losses; taking the first shard whose
    best is minimal reproduces it, since shards hold contiguous, ordered blocks of restarts."""
    per_restart = ("restart_losses", "evals", "done")  # [n, R_local] -> [n, R]
    gathered = {k: jax.lax.all_gather(v, "restart") for k, v in out.items()}  # leading [shards]
    res = {k: jnp.concatenate(list(gathered[k]), axis=1) for k in per_restart}
    loss = gathered["losses"]  # [shards, n]
    win = jnp.argmin(jnp.where(jnp.isfinite(loss), loss, jnp.inf), axis=0)  # [n]
    n = win.shape[0]
    pick = lambda x: x[win, jnp.arange(n)]  # noqa: E731
    local_r = out["restart_losses"].shape[1]
    for k, v in gathered.items():
        if k not in per_restart:
            res[k] = jax.tree_util.tree_map(pick, v)
    res["best"] = res["best"] + win * local_r  # global restart index
    return res


def compile_batch_fn(program: Callable[..., Any], devices: Devices, static: tuple[Any, ...],
                     **static_kwargs: Any) -> Callable[[np.ndarray, np.ndarray, int], Any]:
    """`program(*static, targets, ids, seed, **static_kwargs)` as one jitted call whose batch inputs and
    outputs are split over `devices` (shard_map: each device runs the program on its rows, no
    communication); `static` (model, space, loss, ...) is replicated once. Returns f(targets, ids, seed)."""
    from jax.sharding import PartitionSpec as P

    replicated = devices.replicate(static)
    n_static = len(static)

    def local(*args):
        return program(*args[:n_static], *args[n_static:], **static_kwargs)

    in_specs = (*([P()] * n_static), P("batch"), P("batch"), P())
    mapped = jax.shard_map(local, mesh=devices.mesh, in_specs=in_specs, out_specs=P("batch"), check_vma=False)
    jitted = jax.jit(mapped)
    seed_sharding = devices.replicated

    def call(targets: np.ndarray, ids: np.ndarray, seed: int) -> Any:
        return jitted(*replicated, devices.put_batch(targets), devices.put_batch(ids),
                      jax.device_put(np.int32(seed), seed_sharding))

    return call


def format_metric(x: Any) -> float | int | bool | str:
    """A metric as a JSON number (floats round-trip exactly: json and csv write them by repr); inf / nan (e.g. the
    PSNR of an exact reconstruction) as the strings "inf" / "nan", which standard JSON has no numbers for."""
    x = np.asarray(x).item()
    if isinstance(x, float):
        return x if np.isfinite(x) else repr(x)
    return x


def invert_spec(model: Any, load: Callable[[ImageRef], np.ndarray], *, space: Any = "z", loss: Any = "mse",
                optimizer: Any = "adam", steps: int = 400, restarts: int = 1, seed: int = 0,
                batch_size: int = 8, start: str | None = None, early_stop: tuple[float, int] | None = None,
                resources: dict[str, Any] | None = None, space_options: dict[str, Any] | None = None,
                max_reseeds: int = 2, devices: Devices | None = None,
                preprocess: dict[str, Any] | None = None, encoder: Any = None,
                lane_group: int | None | str = "auto", class_idx: int | None = None,
                truncation_psi: float | None = None, degradation: Any = None, progress: bool = False,
                video_every: int | None = None) -> JobSpec:
    """The JobSpec of `jaxinv invert`: per image DIR/<name>/ target.png, proj.png, latent.npz (the optimised
    variables of the best restart by name, leading axis 1) and, for spaces that produce ws, projected_w.npz
    (key "w", [1, num_ws, w_dim], the official projector's format). `load(ref)` returns the preprocessed
    target [R, R, C] in [-1, 1]; `preprocess` (its options, e.g. crop) goes into the manifest. `encoder`
    (a `jaxinv.encode.Encoder`): hybrid inversion, restart 0 of each image starts at its encoder codes.
    `lane_group`: as `jaxinv.invert.invert`'s; each device's rows are rounded up to whole groups. `class_idx`
    and `truncation_psi`: as `invert`'s (one class for every image). `degradation` (a spec or a
    `jaxinv.degrade.Degradation`, as `invert`'s): `load` returns observations (its output shape); `mask:DIR`
    operators read each image's mask by name (a missing one is that image's error); the files are then
    target.png (the observation), proj.png = D(G(z*)), restored.png = G(z*), and the metrics compare proj with
    the observation (masked as the loss sees it). `progress`: the program reports its steps to `run_job`'s
    progress bar from inside the loop (see `JobSpec.lane_steps_per_item`). `video_every` k (dividing steps): also
    DIR/<name>/proj.mp4 (`jaxinv.video`: imageio + imageio-ffmpeg), as the official `--save-video`: at 10 fps, one
    frame per k steps, the target beside G(w) of the latent after those steps, rendered after the batch with the
    generator's stored noise (noise_mode='const', as the official video; proj.png uses the optimised maps)."""

    gen = Generator.from_model(model, truncation_psi)
    sp = space_from_spec(space, space_options)
    check_space(sp, gen)
    cv = class_vectors(gen, 1, class_idx=class_idx)
    sp = sp.prepare(gen)
    lossf = make_loss(loss, resources)
    opt = make_optimizer(optimizer)
    if int(steps) < 1 or int(restarts) < 1:
        raise ConfigError(f"steps={steps} / restarts={restarts}: both must be >= 1")
    if int(max_reseeds) < 0:
        raise ConfigError(f"max_reseeds={max_reseeds}: must be >= 0")
    if video_every is not None:
        video.require()
        if int(video_every) < 1 or int(steps) % int(video_every):
            raise ConfigError(f"video_every={video_every}: must be >= 1 and divide steps={steps}")
        if degradation is not None:
            raise ConfigError("video_every: not with a degradation")
    start = start or ("random" if isinstance(sp, ZSpace) else "center")
    if start not in ("center", "random"):
        raise ConfigError(f"start={start!r}: expected 'center' or 'random'")
    devices = devices or Devices.local()
    group = resolve_lane_group(lane_group, gen)
    bs = devices.global_batch(batch_size, multiple=group or 1)
    if int(restarts) % devices.restart_shards:
        raise ConfigError(f"restarts={restarts}: must be a multiple of restart_shards={devices.restart_shards}")
    if encoder is not None:
        if (why := encoder.code_mismatch(gen)) is not None:
            raise ConfigError(f"init from encoder: {why}")
        if encoder.cfg.input_nc != gen.img_channels:
            raise ConfigError(f"init from encoder: the encoder reads {encoder.cfg.input_nc}-channel images, the "
                              f"generator makes {gen.img_channels}-channel ones")
        # Fails now, with a one-line error, for spaces that cannot hold W+ codes.
        jax.eval_shape(lambda g, s: s.from_ws(g, jnp.zeros((1, g.num_ws, g.w_dim))), gen, sp)
    shape = (gen.img_resolution, gen.img_resolution, gen.img_channels)
    deg = degrade.parse(degradation, gen.img_resolution, gen.img_channels)
    obs_shape, layout, item_shape, load_item = shape, None, shape, load
    if deg is not None:
        obs_shape = deg.out_shape(shape)
        if encoder is not None and obs_shape != shape:
            raise ConfigError(f"init from encoder: the encoder reads {shape[0]}x{shape[1]} images, degradation="
                              f"{deg.spec()!r} observes {obs_shape[0]}x{obs_shape[1]} ones")
        lossf = likelihood_loss(lossf, deg)
        item_shape = obs_shape
        if deg.per_image:
            layout = (obs_shape, degrade.data_shapes(deg, gen.img_resolution, gen.img_channels))
            item_shape = (int(np.prod(obs_shape)) + sum(int(np.prod(s)) for s in layout[1] if s is not None),)

            def load_item(ref: ImageRef) -> np.ndarray:
                obs = load(ref)
                return _pack_item(np.asarray(obs, np.float32),
                                  degrade.item_masks(deg, ref.key, gen.img_resolution, gen.img_channels))
    c = None if cv is None else jnp.asarray(cv[0])
    static_deg = None if deg is None else deg.static()
    call = compile_batch_fn(_invert_program, devices, (gen, sp, lossf, encoder, c, static_deg), optimizer=opt,
                            steps=int(steps), restarts=int(restarts), start_center=start == "center",
                            early_stop=early_stop, max_reseeds=int(max_reseeds), restart_shards=devices.restart_shards,
                            lane_group=group, layout=layout,
                            progress_every=engine.progress_interval(steps) if progress else None,
                            record_every=int(video_every) if video_every else None)
    manifest = {
        "model": gen.fingerprint(),
        "space": space if isinstance(space, str) else repr(space),
        "space_options": {k: repr(v) for k, v in sorted((space_options or {}).items())},
        "loss": loss if isinstance(loss, str) else repr(lossf),
        "resources": {k: tree_fingerprint(v) for k, v in sorted((resources or {}).items()) if v is not None},
        "optimizer": repr(opt), "steps": int(steps), "restarts": int(restarts), "seed": int(seed),
        "start": start, "early_stop": list(early_stop) if early_stop else None, "max_reseeds": int(max_reseeds),
        "preprocess": preprocess or {}, "image_shape": list(shape),
        # Results are bit-stable for a given lane group and restart split (see README, batch jobs).
        "lane_group": group, "restart_shards": devices.restart_shards,
    }
    if encoder is not None:  # only then, so that earlier outputs keep resuming
        manifest["init"] = {"encoder": tree_fingerprint(encoder.params), "config": repr(encoder.cfg)}
    if class_idx is not None:  # likewise
        manifest["class_idx"] = int(class_idx)
    if gen.truncation_psi != 1.0:
        manifest["truncation_psi"] = gen.truncation_psi
    if deg is not None:  # likewise; shared masks by content (per-image ones are read per image, like the images)
        manifest["degradation"] = {"spec": deg.spec(), "arrays": tree_fingerprint(static_deg)}
    render_frames, video_bytes = None, 0
    if video_every:  # likewise: a video job's folders hold proj.mp4
        manifest["video_every"] = int(video_every)
        render_frames = _frame_renderer(gen, sp, c)
        n_frames = int(steps) // int(video_every)
        video_bytes = n_frames * min(2 * int(np.prod(shape)), 2 * 10**6 // video.FPS) + 65536  # <= 16 Mbit/s
    probe = jax.eval_shape(lambda g, s, cc: s.to_input(g, s.init(jax.random.PRNGKey(0), g, 1, c=cc)), gen, sp,
                           c if c is None else c[None])
    latent_bytes = sum(int(np.prod(x.shape)) * 4 for x in jax.tree_util.tree_leaves(probe)) * 2 + 4096
    png_max = int(np.prod(shape)) + shape[0] * 8 + 4096  # stored PNG is never much larger than raw
    ws_key = "ws"

    def write(w: ItemWriter, ref: ImageRef, host: dict, row: int, target: np.ndarray) -> dict[str, Any]:
        if host["failed"][row]:
            raise ItemFlagged(f"loss is NaN/inf after {max_reseeds} reseeds")
        if deg is None:
            w.write("target.png", png_bytes(target))
            w.write("proj.png", png_bytes(host["images"][row]))
        else:
            w.write("target.png", png_bytes(np.asarray(target).reshape(-1)[:int(np.prod(obs_shape))]
                                            .reshape(obs_shape)))
            w.write("proj.png", png_bytes(host["observed"][row]))
            w.write("restored.png", png_bytes(host["images"][row]))
        lat = flatten_tree(jax.tree_util.tree_map(lambda a: a[row][None], host["latents"]))
        w.write("latent.npz", npz_bytes(lat))
        if render_frames is not None:
            traj = jax.tree_util.tree_map(lambda a: a[row], host["trajectory"])  # [T, ...]
            w.write("proj.mp4", video.mp4_bytes(video.side_by_side(to_uint8(np.asarray(target)),
                                                                   render_frames(traj))))
        if ws_key in host["inputs"]:
            w.write("projected_w.npz", npz_bytes({"w": np.asarray(host["inputs"][ws_key][row][None], np.float32)}))
        best = int(host["best"][row])
        f = format_metric
        return {"psnr": f(host["psnr"][row]), "ssim": f(host["ssim"][row]), "loss": f(host["losses"][row]),
                **{col: f(v[row]) for col, v in zip(term_columns, host["terms"], strict=True)},
                "best_restart": best, "steps": int(host["done"][row, best]), "reseeds": int(host["attempts"][row])}

    term_columns = [f"loss_{name}" for name in lossf.names]  # each term unweighted, at the best restart

    return JobSpec(kind="invert", manifest=manifest, item_shape=item_shape, load=load_item,
                   compute=lambda x, ids: call(x, ids, int(seed)), write=write,
                   columns=["psnr", "ssim", "loss", *term_columns, "best_restart", "steps", "reseeds"],
                   bytes_per_image=(2 if deg is None else 3) * png_max + latent_bytes + video_bytes, batch_size=bs,
                   lane_steps_per_item=int(steps) * int(restarts) if progress else 0)


def _frame_renderer(gen: Generator, sp: Any, c: Any, chunk: int = 8) -> Callable[[Any], np.ndarray]:
    """latents [T, ...] (a trajectory without noise maps) -> uint8 frames [T, H, W, C]: G of each with the stored
    noise, `chunk` frames per call (one compiled shape)."""
    import dataclasses

    frame_sp = dataclasses.replace(sp, noise=False) if getattr(sp, "noise", False) else sp
    render = jax.jit(lambda g, s, lat, cc: s.render(g, lat, cc))
    state: dict[str, Any] = {}

    def frames(traj: Any) -> np.ndarray:
        if "gen" not in state:  # params to the device once, on first use (the writer thread)
            state["gen"] = jax.device_put(gen)
        t = jax.tree_util.tree_leaves(traj)[0].shape[0]
        pad = -t % chunk
        traj = jax.tree_util.tree_map(lambda a: np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]), traj)
        cc = None if c is None else jnp.broadcast_to(c, (chunk, c.shape[-1]))
        out = [to_uint8(np.asarray(render(state["gen"], frame_sp,
                                          jax.tree_util.tree_map(lambda a, i=i: a[i:i + chunk], traj), cc)))
               for i in range(0, t + pad, chunk)]
        return np.concatenate(out)[:t]

    return frames


# ---------------------------------------------------------------------------------------------------------
# Command-line glue (used by `jaxinv invert`; `jaxinv encode` can use the same)


def add_job_arguments(parser: Any) -> None:
    """The batch-job options of `jaxinv invert` / `jaxinv encode` (an argparse parser or group)."""
    g = parser.add_argument_group("batch job (resumable output directory, devices, hosts)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="image decoding threads (default: min(4, CPU cores))")
    g.add_argument("--prefetch", type=int, default=2, metavar="N", help="decoded batches kept ready (default 2)")
    g.add_argument("--devices", type=int, default=None, metavar="N",
                   help="use the first N local devices (default: all; the batch is split over them)")
    g.add_argument("--restart-shards", type=int, default=1, metavar="K",
                   help="also split each image's restarts over K of the devices (K divides --devices and "
                        "--restarts; default 1)")
    g.add_argument("--max-reseeds", type=int, default=2, metavar="N",
                   help="restart an image whose loss turns NaN/inf from a fresh seed up to N times (default 2)")
    g.add_argument("--xla-cache", default=None, metavar="DIR",
                   help="persistent compilation cache (default $JAXINV_XLA_CACHE or ~/.cache/jaxinv/xla; 'off')")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-host: address of process 0 (or $JAXINV_COORDINATOR)")
    g.add_argument("--num-processes", type=int, default=None, metavar="N",
                   help="multi-host: number of processes (or $JAXINV_NUM_PROCESSES)")
    g.add_argument("--process-id", type=int, default=None, metavar="K",
                   help="multi-host: this process's id in [0, N) (or $JAXINV_PROCESS_ID)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def start_job(args: Any) -> ProcessInfo:
    """Before anything touches JAX: multi-host initialisation and the compilation cache, from the options of
    `add_job_arguments`."""

    info = init_distributed(process_info(getattr(args, "coordinator", None), getattr(args, "num_processes", None),
                                         getattr(args, "process_id", None)))
    enable_compilation_cache(getattr(args, "xla_cache", None))
    return info
