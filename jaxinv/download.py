"""Weights by URL: `https://...` / `http://...` files downloaded once into a cache, then read from there.

    local_path("https://host/dir/vgg16.pt")  ->  <cache>/downloads/<url hash>/vgg16.pt   (a path: unchanged)

Cache root: `$JAXINV_CACHE_DIR`, else `~/.cache/jaxinv` (as the statistics and compilation caches). Each URL has
its own folder, named by the first 16 hex digits of sha256(url), holding the file under the URL's own name (the
readers dispatch on its suffix) and `<name>.sha256` beside it: `sha256  size  url`, written after the file.
A download goes to a temp file in that folder, is checked against the announced Content-Length, fsync'd and
renamed into place; the record follows the same way. A file with its record is reused without any request;
one whose size disagrees with its record is fetched again. Failures (HTTP status, connection, truncated body)
are one-line `CheckpointError`s naming the URL.

The loading floor calls this (`jaxinv.checkpoint.load_models`, the LPIPS / VGG16 readers, the face-ID
manifest reader), so every `--model` / `--lpips-weights` / `--lpips-heads` / `--id-weights` / `--encoder`
accepts a URL.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import posixpath
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from jaxinv.errors import CheckpointError

SCHEMES = ("http://", "https://")
RECORD_SUFFIX = ".sha256"
_CHUNK = 1 << 20
_TMP = ".jaxinv-download"


def is_url(x: Any) -> bool:
    return isinstance(x, str) and x.lower().startswith(SCHEMES)


def cache_root() -> Path:
    """$JAXINV_CACHE_DIR, else ~/.cache/jaxinv."""
    env = os.environ.get("JAXINV_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxinv"


def cached_path(url: str, cache: str | os.PathLike | None = None) -> Path:
    """Where `url`'s file lives in the cache (whether or not it is there yet)."""
    name = posixpath.basename(urllib.parse.unquote(urllib.parse.urlsplit(url).path)) or "download"
    if name in (".", ".."):
        name = "download"
    folder = Path(cache) if cache is not None else cache_root() / "downloads"
    return folder / hashlib.sha256(url.encode("utf-8")).hexdigest()[:16] / name


def read_record(path: Path) -> dict | None:
    """{"sha256", "size", "url"} of a cached file, or None when its record is missing or unreadable."""
    try:
        sha, size, url = (path.parent / (path.name + RECORD_SUFFIX)).read_text().split(None, 2)
        return {"sha256": sha, "size": int(size), "url": url.strip()}
    except (OSError, ValueError):
        return None


def local_path(path_or_url: Any, cache: str | os.PathLike | None = None) -> Any:
    """A URL -> its cached file's path as a str (downloaded on first use); anything else unchanged."""
    return str(fetch(path_or_url, cache)) if is_url(path_or_url) else path_or_url


def fetch(url: str, cache: str | os.PathLike | None = None, timeout: float = 60.0) -> Path:
    """`url`'s file in the cache, downloaded if it is not there (see the module docstring)."""
    path = cached_path(url, cache)
    rec = read_record(path)
    if rec is not None and path.is_file() and path.stat().st_size == rec["size"]:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{_TMP}-{os.getpid()}")
    try:
        sha, size = _download(url, tmp, timeout)
        os.replace(tmp, path)
        _write_atomic(path.parent / (path.name + RECORD_SUFFIX), f"{sha}  {size}  {url}\n".encode())
    finally:
        tmp.unlink(missing_ok=True)
    return path


def fetch_tfjs(url: str, cache: str | os.PathLike | None = None) -> Path:
    """A TF.js weights manifest (`...-weights_manifest.json` / `model.json`) by URL with the weight shards it
    names (fetched from beside it) into one cache folder; returns the manifest's path."""
    manifest = fetch(url, cache)
    try:
        data = json.loads(manifest.read_text())
        groups = data["weightsManifest"] if isinstance(data, dict) else data
        shards = [p for g in groups for p in g["paths"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{url}: not a TF.js weights manifest ({type(e).__name__}: {e})") from None
    for shard in shards:
        if "/" in shard or "\\" in shard or shard in (".", ".."):
            raise CheckpointError(f"{url}: weight shard path {shard!r} outside the manifest's folder")
        got = fetch(urllib.parse.urljoin(url, urllib.parse.quote(shard)), cache)
        target = manifest.parent / shard
        if not target.exists():  # the shard under the name the manifest uses, beside it
            try:
                os.link(got, target)
            except OSError:
                _write_atomic(target, got.read_bytes())
    return manifest


def _download(url: str, tmp: Path, timeout: float) -> tuple[str, int]:
    h, size, expected = hashlib.sha256(), 0, None
    req = urllib.request.Request(url, headers={"User-Agent": "jaxinv"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r, open(tmp, "wb") as f:
            length = r.headers.get("Content-Length")
            expected = int(length) if length is not None and length.isdigit() else None
            while chunk := r.read(_CHUNK):
                f.write(chunk)
                h.update(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
    except urllib.error.HTTPError as e:
        raise CheckpointError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise CheckpointError(f"{url}: cannot download ({e.reason})") from None
    except http.client.IncompleteRead as e:
        raise CheckpointError(f"{url}: download truncated ({size + len(e.partial)} of {expected} bytes)") from None
    except (OSError, http.client.HTTPException) as e:
        raise CheckpointError(f"{url}: download failed ({type(e).__name__}: {e})") from None
    if expected is not None and size != expected:
        raise CheckpointError(f"{url}: download truncated ({size} of {expected} bytes)")
    return h.hexdigest(), size


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}{_TMP}-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
