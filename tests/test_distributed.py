"""Multi-device and multi-host jobs, in-program NaN reseeding, the persistent compilation cache.

The subprocess tests force host devices with XLA_FLAGS and share one compilation cache per pytest session
(the same programs as tests/test_jobs.py), so each configuration compiles once.
"""

import csv
import os
import socket
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.distributed import (
    Devices,
    ProcessInfo,
    attempt_seed,
    default_cache_dir,
    process_info,
    reseeding,
    shard_items,
)
from jaxinv.errors import ConfigError
from tests.conftest import ADAM_ROUNDING_ATOL
from tests.test_jobs import ROOT, _run, compare_dirs, invert_cmd, make_images, read_journals

# ---------------------------------------------------------------------------------------------------------
# In-process units


def _fake_batch(targets, ids, seed):
    """Item i is NaN unless (seed + id) is a multiple of 3; otherwise its value depends only on (seed, id)."""
    val = targets[:, 0] * 1000.0 + (seed % 997).astype(jnp.float32) + ids.astype(jnp.float32) / 7
    bad = (seed.astype(jnp.uint32) + ids.astype(jnp.uint32)) % 3 != 0
    return {"loss": jnp.where(bad, jnp.nan, val), "vec": jnp.where(bad[:, None], jnp.inf, targets * 2.0)}


def _direct(targets, ids, seed):
    return jax.tree_util.tree_map(np.asarray, _fake_batch(jnp.asarray(targets), jnp.asarray(ids), jnp.asarray(seed)))


def test_reseeding_recomputes_only_bad_items_from_fresh_seeds():
    targets = np.arange(12, dtype=np.float32).reshape(6, 2)
    ids = np.array([0, 1, 2, 3, 4, 5], np.int32)
    seed, max_reseeds = 0, 3
    wrapped = jax.jit(reseeding(_fake_batch, max_reseeds))
    out, attempts, failed = jax.tree_util.tree_map(np.asarray, wrapped(targets, ids, jnp.int32(seed)))
    seeds = [int(attempt_seed(jnp.int32(seed), a)) for a in range(max_reseeds + 1)]
    for i in range(6):
        # The first attempt whose seed makes item i finite, computed independently item by item.
        good = [a for a, s in enumerate(seeds) if (s + int(ids[i])) % 3 == 0]
        ref_attempt = good[0] if good else max_reseeds
        assert attempts[i] == ref_attempt, (i, attempts, seeds)
        assert failed[i] == (not good)
        ref = _direct(targets[i:i + 1], ids[i:i + 1], seeds[ref_attempt])
        np.testing.assert_array_equal(out["loss"][i], ref["loss"][0])
        np.testing.assert_array_equal(out["vec"][i], ref["vec"][0])
    assert (attempts == 0).sum() == 2 and attempts.max() > 0  # the case really reseeds some items only


def test_reseeding_is_independent_of_batch_composition():
    targets = np.arange(16, dtype=np.float32).reshape(8, 2)
    ids = np.arange(100, 108, dtype=np.int32)
    wrapped = jax.jit(reseeding(_fake_batch, 2))
    full = jax.tree_util.tree_map(np.asarray, wrapped(targets, ids, jnp.int32(5)))
    order = np.array([3, 1, 2])
    part = jax.tree_util.tree_map(np.asarray, wrapped(targets[order], ids[order], jnp.int32(5)))
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(part), strict=True):
        np.testing.assert_array_equal(a[order], b)


def test_reseeding_costs_nothing_for_a_clean_batch():
    runs = []

    def fn(t, i, s):
        jax.debug.callback(lambda: runs.append(1))
        return {"x": jnp.sin(t)}

    wrapped = reseeding(fn, 4)
    args = (jnp.ones((3, 2)), jnp.arange(3), jnp.int32(0))
    assert str(jax.make_jaxpr(wrapped)(*args)).count(" sin ") == 1  # one copy of the batch program
    out, attempts, failed = jax.block_until_ready(jax.jit(wrapped)(*args))
    assert runs == [1]  # ran once
    assert not np.asarray(failed).any() and not np.asarray(attempts).any()


def test_shard_items_covers_every_item_once():
    items = list(range(11))
    parts = [shard_items(items, ProcessInfo(p, 3, "h:1")) for p in range(3)]
    assert sorted(sum(parts, [])) == items
    assert [len(p) for p in parts] == [4, 4, 3]


def test_process_info_from_flags_and_environment(monkeypatch):
    for k in ("JAXINV_COORDINATOR", "JAXINV_NUM_PROCESSES", "JAXINV_PROCESS_ID"):
        monkeypatch.delenv(k, raising=False)
    assert process_info() == ProcessInfo(0, 1, None)
    monkeypatch.setenv("JAXINV_COORDINATOR", "10.0.0.1:1234")
    monkeypatch.setenv("JAXINV_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAXINV_PROCESS_ID", "3")
    assert process_info() == ProcessInfo(3, 4, "10.0.0.1:1234")
    assert process_info(process_id=1) == ProcessInfo(1, 4, "10.0.0.1:1234")  # flags win over the environment
    with pytest.raises(ConfigError, match=r"process_id=4: needs an id in \[0, 4\)"):
        process_info(process_id=4)
    monkeypatch.delenv("JAXINV_COORDINATOR")
    with pytest.raises(ConfigError, match="needs coordinator="):
        process_info()
    monkeypatch.setenv("JAXINV_NUM_PROCESSES", "two")
    with pytest.raises(ConfigError, match="expected an integer"):
        process_info()


