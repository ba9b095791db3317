"""Pivotal tuning (PTI, Roich et al. 2021), batched: every image gets its own generator, tuned around its pivot.

After an inversion gives each image a pivot code (W / W+ `ws`, or `z` for z-driven families), the generator's
weights are fine-tuned per image so that G(pivot) reconstructs the image:

    loss_i = l2_weight * MSE(G_i(p_i), x_i) + lpips_weight * LPIPS(G_i(p_i), x_i)
             [+ locality_weight * R_i]                            (PTI's locality regulariser, optional)
    R_i    = reg_l2 * MSE(G_i(p_r), G(p_r)) + reg_lpips * LPIPS(G_i(p_r), G(p_r)),
    p_r    = p_i + alpha * (s - p_i) / ||s - p_i||,  s = a random code (W: mapping(z) at psi 0.5, as PTI)

with G_i = base params + delta_i. The deltas of all images are one batched pytree (leading axis = images); the
Adam steps are a `lax.scan`, the images a `vmap` (or a `lax.map` on CPU, see `resolve_lanes`), all under one
`jit`. The base params are only read, never written (deltas are separate arrays; nothing is donated).

Memory per image is the trainable set (delta + Adam's two moments, 12 bytes/param in float32) plus that
image's activations; `layers` (regexes over param paths) and `rank` (low-rank deltas U V on every >= 2-D
weight, biases dense) bound the first term. `memory_profile` measures it from XLA's compiled programs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.generators import Generator, render_jit
from jaxinv.losses import lpips as _lpips

# Buffers (not trained by the official code, or design constants): never tuned.
BUFFERS = re.compile(r"(^|/)(noise_const|w_avg|latent_avg|noises|freqs|phases|transform|magnitude_ema|"
                     r"running_means?|running_vars?)(/|$)")
# Sub-trees a pivot does not reach: the mapping network when pivots are ws, BigGAN's class embedding table
# when the pivot carries the embedding itself.
_UNUSED_FOR_WS = re.compile(r"^(mapping|style)/")
_UNUSED_FOR_EMBEDDING = re.compile(r"^embeddings/")


@dataclass(frozen=True)
class PTIConfig:
    steps: int = 350  # Adam steps per image (PTI: max_pti_steps = 350).
    lr: float = 3e-4  # Adam learning rate (PTI: 3e-4).
    l2_weight: float = 1.0  # weight of the pixel MSE (PTI: pt_l2_lambda = 1).
    lpips_weight: float = 0.0  # weight of LPIPS (PTI: 1; needs LPIPS params, e.g. jaxinv.losses.load_lpips).
    locality_weight: float = 0.0  # weight of the locality regulariser (PTI: 1, i.e. on).
    locality_l2: float = 0.1  # reg_l2 of R (PTI: regulizer_l2_lambda).
    locality_lpips: float = 0.1  # reg_lpips of R (PTI: regulizer_lpips_lambda; used when LPIPS params given).
    locality_alpha: float | None = None  # ball radius (None: 30 in W as PTI, sqrt(z_dim)/2 in Z).
    locality_psi: float = 0.5  # truncation of the sampled w (PTI: 0.5).
    locality_samples: int = 1  # sampled codes per step (PTI: latent_ball_num_of_samples = 1).
    layers: tuple[str, ...] | None = None  # regexes (re.search) over "a/b/c" param paths; None = all reachable.
    rank: int | None = None  # low-rank deltas U [prod(shape[:-1]), r] @ V [r, out] on >= 2-D weights.
    lanes: str = "auto"  # how images run inside the program: "vmap" | "map" | "auto" (see `resolve_lanes`)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"PTI steps={self.steps}: must be >= 1")
        if self.lanes not in ("auto", "vmap", "map"):
            raise ConfigError(f"PTI lanes={self.lanes!r}: expected 'auto', 'vmap' or 'map'")
        if self.rank is not None and self.rank < 1:
            raise ConfigError(f"PTI rank={self.rank}: must be >= 1 (or None for dense deltas)")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(self.layers))


class PTIResult(NamedTuple):
    deltas: dict[str, Any]  # path -> [N, ...] dense delta, or {"u": [N, m, r], "v": [N, r, out]} (low rank)
    images_before: np.ndarray  # [N, H, W, C] G(pivot) with the base params
    images_after: np.ndarray  # [N, H, W, C] G_i(pivot) with the tuned params
    loss_before: np.ndarray  # [N] reconstruction loss (l2 + lpips terms) at the pivot, base params
    loss_after: np.ndarray  # [N] the same after tuning
    history: np.ndarray  # [steps, N] total loss (with the regulariser) at every step
    paths: tuple[str, ...]  # the tuned param paths
    trainable_per_image: int  # number of tuned values per image
    seconds: float  # wall time (compile included)

    def delta(self, i: int) -> dict[str, Any]:
        """The delta pytree of image i (no batch axis)."""
        return jax.tree_util.tree_map(lambda a: a[i], self.deltas)


# ---------------------------------------------------------------------------------------------------------
# Param paths and deltas


def _key_str(k: Any) -> str:
    return str(getattr(k, "key", getattr(k, "idx", k)))


def param_paths(params: Any) -> list[str]:
    """"a/b/c" paths of every leaf, in flatten order."""
    return ["/".join(_key_str(k) for k in path) for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _leaves_by_path(params: Any) -> dict[str, Any]:
    return dict(zip(param_paths(params), jax.tree_util.tree_leaves(params), strict=True))


def select_paths(params: Any, pivot_keys: Sequence[str] = (), layers: Sequence[str] | None = None) -> tuple[str, ...]:
    """The param paths PTI tunes: float leaves that are not buffers and that the pivot reaches, filtered by
    `layers` (regexes, any match). Raises ConfigError when nothing is selected."""
    out = []
    for path, leaf in _leaves_by_path(params).items():
        if BUFFERS.search(path) or not np.issubdtype(np.asarray(leaf).dtype, np.floating):
            continue
        if "ws" in pivot_keys and _UNUSED_FOR_WS.search(path):
            continue
        if "embedding" in pivot_keys and _UNUSED_FOR_EMBEDDING.search(path):
            continue
        if layers is not None and not any(re.search(p, path) for p in layers):
            continue
        out.append(path)
    if not out:
        raise ConfigError(f"PTI layers={list(layers) if layers else None}: no tunable parameter matches")
    return tuple(out)


def _is_low_rank(shape: tuple[int, ...], rank: int | None) -> bool:
    return rank is not None and len(shape) >= 2


def init_delta(params: Any, paths: Sequence[str], rank: int | None, key: jax.Array) -> dict[str, Any]:
    """One image's zero delta. Low rank: U random (scale 1/sqrt(m)), V zero, so U @ V = 0 and V gets
    gradients at once (the LoRA initialisation)."""
    leaves = _leaves_by_path(params)
    out: dict[str, Any] = {}
    for i, p in enumerate(paths):
        shape = tuple(np.shape(leaves[p]))
        if _is_low_rank(shape, rank):
            m, n = int(np.prod(shape[:-1])), shape[-1]
            r = min(rank, m, n)
            u = jax.random.normal(jax.random.fold_in(key, i), (m, r), jnp.float32) / np.sqrt(m)
            out[p] = {"u": u, "v": jnp.zeros((r, n), jnp.float32)}
        else:
            out[p] = jnp.zeros(shape, jnp.float32)
    return out


def dense_delta(delta: Any, shape: tuple[int, ...]) -> jax.Array:
    """A dense delta of `shape` from a (dense or low-rank) delta entry."""
    if isinstance(delta, dict):
        return (delta["u"] @ delta["v"]).reshape(shape)
    return delta


def apply_delta(params: Any, delta: dict[str, Any]) -> Any:
    """New params: base + delta on the delta's paths (the base pytree is not modified)."""
    paths = param_paths(params)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    new = [jnp.asarray(leaf) + dense_delta(delta[p], tuple(np.shape(leaf))).astype(jnp.asarray(leaf).dtype)
           if p in delta else leaf for p, leaf in zip(paths, leaves, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, new)


def count_values(delta: Any) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(delta)))


