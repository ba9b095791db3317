"""Devices, hosts and compilation for batch jobs.

* `Devices`: a `jax.sharding.Mesh` over this process's devices, axes ("batch", "restart"). Image batches are
  sharded along "batch" with `NamedSharding(mesh, P("batch"))`, model params and static data are
  replicated (`P()`); the global batch is rounded up to a multiple of the batch shards. Optionally the
  random restarts of each image are split along "restart". On CPU,
  `XLA_FLAGS=--xla_force_host_platform_device_count=N` gives N devices.
* Multi-host: `init_distributed()` calls `jax.distributed.initialize` with the coordinator address, process
  count and process id from arguments or the environment (JAXINV_COORDINATOR, JAXINV_NUM_PROCESSES,
  JAXINV_PROCESS_ID). Every process then works on its own part of the image list (`shard_items`: item i goes
  to process i mod P) on its own local devices, and writes its own results and journal; no collective runs
  during the job, only a barrier at the end (`barrier`).
* `reseeding()`: wraps a per-batch compute function so that items whose result is NaN/inf are recomputed
  from a fresh seed inside the same compiled program, a bounded number of times, and otherwise flagged.
* `enable_compilation_cache()`: JAX's persistent compilation cache, so a second run of the same
  configuration does not recompile. Default directory `~/.cache/jaxinv/xla` (under $JAXINV_CACHE_DIR when
  set); override with $JAXINV_XLA_CACHE or `--xla-cache DIR`; `off` disables it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxinv.errors import ConfigError

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------------------
# Persistent compilation cache


def default_cache_dir() -> Path:
    """$JAXINV_XLA_CACHE, else $JAXINV_CACHE_DIR/xla, else ~/.cache/jaxinv/xla."""
    env = os.environ.get("JAXINV_XLA_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("JAXINV_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "jaxinv") / "xla"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in `path` (default `default_cache_dir()`); "off" (or
    JAXINV_XLA_CACHE=off) leaves it off. Returns the directory used, or None. An unusable directory is not
    fatal for the job: the cache is then skipped with a warning (compiling is only slower)."""
    if path is None:
        path = default_cache_dir()
    if str(path).lower() in ("off", "none", "0", ""):
        return None
    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        import warnings

        warnings.warn(f"compilation cache {path}: not usable ({e.strerror or e}); compiling without a cache",
                      stacklevel=2)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Cache every program that took a noticeable time to compile, whatever its size.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


# ---------------------------------------------------------------------------------------------------------
# Multi-host


@dataclass(frozen=True)
class ProcessInfo:
    process_id: int = 0
    num_processes: int = 1
    coordinator: str | None = None

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1


def _int_opt(value: Any, env: str, name: str) -> int | None:
    raw = value if value is not None else os.environ.get(env)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} / ${env}: expected an integer, got {raw!r}") from None


def process_info(coordinator: str | None = None, num_processes: int | None = None,
                 process_id: int | None = None) -> ProcessInfo:
    """The multi-host settings from arguments, falling back to JAXINV_COORDINATOR / JAXINV_NUM_PROCESSES /
    JAXINV_PROCESS_ID. One process (no coordinator) when none is given."""
    coord = coordinator or os.environ.get("JAXINV_COORDINATOR") or None
    n = _int_opt(num_processes, "JAXINV_NUM_PROCESSES", "num_processes")
    pid = _int_opt(process_id, "JAXINV_PROCESS_ID", "process_id")
    if n is None or n == 1:
        if pid not in (None, 0):
            raise ConfigError(f"process_id={pid}: needs num_processes > 1")
        return ProcessInfo(0, 1, coord)
    if n < 1:
        raise ConfigError(f"num_processes={n}: must be >= 1")
    if coord is None:
        raise ConfigError(f"num_processes={n}: needs coordinator='HOST:PORT' (or $JAXINV_COORDINATOR)")
    if pid is None or not 0 <= pid < n:
        raise ConfigError(f"process_id={pid}: needs an id in [0, {n}) with num_processes={n}")
    return ProcessInfo(pid, n, coord)


def init_distributed(info: ProcessInfo, timeout_s: int = 300) -> ProcessInfo:
    """`jax.distributed.initialize` for a multi-process job (no-op for one process). Must run before any
    other JAX call of the process."""
    if not info.distributed:
        return info
    try:
        jax.distributed.initialize(coordinator_address=info.coordinator, num_processes=info.num_processes,
                                   process_id=info.process_id, initialization_timeout=timeout_s)
    except Exception as e:  # noqa: BLE001 - reported to the user as one line
        raise ConfigError(f"coordinator={info.coordinator!r}: jax.distributed.initialize failed for process "
                          f"{info.process_id}/{info.num_processes} ({type(e).__name__}: {e})") from None
    return info


def barrier(name: str, info: ProcessInfo) -> None:
    """Wait until every process of the job reaches `name` (no-op for one process)."""
    if info.distributed:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def shard_items(items: Sequence[T], info: ProcessInfo) -> list[T]:
    """This process's part of the (deterministically ordered) item list: item i goes to process
    i mod num_processes, so every item is taken exactly once and the parts differ by at most one."""
    return list(items[info.process_id::info.num_processes])


# ---------------------------------------------------------------------------------------------------------
# Local devices