def test_devices_round_the_batch_to_the_device_count():
    d = Devices.local()
    assert d.global_batch(5) % d.count == 0 and d.global_batch(5) >= 5
    with pytest.raises(ConfigError, match="devices="):
        Devices.local(len(jax.local_devices()) + 1)


def test_cache_dir_default_and_overrides(monkeypatch, tmp_path):
    monkeypatch.delenv("JAXINV_XLA_CACHE", raising=False)
    monkeypatch.delenv("JAXINV_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "jaxinv" / "xla"
    monkeypatch.setenv("JAXINV_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "xla"
    monkeypatch.setenv("JAXINV_XLA_CACHE", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x"


# ---------------------------------------------------------------------------------------------------------
# Subprocesses: forced host devices, two processes, warm start


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("imgs"), good=6, bad=False)


def _env(cache: Path, devices: int | None = None, **extra) -> dict:
    env = {**os.environ, "JAXINV_XLA_CACHE": str(cache), **extra}
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if devices:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def _cache(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "jaxinv-xla-cache"


@pytest.fixture(scope="module")
def one_device_run(images, tmp_path_factory):
    """`jaxinv invert` on one device, batch 2 (the configuration of tests/test_jobs.py)."""
    out = tmp_path_factory.mktemp("d1") / "out"
    r = _run(invert_cmd(images, out, batch=2), _env(_cache(tmp_path_factory), 1))
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def test_one_and_four_devices_give_identical_results(images, one_device_run, tmp_path, tmp_path_factory):
    """4 forced devices, batch 8 (2 images per device) against 1 device, batch 2: every file byte for byte
    (the lane group, 1 on CPU, fixes each image's shapes)."""
    r4 = _run(invert_cmd(images, tmp_path / "d4", batch=8), _env(_cache(tmp_path_factory), 4))
    assert r4.returncode == 0, r4.stderr[-2000:]
    compared = compare_dirs(one_device_run, tmp_path / "d4")
    assert compared >= 6 * 3, compared  # target, proj, latent of every image, byte for byte


def test_restart_shards_are_exact_for_a_given_split(images, one_device_run, tmp_path, tmp_path_factory):
    """Restarts split over 2 devices (each runs 1 of an image's 2 restarts): 4 devices (2 image shards) and
    2 devices (1 image shard) give the same bytes; against 1 device (both restarts in one vmapped lane group,
    other kernels) the same latents to float32 rounding."""
    runs = {}
    for devices, batch in ((4, 8), (2, 2)):
        out = tmp_path / f"d{devices}"
        r = _run(invert_cmd(images, out, batch=batch, extra=("--restart-shards", "2")),
                 _env(_cache(tmp_path_factory), devices))
        assert r.returncode == 0, r.stderr[-2000:]
        runs[devices] = out
    assert compare_dirs(runs[4], runs[2]) >= 6 * 3
    best = [row["best_restart"] for row in csv.DictReader(open(runs[4] / "metrics.csv"))]
    assert set(best) == {"0", "1"}, best  # winners come from both restart shards
    for i in range(6):
        a, b = (np.load(d / f"img{i}" / "latent.npz") for d in (one_device_run, runs[4]))
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_allclose(a[k], b[k], rtol=0, atol=ADAM_ROUNDING_ATOL, err_msg=f"img{i} {k}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_cover_the_image_list_exactly_once(images, tmp_path, tmp_path_factory):
    cache = _cache(tmp_path_factory)
    out = tmp_path / "mp"
    coord = f"127.0.0.1:{_free_port()}"
    procs = [subprocess.Popen(invert_cmd(images, out, batch=2),
                              env=_env(cache, 1, JAXINV_COORDINATOR=coord, JAXINV_NUM_PROCESSES="2",
                                       JAXINV_PROCESS_ID=str(p)),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in range(2)]
    logs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, logs, strict=True):
        assert p.returncode == 0, err[-2000:]
    per_process = read_journals(out)
    assert set(per_process) == {0, 1}
    keys = [e["key"] for p in (0, 1) for e in per_process[p]]
    assert sorted(keys) == sorted(f"img{i}.png" for i in range(6)), keys  # each image exactly once
    assert all(per_process[p] for p in (0, 1))  # both processes worked
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 6
    assert all((out / f"img{i}" / "proj.png").is_file() for i in range(6))


def test_warm_start_reuses_the_compilation_cache(images, one_device_run, tmp_path, tmp_path_factory):
    """A second run of a configuration compiled before adds nothing to the persistent cache."""
    cache = _cache(tmp_path_factory)
    before = sorted(p.name for p in cache.iterdir())
    assert before, "nothing was written to the compilation cache"
    r = _run(invert_cmd(images, tmp_path / "warm", batch=2), _env(cache, 1))
    assert r.returncode == 0, r.stderr[-2000:]
    assert sorted(p.name for p in cache.iterdir()) == before, "the warm run compiled something new"
    assert "6 inverted" in r.stderr