# ---------------------------------------------------------------------------------------------------------
# The compiled program


def resolve_lanes(lanes: str, backend: str | None = None) -> str:
    """"auto" -> "map" on CPU, "vmap" elsewhere.

    Under `vmap` every tuned conv has per-image weights, which XLA lowers to a grouped convolution
    (feature_group_count = images); XLA's CPU grouped convs are slow, and a batch-1 conv already keeps CPU
    cores busy, so on CPU running the images one after another inside the program (`lax.map`) is faster
    (benchmarks/pti_cma.py measures both). Accelerators need the batch: there `vmap` wins."""
    if lanes != "auto":
        return lanes
    return "map" if (backend or jax.default_backend()) == "cpu" else "vmap"


def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b))


def _alpha(cfg: PTIConfig, gen: Generator, code_key: str) -> float:
    if cfg.locality_alpha is not None:
        return float(cfg.locality_alpha)
    return 30.0 if code_key == "ws" else float(np.sqrt(gen.z_dim)) / 2


def _code_key(pivots: dict[str, Any]) -> str:
    """The input entry a pivot is made of (what the locality regulariser perturbs)."""
    return "ws" if "ws" in pivots else "z"


def _run(gen: Generator, cfg: PTIConfig, lpips_params: Any, w_center: Any, targets: jax.Array,
         pivots: dict[str, jax.Array], keys: jax.Array, delta0: dict[str, Any]):
    # gen holds the base params: only read (tuned generators are gen.with_params(base + delta)).
    use_lpips = lpips_params is not None
    base = gen.params
    code_key = _code_key(pivots)
    alpha = _alpha(cfg, gen, code_key)
    opt = optax.adam(cfg.lr)
    tfeat = _lpips.lpips_features(lpips_params, targets) if use_lpips else jnp.zeros((targets.shape[0], 1))

    def lane(target, feat, pivot, key, delta):
        one = jax.tree_util.tree_map(lambda x: x[None], pivot)

        def recon(d):
            img = gen.with_params(apply_delta(base, d)).render(one)
            rec = cfg.l2_weight * _mse(img, target[None])
            if use_lpips and cfg.lpips_weight:
                rec = rec + cfg.lpips_weight * _lpips.lpips_distance_to(lpips_params, img, feat[None])[0]
            return rec, img[0]

        def locality(d, k):
            code = one[code_key]
            if code_key == "ws":
                z = jax.random.normal(k, (cfg.locality_samples, gen.z_dim), jnp.float32)
                c = pivot.get("c")
                c = None if c is None else jnp.broadcast_to(c, (cfg.locality_samples, c.shape[-1]))
                w = gen.mapping(z, c)[:, 0]
                w = w_center + cfg.locality_psi * (w - w_center)
                s = jnp.broadcast_to(w[:, None], (cfg.locality_samples,) + code.shape[1:])
            else:
                s = jax.random.normal(k, (cfg.locality_samples,) + code.shape[1:], jnp.float32)
            diff = s - code
            norm = jnp.sqrt(jnp.sum(jnp.square(diff), axis=tuple(range(1, diff.ndim)), keepdims=True))
            p_r = code + alpha * diff / norm
            inp = {kk: (p_r if kk == code_key else jnp.broadcast_to(v, (cfg.locality_samples,) + v.shape[1:]))
                   for kk, v in one.items()}
            ref = jax.lax.stop_gradient(gen.render(inp))
            new = gen.with_params(apply_delta(base, d)).render(inp)
            r = cfg.locality_l2 * _mse(new, ref)
            if use_lpips and cfg.locality_lpips:
                r = r + cfg.locality_lpips * jnp.mean(_lpips.lpips(lpips_params, new, ref))
            return r

        def total(d, k):
            rec, _ = recon(d)
            if cfg.locality_weight:
                rec = rec + cfg.locality_weight * locality(d, k)
            return rec

        def step(carry, t):
            d, s = carry
            loss, g = jax.value_and_grad(total)(d, jax.random.fold_in(key, t))
            upd, s = opt.update(g, s, d)
            return (optax.apply_updates(d, upd), s), loss

        # The start delta adds exact zeros (dense zeros, or U @ 0), so this is the base generator's output.
        rec0, img0 = recon(delta)
        (delta, _), hist = jax.lax.scan(step, (delta, opt.init(delta)), jnp.arange(cfg.steps))
        rec1, img1 = recon(delta)
        return delta, hist, rec0, img0, rec1, img1

    args = (targets, tfeat, pivots, keys, delta0)
    if resolve_lanes(cfg.lanes) == "vmap":
        return jax.vmap(lane)(*args)
    return jax.lax.map(lambda a: lane(*a), args)


