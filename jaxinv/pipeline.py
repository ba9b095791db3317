"""Streaming input for batch jobs: list image files, decode + preprocess them in background threads with a
bounded prefetch, and hand out fixed-shape batches while the compiled step runs.

    items = list_images(["photos/", "extra.jpg"])          # names only, sorted, deterministic
    for batch in stream_batches(items, load, batch_size=16, item_shape=(64, 64, 3)):
        ...  # batch.images [16, 64, 64, 3] (padded), batch.count valid rows, batch.errors

Why threads and a bounded queue (not `grain`): decoding and resizing with pillow release the GIL, so a few
threads keep up with a compiled step without the start-up cost and memory of worker processes (this matters
on small machines), and a bad file must become one row of `errors.csv` while its neighbours go on, with the
last batch padded rather than dropped; both are a few lines here and awkward through a generic loader.

Memory stays bounded whatever the size of the image set: at most `prefetch` batches wait in the queue, plus
the images being decoded (`workers * 2`) and the batch being filled. Only the file names are listed up front.
Batch composition follows the listing order (bad files removed), so it is deterministic; results do not
depend on it anyway (every lane's randomness comes from the image's identity, see `jaxinv.jobs`).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from jaxinv.errors import ConfigError
from jaxinv.images import IMAGE_EXTS  # extensions picked up in folders (files given directly are always tried)


@dataclass(frozen=True)
class ImageRef:
    """One input file. `key` is its identity inside the job: the path relative to the directory argument it
    was found under (posix separators), or the file name for a file given directly. Seeds and output
    names derive from the key, so they do not depend on the working directory or on the other files."""

    key: str
    path: Path


def _walk(root: Path, exts: frozenset[str]) -> Iterator[Path]:
    # Sorted per directory, depth first: a deterministic order without listing everything first.
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as e:
        raise ConfigError(f"{root}: cannot list directory ({e.strerror or e})") from None
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_dir(follow_symlinks=True):
            yield from _walk(Path(e.path), exts)
        elif os.path.splitext(e.name)[1].lower() in exts:
            yield Path(e.path)


def iter_images(paths: Iterable[str | os.PathLike], exts: frozenset[str] = IMAGE_EXTS) -> Iterator[ImageRef]:
    """Yield an ImageRef per image file, lazily: directories are walked recursively (sorted, hidden entries
    and files with other extensions skipped); files are taken as given whatever their extension."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in _walk(p, exts):
                yield ImageRef(f.relative_to(p).as_posix(), f)
        elif p.exists() or p.is_symlink():
            yield ImageRef(p.name, p)
        else:
            raise ConfigError(f"paths={str(p)!r}: no such file or directory")


def list_images(paths: Sequence[str | os.PathLike], exts: frozenset[str] = IMAGE_EXTS) -> list[ImageRef]:
    """All ImageRefs of `paths` in a deterministic order (the walk order, then sorted by key). Raises
    ConfigError when two inputs have the same key (they would share outputs and seeds)."""
    refs = sorted(iter_images(paths, exts), key=lambda r: r.key)
    for a, b in zip(refs, refs[1:], strict=False):
        if a.key == b.key:
            raise ConfigError(f"paths: {a.path} and {b.path} have the same name {a.key!r} inside the job "
                              "(rename one or run them as separate jobs)")
    if not refs:
        raise ConfigError(f"paths={[str(p) for p in paths]}: no image files found")
    return refs


# ---------------------------------------------------------------------------------------------------------
# Batches


@dataclass
class Batch:
    """A fixed-shape batch: rows [0, count) are real images, the rest repeat the last real one (padding,
    computed and dropped). `errors` are the files that failed to load since the previous batch."""

    refs: list[ImageRef]  # the `count` real items, in row order
    images: np.ndarray | None  # [batch_size, *item_shape] (None when count == 0)
    count: int
    errors: list[tuple[ImageRef, str]] = field(default_factory=list)
    index: int = 0  # position in the stream (0, 1, ...)

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.refs]


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


