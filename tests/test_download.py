"""Weights by URL (`jaxinv.download`), against a local HTTP server on 127.0.0.1 serving golden files."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import GOLDEN, require

from jaxinv import download
from jaxinv.errors import CheckpointError


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []  # paths asked for (class-level, reset per server)
    truncate: set[str] = set()  # paths whose body is cut short of the announced Content-Length

    def do_GET(self):  # noqa: N802 (http.server's name)
        type(self).requests.append(self.path)
        if self.path in self.truncate:
            body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(base URL, served folder, request log) of an http.server on 127.0.0.1 in a thread."""
    root = tmp_path / "www"
    root.mkdir()
    handler = type("H", (_Handler,), {"requests": [], "truncate": set()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            lambda *a, **k: handler(*a, directory=str(root), **k))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_model_url_downloads_once_then_uses_cache(server, tmp_path, monkeypatch):
    import jaxinv

    pkl = require(GOLDEN / "containers" / "sg2ada_r64_skip.pkl")
    base, root, handler = server
    shutil.copy(pkl, root / "sg2ada_r64_skip.pkl")
    monkeypatch.setenv("JAXINV_CACHE_DIR", str(tmp_path / "cache"))
    url = f"{base}/sg2ada_r64_skip.pkl"

    model = jaxinv.load(url)  # first call: one request, file + record in the cache
    assert handler.requests == ["/sg2ada_r64_skip.pkl"]
    cached = download.cached_path(url)
    assert cached.parent.parent == tmp_path / "cache" / "downloads" and cached.name == "sg2ada_r64_skip.pkl"
    assert cached.read_bytes() == pkl.read_bytes()
    rec = download.read_record(cached)
    assert rec == {"sha256": hashlib.sha256(pkl.read_bytes()).hexdigest(), "size": pkl.stat().st_size, "url": url}
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no temp files left

    again = jaxinv.load(url)  # second call: from the cache, no request
    assert handler.requests == ["/sg2ada_r64_skip.pkl"]
    assert model.family == again.family == "stylegan2"
    a, b = (np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(m.params)]) for m in (model, again))
    np.testing.assert_array_equal(a, b)


def test_http_error_is_one_line(server, tmp_path, monkeypatch):
    import jaxinv

    base, _, handler = server
    monkeypatch.setenv("JAXINV_CACHE_DIR", str(tmp_path / "cache"))
    url = f"{base}/missing.pkl"
    with pytest.raises(CheckpointError) as e:
        jaxinv.load(url)
    assert str(e.value) == f"{url}: HTTP 404 File not found"
    assert not download.cached_path(url).exists() and download.read_record(download.cached_path(url)) is None
    assert not list(download.cached_path(url).parent.iterdir())  # no partial file


def test_truncated_download_is_refused_and_retried(server, tmp_path):
    base, root, handler = server
    (root / "w.npz").write_bytes(bytes(range(256)) * 64)
    handler.truncate.add("/w.npz")
    cache = tmp_path / "cache"
    with pytest.raises(CheckpointError, match=r"download truncated \(8192 of 16384 bytes\)"):
        download.fetch(f"{base}/w.npz", cache)
    assert not list(download.cached_path(f"{base}/w.npz", cache).parent.iterdir())
    handler.truncate.clear()
    got = download.fetch(f"{base}/w.npz", cache)  # the next call downloads it again, whole
    assert got.read_bytes() == (root / "w.npz").read_bytes() and len(handler.requests) == 2


def test_cached_file_of_wrong_size_is_fetched_again(server, tmp_path):
    base, root, handler = server
    (root / "a.npz").write_bytes(b"x" * 100)
    cache = tmp_path / "cache"
    got = download.fetch(f"{base}/a.npz", cache)
    got.write_bytes(b"x" * 10)  # damaged after the fact: the record's size disagrees
    assert download.fetch(f"{base}/a.npz", cache).read_bytes() == b"x" * 100 and len(handler.requests) == 2


def test_lpips_weights_url(server, tmp_path, monkeypatch):
    """--lpips-weights URL: the VGG16 reader resolves it (here an npz of the procedural backbone + heads)."""
    from jaxinv.losses import load_lpips
    from jaxinv.losses.vgg16 import procedural_vgg16_state_dict

    base, root, handler = server
    sd = procedural_vgg16_state_dict()
    heads = {f"lin{k}.model.1.weight": np.full((1, c, 1, 1), 0.1, np.float32)
             for k, c in enumerate((64, 128, 256, 512, 512))}
    np.savez(root / "vgg.npz", **sd)
    np.savez(root / "heads.npz", **heads)
    monkeypatch.setenv("JAXINV_CACHE_DIR", str(tmp_path / "cache"))
    from_url = load_lpips(f"{base}/vgg.npz", f"{base}/heads.npz")
    from_file = load_lpips(root / "vgg.npz", root / "heads.npz")
    assert sorted(handler.requests) == ["/heads.npz", "/vgg.npz"]
    np.testing.assert_array_equal(from_url["lin3"], from_file["lin3"])
    np.testing.assert_array_equal(from_url["vgg16"]["features"]["0"]["weight"],
                                  from_file["vgg16"]["features"]["0"]["weight"])


def test_local_paths_pass_through():
    assert download.local_path("some/file.pkl") == "some/file.pkl"
    p = Path("x.pt")
    assert download.local_path(p) is p
    assert download.is_url("HTTPS://a/b") and not download.is_url("ftp://a/b")


def test_face_id_manifest_url(server, tmp_path, monkeypatch):
    """--id-weights URL of the TF.js manifest: the manifest and the shards it names, fetched from beside it."""
    from conftest import REALDATA

    from jaxinv.losses import load_face_id

    folder = require(REALDATA / "weights" / "face_id_dlib_resnet_faceapi")
    base, root, handler = server
    for f in folder.iterdir():
        if f.is_file():
            shutil.copy(f, root / f.name)
    monkeypatch.setenv("JAXINV_CACHE_DIR", str(tmp_path / "cache"))
    manifest = "face_recognition_model-weights_manifest.json"
    from_url = load_face_id(f"{base}/{manifest}")
    assert handler.requests == [f"/{manifest}", "/face_recognition_model.bin"]
    from_dir = load_face_id(folder)
    np.testing.assert_array_equal(from_url["fc"], from_dir["fc"])
    load_face_id(f"{base}/{manifest}")  # cached: no new request
    assert len(handler.requests) == 2