_run_jit = jax.jit(_run, static_argnames=("cfg",))


# ---------------------------------------------------------------------------------------------------------
# Public API


def _check_inputs(gen: Generator, targets: Any, pivots: dict[str, Any]) -> tuple[np.ndarray, dict]:
    x = np.asarray(targets, np.float32)
    if x.ndim == 3:
        x = x[None]
    res = gen.img_resolution
    if x.ndim != 4 or x.shape[1:3] != (res, res):
        raise ConfigError(f"PTI targets: expected [N, {res}, {res}, C] in [-1, 1], got {list(x.shape)}")
    if not isinstance(pivots, dict) or not pivots:
        raise ConfigError("PTI pivots: expected a generator-input dict, e.g. {'ws': [N, num_ws, w_dim]} or {'z': ...}")
    piv = {k: np.asarray(v, np.float32) for k, v in pivots.items()}
    for k, v in piv.items():
        if v.shape[0] != len(x):
            raise ConfigError(f"PTI pivots[{k!r}]: {v.shape[0]} rows for {len(x)} target images")
    if gen.has_w and "ws" not in piv and "z" not in piv:
        raise ConfigError(f"PTI pivots: {gen.family} needs 'ws' (W/W+ pivots) or 'z'")
    return x, piv


def tune(model: Any, targets: Any, pivots: dict[str, Any], config: PTIConfig | None = None, *,
         lpips_params: Any = None, seed: int = 0, batch_size: int | None = None,
         truncation_psi: float | None = None, **options: Any) -> PTIResult:
    """Tune `model`'s weights per image around its pivot. Returns the per-image deltas and before/after losses.

    model: a `jaxinv.models.Model` (family, cfg, params). targets: [N, R, R, C] in [-1, 1]. pivots: the
    generator input of every image, e.g. {"ws": [N, num_ws, w_dim]} (W / W+), {"z": [N, z_dim]} (DCGAN),
    {"z", "embedding"} (BigGAN). config / **options: `PTIConfig` fields. lpips_params: LPIPS-VGG16 params
    (needed when lpips_weight > 0). batch_size: images per compiled call (the last batch is padded).
    truncation_psi: the generator's static truncation (BigGAN's BN statistics; default the model's, 1.0).
    """
    cfg = config or PTIConfig(**options)
    if config is not None and options:
        cfg = PTIConfig(**{**cfg.__dict__, **options})
    if (cfg.lpips_weight > 0) and lpips_params is None:
        raise ConfigError("PTI lpips_weight > 0 needs lpips_params (jaxinv.losses.load_lpips / procedural_lpips)")
    gen, x, piv, paths, w_center = _prepare(model, truncation_psi, targets, pivots, cfg)
    base = gen.params
    n = len(x)
    bs = n if not batch_size else max(1, min(int(batch_size), n))
    key = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    outs = []
    for b0 in range(0, n, bs):
        idx = np.arange(b0, min(b0 + bs, n))
        pad = np.concatenate([idx, np.repeat(idx[-1:], bs - len(idx))])
        lane_keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(pad))
        delta0 = jax.vmap(lambda k: init_delta(base, paths, cfg.rank, jax.random.fold_in(k, 1)))(lane_keys)
        out = _run_jit(gen, cfg, lpips_params, w_center, jnp.asarray(x[pad]),
                       {k: jnp.asarray(v[pad]) for k, v in piv.items()}, lane_keys, delta0)
        m = len(idx)
        out = jax.tree_util.tree_map(lambda a, m=m: np.asarray(a)[:m], out)
        outs.append(out)
    cat = lambda *a: np.concatenate(a, axis=0)  # noqa: E731
    delta, hist, rec0, img0, rec1, img1 = jax.tree_util.tree_map(cat, *outs)
    return PTIResult(deltas=delta, images_before=img0, images_after=img1, loss_before=rec0, loss_after=rec1,
                     history=np.moveaxis(hist, 0, 1), paths=paths,
                     trainable_per_image=count_values(jax.tree_util.tree_map(lambda a: a[0], delta)),
                     seconds=time.perf_counter() - t0)