@dataclass(frozen=True)
class Devices:
    """A mesh over this process's devices, axes ("batch", "restart"): images are split along "batch", and
    each image's random restarts along "restart" (size 1 unless asked: useful when a batch has fewer
    images than there are devices)."""

    mesh: Mesh

    @classmethod
    def local(cls, count: int | None = None, restart_shards: int = 1) -> Devices:
        devs = jax.local_devices()
        if count is not None:
            if not 1 <= count <= len(devs):
                raise ConfigError(f"devices={count}: this process sees {len(devs)} device(s)")
            devs = devs[:count]
        k = int(restart_shards or 1)
        if k < 1 or len(devs) % k:
            raise ConfigError(f"restart_shards={k}: must divide the number of devices ({len(devs)})")
        return cls(Mesh(np.asarray(devs).reshape(len(devs) // k, k), ("batch", "restart")))

    @property
    def count(self) -> int:
        return int(self.mesh.devices.size)

    @property
    def batch_shards(self) -> int:
        return int(self.mesh.shape["batch"])

    @property
    def restart_shards(self) -> int:
        return int(self.mesh.shape["restart"])

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("batch"))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def global_batch(self, batch_size: int, multiple: int = 1) -> int:
        """`batch_size` rounded up so that every batch shard (device) gets equal rows, a multiple of `multiple`."""
        n = self.batch_shards * int(multiple)
        return max(n, -(-int(batch_size) // n) * n)

    def put_batch(self, x: Any) -> Any:
        """Host arrays (leading axis = batch) -> device arrays split over the mesh."""
        return jax.device_put(x, self.batch_sharding)

    def replicate(self, tree: Any) -> Any:
        """Params and other per-job data: one copy on every device (done once per job)."""
        return jax.device_put(tree, self.replicated)


# ---------------------------------------------------------------------------------------------------------
# NaN/inf: reseed inside the compiled program

RESEED_STRIDE = 0x3C6EF372  # keeps attempt seeds apart from user seeds 0, 1, 2, ...


def attempt_seed(seed: jax.Array, attempt: jax.Array) -> jax.Array:
    """Seed of reseed attempt `attempt` (0 = the user's seed): a function of (seed, attempt) only, so an
    item's result never depends on the other items of its batch."""
    mixed = jnp.asarray(seed, jnp.uint32) + jnp.asarray(attempt, jnp.uint32) * jnp.uint32(RESEED_STRIDE)
    return (mixed & jnp.uint32(0x7FFFFFFF)).astype(jnp.int32)


def item_finite(out: Any, batch: int) -> jax.Array:
    """[batch] True where every leaf of `out` (leading axis = batch) is finite for that item."""
    ok = jnp.ones((batch,), bool)
    for leaf in jax.tree_util.tree_leaves(out):
        leaf = jnp.asarray(leaf)
        if leaf.ndim == 0 or leaf.shape[0] != batch or not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        ok = ok & jnp.all(jnp.isfinite(leaf.reshape(batch, -1)), axis=1)
    return ok


def reseeding(fn: Callable[..., Any], max_reseeds: int, check: Callable[[Any, int], jax.Array] = item_finite,
              ) -> Callable[..., tuple[Any, jax.Array, jax.Array]]:
    """Wrap `fn(targets, ids, seed, *args) -> out` (a traceable per-batch function whose outputs have the batch
    as leading axis, and whose item i depends only on (targets[i], ids[i], seed)) into

        wrapped(targets, ids, seed, *args) -> (out, attempts [B] int32, failed [B] bool)

    Inside one `lax.while_loop` (one copy of `fn` in the compiled program): attempt 0 runs `fn` with `seed`;
    while some item is not finite (`check`) and attempts remain, `fn` runs again with `attempt_seed(seed, a)`
    and only the still-bad items take the new values. The other items are untouched, and a good batch
    pays nothing. `attempts` is the attempt that produced each item's result; `failed` marks items still not
    finite after `max_reseeds` reseeds (their values are those of the last attempt).
    """
    max_reseeds = int(max_reseeds)

    def wrapped(targets, ids, seed, *args):
        b = targets.shape[0]
        # Trace `fn` once (tracing a whole inversion program takes a while) and replay its jaxpr in the loop.
        closed, shapes = jax.make_jaxpr(fn, return_shape=True)(targets, ids, seed, *args)
        replay = jax.extend.core.jaxpr_as_fun(closed)
        out_tree = jax.tree_util.tree_structure(shapes)

        def run(s):
            return jax.tree_util.tree_unflatten(out_tree, replay(*jax.tree_util.tree_leaves((targets, ids, s, *args))))

        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

        def cond(c):
            _, bad, _, a = c
            return jnp.any(bad) & (a <= max_reseeds)

        def body(c):
            out, bad, attempts, a = c
            new = run(attempt_seed(seed, a))
            take = lambda o, n: jnp.where(bad.reshape((b,) + (1,) * (n.ndim - 1)), n, o)  # noqa: E731
            out = jax.tree_util.tree_map(take, out, new)
            attempts = jnp.where(bad, a, attempts)
            bad = bad & ~check(new, b)
            return out, bad, attempts, a + 1

        init = (zeros, jnp.ones((b,), bool), jnp.zeros((b,), jnp.int32), jnp.zeros((), jnp.int32))
        out, bad, attempts, _ = jax.lax.while_loop(cond, body, init)
        return out, attempts, bad

    return wrapped