def error_reason(exc: BaseException) -> str:
    """One-line reason for errors.csv (user errors carry their own message; others get their type)."""
    from jaxinv.errors import JaxinvError

    msg = str(exc).replace("\n", " ").strip()
    if isinstance(exc, JaxinvError):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class BatchStream:
    """Iterator of Batch objects fed by a producer thread and a decode thread pool.

    `load(ref) -> np.ndarray` of shape `item_shape` runs in the pool; any exception it raises turns the item
    into an entry of `Batch.errors`. Use as a context manager (or call close()) so the threads stop when the
    consumer stops early. `wait_seconds` accumulates the time the consumer spent blocked on input.
    """

    def __init__(self, items: Iterable[ImageRef], load: Callable[[ImageRef], np.ndarray], *, batch_size: int,
                 item_shape: tuple[int, ...], workers: int | None = None, prefetch: int = 2,
                 dtype: np.dtype = np.float32):
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: must be >= 1")
        self.batch_size = int(batch_size)
        self.item_shape = tuple(item_shape)
        self.dtype = np.dtype(dtype)
        self.workers = max(1, int(workers or min(4, os.cpu_count() or 1)))
        self._load = load
        self._items = iter(items)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(prefetch)))
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="jaxinv-decode")
        self._thread = threading.Thread(target=self._produce, name="jaxinv-batcher", daemon=True)
        self.wait_seconds = 0.0
        self.waits: list[tuple[float, float]] = []  # (start, end) of every blocking get, perf_counter
        self._done = False
        self._thread.start()

    # -- producer ----------------------------------------------------------------------------------------
    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            window: deque[tuple[ImageRef, Future]] = deque()
            max_inflight = 2 * self.workers
            refs: list[ImageRef] = []
            rows: list[np.ndarray] = []
            errors: list[tuple[ImageRef, str]] = []
            index = 0

            def flush() -> bool:
                nonlocal refs, rows, errors, index
                if not refs and not errors:
                    return True
                images = None
                if rows:
                    images = np.empty((self.batch_size, *self.item_shape), self.dtype)
                    images[:len(rows)] = np.stack(rows)
                    images[len(rows):] = rows[-1]  # padding: computed, then dropped
                batch = Batch(refs, images, len(refs), errors, index)
                index += 1
                refs, rows, errors = [], [], []
                return self._put(batch)

            def take(ref: ImageRef, fut: Future) -> bool:
                try:
                    x = np.asarray(fut.result(), self.dtype)
                    if x.shape != self.item_shape:
                        raise ValueError(f"preprocessed to shape {x.shape}, expected {self.item_shape}")
                except Exception as e:  # noqa: BLE001 - any failure of one file is reported, not fatal
                    errors.append((ref, error_reason(e)))
                    return True
                refs.append(ref)
                rows.append(x)
                return flush() if len(refs) == self.batch_size else True

            for ref in self._items:
                if self._stop.is_set():
                    return
                window.append((ref, self._pool.submit(self._load, ref)))
                if len(window) >= max_inflight and not take(*window.popleft()):
                    return
            while window:
                if not take(*window.popleft()):
                    return
            if flush():
                self._put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises
            self._put(_Failure(e))

    # -- consumer ----------------------------------------------------------------------------------------
    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Batch:
        if self._done:
            raise StopIteration
        t0 = time.perf_counter()
        item = self._queue.get()
        t1 = time.perf_counter()
        self.wait_seconds += t1 - t0
        self.waits.append((t0, t1))
        if item is _END:
            self._done = True
            self.close()
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            self.close()
            raise item.exc
        return item

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream_batches(items: Iterable[ImageRef], load: Callable[[ImageRef], np.ndarray], *, batch_size: int,
                   item_shape: tuple[int, ...], workers: int | None = None, prefetch: int = 2) -> BatchStream:
    """Fixed-shape batches of preprocessed images (see BatchStream)."""
    return BatchStream(items, load, batch_size=batch_size, item_shape=item_shape, workers=workers,
                       prefetch=prefetch)