def _prepare(model: Any, truncation_psi: float | None, targets: Any, pivots: dict[str, Any],
             cfg: PTIConfig) -> tuple[Generator, np.ndarray, dict, tuple[str, ...], jax.Array]:
    """(generator with device params, targets, pivots, tuned paths, W centre for the locality samples)."""
    gen = Generator.from_model(model, truncation_psi)
    gen = gen.with_params(jax.tree_util.tree_map(jnp.asarray, gen.params))
    x, piv = _check_inputs(gen, targets, pivots)
    paths = select_paths(gen.params, tuple(piv), cfg.layers)
    w_center = jnp.asarray(gen.w_avg) if (gen.has_w and "ws" in piv) else jnp.zeros(())
    return gen, x, piv, paths, w_center


def render_tuned(model: Any, delta: dict[str, Any], pivot: dict[str, Any],
                 truncation_psi: float | None = None) -> np.ndarray:
    """G_i(pivot) for one image's delta (no batch axis) and its pivot (with a batch axis)."""
    gen = Generator.from_model(model, truncation_psi)
    gen = gen.with_params(apply_delta(jax.tree_util.tree_map(jnp.asarray, gen.params), delta))
    return np.asarray(render_jit(gen, {k: jnp.asarray(v, jnp.float32) for k, v in pivot.items()}))


# ---------------------------------------------------------------------------------------------------------
# Output: delta files and tuned checkpoints

DELTA_FORMAT = "jaxinv-pti-delta-1"


def save_delta(path: str | Path, delta: dict[str, Any], meta: dict[str, Any] | None = None) -> Path:
    """One image's delta as an npz: dense entries under their path, low-rank under "<path>@u" / "<path>@v";
    `__meta__` holds the format tag and `meta` (JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for p, d in delta.items():
        if isinstance(d, dict):
            arrays[f"{p}@u"], arrays[f"{p}@v"] = np.asarray(d["u"]), np.asarray(d["v"])
        else:
            arrays[p] = np.asarray(d)
    arrays["__meta__"] = np.frombuffer(json.dumps({"format": DELTA_FORMAT, **(meta or {})}).encode(), np.uint8)
    np.savez(path, **arrays)
    return path


def load_delta(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(delta, meta) from `save_delta`'s npz."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile / ValueError on corrupt data
        raise CheckpointError(f"{path}: not a readable PTI delta npz ({type(e).__name__}: {e})") from None
    try:
        meta = json.loads(bytes(data.pop("__meta__")).decode())
    except (KeyError, ValueError):
        raise CheckpointError(f"{path}: no valid __meta__ entry (not written by jaxinv.pti.save_delta)") from None
    if meta.get("format") != DELTA_FORMAT:
        raise CheckpointError(f"{path}: delta format {meta.get('format')!r}, expected {DELTA_FORMAT!r}")
    delta: dict[str, Any] = {}
    for k, v in data.items():
        if k.endswith("@u") or k.endswith("@v"):
            delta.setdefault(k[:-2], {})[k[-1]] = v
        else:
            delta[k] = v
    return delta, meta


def save_tuned(model: Any, delta: dict[str, Any], out_dir: str | Path, overwrite: bool = False) -> Path:
    """The tuned generator of one image as a converted-model directory (orbax params + jaxinv.json)."""
    from jaxinv import checkpoint
    from jaxinv.models import Model

    params = jax.tree_util.tree_map(np.asarray, apply_delta(model.params, delta))
    prov = {**dict(getattr(model, "provenance", {}) or {}), "pti": {"tuned_paths": sorted(delta)}}
    return checkpoint.save(Model(model.family, model.cfg, params, prov), out_dir, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------------------
# Memory


def memory_profile(model: Any, targets: Any, pivots: dict[str, Any], batch_sizes: Sequence[int] = (1, 2, 4),
                   config: PTIConfig | None = None, lpips_params: Any = None,
                   truncation_psi: float | None = None, **options: Any) -> list[dict[str, Any]]:
    """XLA's memory statistics of the compiled PTI program per batch size (compiled, not run).

    Rows: batch, temp/argument/output bytes and their total (XLA's buffer assignment: the program's whole
    footprint, base params included), trainable values per image, and the state bytes per image (delta + Adam
    moments). The per-image cost is the slope of the total over the batch size (`bytes_per_image_slope`)."""
    cfg = config or PTIConfig(**options)
    gen, x, piv, paths, w_center = _prepare(model, truncation_psi, targets, pivots, cfg)
    base = gen.params
    rows = []
    for b in batch_sizes:
        sel = np.arange(b) % len(x)
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(b))
        delta0 = jax.vmap(lambda k: init_delta(base, paths, cfg.rank, k))(keys)
        compiled = _run_jit.lower(gen, cfg, lpips_params, w_center, jnp.asarray(x[sel]),
                                  {k: jnp.asarray(v[sel]) for k, v in piv.items()}, keys, delta0).compile()
        m = compiled.memory_analysis()
        per_image = count_values(jax.tree_util.tree_map(lambda a: a[0], delta0))
        total = m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
        rows.append({"batch": int(b), "temp_bytes": int(m.temp_size_in_bytes),
                     "argument_bytes": int(m.argument_size_in_bytes), "output_bytes": int(m.output_size_in_bytes),
                     "total_bytes": int(total), "trainable_per_image": per_image,
                     "state_bytes_per_image": 12 * per_image})
    if len(rows) >= 2:
        b = np.array([r["batch"] for r in rows], np.float64)
        tot = np.array([r["total_bytes"] for r in rows], np.float64)
        slope = float(np.polyfit(b, tot, 1)[0])
        for r in rows:
            r["bytes_per_image_slope"] = slope
    return rows
