"""The inversion engine: images x restarts optimised in one compiled program.

    model = jaxinv.load("default")
    images, files, bad = jaxinv.images.load_images(["face.png"], model)  # the CLI's preprocessing
    result = jaxinv.invert(model, images, loss="mse=1,prior=1e-3", optimizer="lbfgs", steps=200, restarts=4,
                           image_keys=[f.name for f in files])
    print(result.psnr, result.ssim, result.latents["z"].shape)  # [1] dB, [1], [1, 100]

(`jaxinv.invert` is this module, callable as its `invert` function.)

For each image (NHWC in [-1, 1] at the generator's resolution) and each restart, a lane holds one latent
(`jaxinv.spaces`), and a solver (`jaxinv.optim`) runs `steps` steps of it; lanes are `vmap`ped (images x
restarts; L-BFGS lanes go through `lax.map`, see `optim.LBFGS.lanes`) and the steps are a `lax.scan`, all
under one `jit`. Each lane draws its randomness from
`fold_in(fold_in(PRNGKey(seed), image_id), restart)`, so results do not depend on how images are batched. One
seeding rule for the API and the command line: `image_id` is `image_ids(image_keys)` (31 bits of the sha256 of
each image's key; `jaxinv invert` uses the file's path relative to its --images folder), or the given
`image_indices`, or by default the image's index 0..N-1.
Restart 0 starts from the space's centre (W: the mean of mapped samples, as the official projector) unless
`start="random"`; other restarts start from random samples. The best restart per image is the one with the
lowest final loss (evaluated without latent noise).

Losses are weighted sums of terms `(weight, term)`. A term is called per lane as
`term(img, target_prep, latent, space) -> [1]`; `term.prepare(targets)` runs once per batch, outside the step
loop (e.g. LPIPS features or face descriptors of the targets).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import losses as _losses
from jaxinv import metrics
from jaxinv.degrade import Degradation
from jaxinv.degrade import parse as _parse_degradation
from jaxinv.errors import ConfigError, ImageError
from jaxinv.generators import Generator
from jaxinv.mgan import parse as _parse_mgan
from jaxinv.optim import LBFGS, Adam, Objective, make_optimizer
from jaxinv.spaces import Space, ZSpace, check_space, make_space

# ---------------------------------------------------------------------------------------------------------
# Loss terms


def _register(cls: type, data: tuple[str, ...] = ()) -> type:
    names = [f.name for f in dataclasses.fields(cls)]
    jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=[n for n in names if n not in data])
    return cls


@dataclass(frozen=True)
class Term:
    """A loss term; subclasses override `__call__` (and `prepare` to precompute target features)."""

    name: ClassVar[str] = "?"

    def prepare(self, targets: jax.Array) -> Any:
        return targets

    def __call__(self, img: jax.Array, target: Any, latent: Any, space: Space) -> jax.Array:
        raise NotImplementedError


@dataclass(frozen=True)
class MSE(Term):
    """Pixel mean squared error (images in [-1, 1])."""

    name: ClassVar[str] = "mse"

    def __call__(self, img, target, latent, space):
        return _losses.l2_loss(img, target)


@dataclass(frozen=True)
class L1(Term):
    """Pixel mean absolute error (images in [-1, 1])."""

    name: ClassVar[str] = "l1"

    def __call__(self, img, target, latent, space):
        return _losses.l1_loss(img, target)


@dataclass(frozen=True)
class LPIPS(Term):
    """LPIPS-VGG16 as the official projector computes it (`jaxinv.losses.lpips`); target features once."""

    name: ClassVar[str] = "lpips"
    params: Any = None

    def prepare(self, targets):
        return _losses.lpips_features(self.params, targets)

    def __call__(self, img, target, latent, space):
        return _losses.lpips_distance_to(self.params, img, target)


@dataclass(frozen=True)
class Identity(Term):
    """1 - cosine similarity of face-ID descriptors (`jaxinv.losses.identity`); target descriptors once."""

    name: ClassVar[str] = "id"
    params: Any = None

    def prepare(self, targets):
        return _losses.face_descriptor_from_image(self.params, targets)

    def __call__(self, img, target, latent, space):
        return 1.0 - _losses.cosine_similarity(_losses.face_descriptor_from_image(self.params, img), target)


@dataclass(frozen=True)
class NoiseReg(Term):
    """Official projector noise regulariser on the free noise maps (0 when the space has none)."""

    name: ClassVar[str] = "noise"

    def prepare(self, targets):
        return None

    def __call__(self, img, target, latent, space):
        maps = space.noise_maps(latent)
        if not maps:
            return jnp.zeros(img.shape[:1])
        return _losses.noise_regularization(maps)


@dataclass(frozen=True)
class Prior(Term):
    """The space's latent prior (`Space.prior`: squared Mahalanobis distance per dimension)."""

    name: ClassVar[str] = "prior"

    def prepare(self, targets):
        return None

    def __call__(self, img, target, latent, space):
        return space.prior(latent)


@dataclass(frozen=True)
class Fn(Term):
    """Any `fn(img, target) -> [B]` (images in [-1, 1]); `fn` must be hashable (a module-level function)."""

    name: ClassVar[str] = "fn"
    fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None

    def __call__(self, img, target, latent, space):
        return self.fn(img, target)


for _cls in (MSE, L1, NoiseReg, Prior, Fn):
    _register(_cls)
_register(LPIPS, ("params",))
_register(Identity, ("params",))

TERMS: dict[str, type[Term]] = {"mse": MSE, "l2": MSE, "l1": L1, "lpips": LPIPS, "id": Identity,
                                "identity": Identity, "noise": NoiseReg, "prior": Prior}


@dataclass(frozen=True)
class Loss:
    """Weighted sum of terms. Weights are static (part of the compiled program)."""

    terms: tuple[Term, ...]
    weights: tuple[float, ...]

    @property
    def names(self) -> list[str]:
        out: list[str] = []
        for i, t in enumerate(self.terms):
            out.append(t.name if t.name not in out else f"{t.name}_{i}")
        return out


_register(Loss, ("terms",))


def parse_loss_spec(spec: str) -> list[tuple[str, float]]:
    """[(term name, weight)] of a loss spec "mse=1,lpips=0.1" (names lower-cased; a bare name weighs 1). Only
    the syntax: `make_loss` checks the names."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, w = part.partition("=")
        name = name.strip().lower()
        try:
            out.append((name, float(w) if w.strip() else 1.0))
        except ValueError:
            raise ConfigError(f"loss={spec!r}: weight of {name!r} is not a number ({w!r})") from None
    return out


def make_loss(loss: str | Loss | Sequence[tuple[float, Term | Callable]] | Term,
              resources: dict[str, Any] | None = None) -> Loss:
    """A Loss from a spec: "mse", "mse=1,lpips=0.1,id=0.5,noise=1e5,prior=0.01", a Term, or a list of
    (weight, term) where term is a Term or a hashable fn(img, target) -> [B]. `resources` gives the params of
    terms that need a network: {"lpips": lpips params, "id": face-ID params}."""
    resources = resources or {}
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, Term):
        return Loss((loss,), (1.0,))
    pairs: list[tuple[float, Term]] = []
    if isinstance(loss, str):
        for name, weight in parse_loss_spec(loss):
            if name not in TERMS:
                raise ConfigError(f"loss={loss!r}: unknown term {name!r} (choose from {', '.join(TERMS)})")
            cls = TERMS[name]
            if cls in (LPIPS, Identity):
                key = "lpips" if cls is LPIPS else "id"
                if resources.get(key) is None:
                    raise ConfigError(f"loss={name!r}: needs network weights (resources[{key!r}])")
                pairs.append((weight, cls(params=resources[key])))
            else:
                pairs.append((weight, cls()))
    else:
        for item in loss:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise ConfigError(f"loss: expected (weight, term) pairs, got {item!r}")
            w, t = item
            pairs.append((float(w), t if isinstance(t, Term) else Fn(fn=t)))
    if not pairs:
        raise ConfigError("loss='': no loss terms given")
    return Loss(tuple(t for _, t in pairs), tuple(w for w, _ in pairs))


# ---------------------------------------------------------------------------------------------------------
# Engine


class InvertResult(NamedTuple):
    latents: Any  # best restart per image: the space's latent pytree, leading axis = images
    images: np.ndarray  # [N, H, W, C] reconstructions (generator output, nominally [-1, 1])
    losses: np.ndarray  # [N] final loss of the best restart (no latent noise)
    terms: dict[str, np.ndarray]  # unweighted term values at the best restart, each [N]
    best_restart: np.ndarray  # [N] int
    restart_losses: np.ndarray  # [N, R] final loss of every restart
    history: np.ndarray  # [steps, N, R] loss at every step (Adam: with its latent noise)
    evals: np.ndarray  # [N, R] loss evaluations spent
    steps_done: np.ndarray  # [N, R] steps taken before early stop (= steps without early stop)
    space: Space  # the prepared space (to_input / latent layout)
    seconds: float  # wall time of the optimisation (compile included)
    trajectory: Any = None  # with record_every=k: the best restart's latent after every k steps, [N, T, ...]
    observed: np.ndarray | None = None  # with a degradation: D(G(z*)) [N, h, w, c] (`images` is G(z*), restored)
    psnr: np.ndarray | None = None  # [N] dB of the reconstruction against the given images (degradation: D(G(z*)))
    ssim: np.ndarray | None = None  # [N] likewise (`jaxinv.metrics.ssim` on [0, 1] images)


def lane_key(seed: int | jax.Array, image_index: jax.Array, restart: jax.Array) -> jax.Array:
    """The PRNG key of one (image, restart) lane: independent of batch composition."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), image_index), restart)


def per_group(fn: Callable[..., Any], group: int | None, *rows: Any) -> Any:
    """`fn(*rows)` over groups of `group` rows (leading axis; its length a multiple of `group`), one group
    after another (`lax.map`); `group=None` runs all rows at once. XLA:CPU picks kernels (and so the order of
    float32 sums) by shape, so a row's result depends on the group shape, never on how many groups there are:
    with a fixed group, results are the same bits whatever the batch size or device count."""
    n = jax.tree_util.tree_leaves(rows)[0].shape[0]
    if group is None or group == n:
        return fn(*rows)
    if n % group:
        raise ValueError(f"per_group: {n} rows are not a multiple of group={group}")
    split = lambda a: a.reshape(n // group, group, *a.shape[1:])  # noqa: E731
    out = jax.lax.map(lambda args: fn(*args), jax.tree_util.tree_map(split, rows))
    return jax.tree_util.tree_map(lambda a: a.reshape(n, *a.shape[2:]), out)


def _lane_value(gen: Generator, space: Space, loss: Loss, prep: tuple, latent: Any,
                c: jax.Array | None = None, degradation: Degradation | None = None,
                daux: Any = None) -> tuple[jax.Array, tuple]:
    # With a degradation every term compares D(G(z)) with the observation (restoration by inversion).
    img = space.render(gen, latent, c)
    obs = img if degradation is None else degradation(img, daux)
    vals = tuple(t(obs, p, latent, space)[0] for t, p in zip(loss.terms, prep, strict=True))
    total = sum(w * v for w, v in zip(loss.weights, vals, strict=True))
    return total, (img, obs, vals)


# Per-step progress from inside the compiled loop: every `progress_every` steps each program instance reports
# the lane-steps (images x restarts x steps) it has done to the sink that `progress_hook` sets (a host callback;
# it changes no arithmetic).
_progress_sink: Callable[[float], None] | None = None


def _tick(lane_steps: Any) -> None:
    sink = _progress_sink
    if sink is not None:
        sink(float(lane_steps))


@contextlib.contextmanager
def progress_hook(sink: Callable[[float], None] | None) -> Iterator[None]:
    """Within the block, programs compiled with `progress_every` report lane-steps done to `sink(n)` (called from
    XLA's threads while a batch runs)."""
    global _progress_sink
    before, _progress_sink = _progress_sink, sink
    try:
        yield
    finally:
        _progress_sink = before


def progress_interval(steps: int) -> int:
    """Steps between progress reports: about 50 per run."""
    return max(1, int(steps) // 50)


def _run_batch(gen: Generator, space: Space, loss: Loss, targets: jax.Array, image_index: jax.Array,
               seed: jax.Array, *, optimizer: Adam | LBFGS, steps: int, restarts: int, start_center: bool,
               early_stop: tuple[float, int] | None, restart_offset: jax.Array | int = 0,
               init_latents: Any = None, record_every: int | None = None, lane_group: int | None = None,
               c: jax.Array | None = None, degradation: Degradation | None = None, deg_data: Any = None,
               progress_every: int | None = None, record_noise: bool = True):
    # restart_offset: global index of this call's first restart (jaxinv.jobs shards restarts over devices).
    # init_latents: optional latents [n, ...] (the space's layout, or some of its entries), or a function of a
    # group's targets returning them: restart 0 starts there.
    # record_every: also return every lane's latent after each k steps ("trajectory", best restart only);
    # record_noise=False leaves the free noise maps out of it (videos: frames render with the stored noise).
    # lane_group: images per vmapped group (n must be a multiple), groups run one after another; None = all n.
    # Everything per image (target features, warm starts, steps) is computed inside its group, so an image's
    # arithmetic has the same shapes whatever n is: see `per_group`.
    # c: [n, c_dim] fixed class vector of each image (conditional generators), or None.
    # degradation: the terms compare D(G(z)) with the targets (observations, D's output shape; masks at their
    # resolution applied to them too); deg_data: its per-image operands, leading axis n, or None.
    # `images` stays G(z); with a degradation the output also holds "observed" = D(G(z)).
    # progress_every: report lane-steps to `progress_hook`'s sink every k steps (see `_tick`).
    lanes_per_call = 1 if getattr(optimizer, "lanes", "vmap") == "map" else \
        (lane_group or targets.shape[0]) * restarts

    def lane(key, restart, prep, given, ci, di):
        prep = jax.tree_util.tree_map(lambda x: x[None], prep)  # per-lane batch of 1
        ci = None if ci is None else ci[None]
        di = jax.tree_util.tree_map(lambda x: x[None], di)

        def value(latent):
            return _lane_value(gen, space, loss, prep, latent, ci, degradation, di)[0]

        objective = Objective(value, space.perturb, space.project)
        k_init, k_loop = jax.random.split(key)
        random_start = space.init(k_init, gen, 1, c=ci)
        if start_center:
            center = space.init(k_init, gen, 1, center=True, c=ci)
            latent0 = jax.tree_util.tree_map(lambda c, r: jnp.where(restart == 0, c, r), center, random_start)
        else:
            latent0 = random_start
        if init_latents is not None:  # warm start of restart 0 (an encoder's or an earlier run's latent)
            # Only the given entries: an encoder's codes leave the noise maps to their usual start.
            latent0 = {**latent0, **jax.tree_util.tree_map(lambda g, r: jnp.where(restart == 0, g[None], r),
                                                           given, {k: latent0[k] for k in given})}
        state0 = optimizer.init(latent0, objective)

        def body(carry, t):
            state, active, stall, prev, done, evals = carry
            new, info = optimizer.step(state, t, steps, jax.random.fold_in(k_loop, t), objective)
            if progress_every:
                jax.lax.cond((t + 1) % progress_every == 0,
                             lambda: jax.debug.callback(_tick, float(progress_every * lanes_per_call)), lambda: None)
            state = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, state)
            evals = evals + jnp.where(active, info.evals, 0)
            done = done + active.astype(jnp.int32)
            loss = jnp.where(active, info.loss, prev)  # a stopped lane keeps reporting its last loss
            if early_stop is not None:
                tol, patience = early_stop
                small = jnp.isfinite(prev) & ((prev - info.loss) <= tol * jnp.abs(prev))
                stall = jnp.where(small, stall + 1, 0)
                active = active & (stall < patience)
            return (state, active, stall, loss, done, evals), loss

        carry0 = (state0, jnp.asarray(True), jnp.zeros((), jnp.int32), jnp.asarray(jnp.inf, jnp.float32),
                  jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
        if record_every:  # chunks of k steps; the latent is recorded after each chunk
            def chunk(carry, c):
                carry, h = jax.lax.scan(body, carry, c * record_every + jnp.arange(record_every))
                lat = carry[0].latent
                return carry, (h, lat if record_noise else {k: v for k, v in lat.items() if k != "noise"})

            (state, _, _, _, done, evals), (hist, traj) = jax.lax.scan(chunk, carry0,
                                                                       jnp.arange(steps // record_every))
            hist = hist.reshape(steps)
        else:
            (state, _, _, _, done, evals), hist = jax.lax.scan(body, carry0, jnp.arange(steps))
            traj = None
        final, (img, obs, vals) = _lane_value(gen, space, loss, prep, state.latent, ci, degradation, di)
        return state.latent, final, vals, img[0], obs[0], hist, evals, done, traj

    n = targets.shape[0]
    r = jnp.arange(restarts) + restart_offset
    keys = jax.vmap(lambda i: jax.vmap(lambda k: lane_key(seed, i, k))(r))(image_index)  # [n, R]

    def prepare(t, d):  # once per image, outside the step loop
        given = jnp.zeros(t.shape[:1]) if init_latents is None else \
            init_latents(t) if callable(init_latents) else None
        if degradation is not None:
            t = degradation.target(t, d)
        return tuple(term.prepare(t) for term in loss.terms), given

    fixed_given = None if init_latents is None or callable(init_latents) else init_latents
    if getattr(optimizer, "lanes", "vmap") == "map":
        # One lane after another (see optim.LBFGS.lanes); same per-lane maths as the vmapped form.
        def one(args):
            k, rr, t, g, ci, d = args
            prep, given = prepare(t[None], jax.tree_util.tree_map(lambda a: a[None], d))
            # (a given latent is a dict of arrays: add its lane axis leaf by leaf)
            g1 = None if g is None else jax.tree_util.tree_map(lambda a: a[None], g)
            prep, given = jax.tree_util.tree_map(lambda a: a[0], (prep, given if g is None else g1))
            return lane(k, rr, prep, given, ci, d)

        rep = lambda a: jnp.repeat(a, restarts, axis=0)  # noqa: E731
        flat = jax.lax.map(one, (keys.reshape(n * restarts, *keys.shape[2:]), jnp.tile(r, n), rep(targets),
                                 jax.tree_util.tree_map(rep, fixed_given), jax.tree_util.tree_map(rep, c),
                                 jax.tree_util.tree_map(rep, deg_data)))
        latents, final, vals, imgs, obs, hist, evals, done, traj = jax.tree_util.tree_map(
            lambda a: a.reshape(n, restarts, *a.shape[1:]), flat)
    else:
        def group(kk, t, g, cc, dd):
            prep, given = prepare(t, dd)
            given = given if g is None else g
            per_image = jax.vmap(lane, in_axes=(0, 0, None, None, None, None))  # restarts share the image's data
            return jax.vmap(per_image, in_axes=(0, None, 0, 0, 0, 0))(kk, r, prep, given, cc, dd)

        latents, final, vals, imgs, obs, hist, evals, done, traj = per_group(group, lane_group, keys, targets,
                                                                             fixed_given, c, deg_data)
    best = jnp.argmin(jnp.where(jnp.isfinite(final), final, jnp.inf), axis=1)  # [n]
    pick = lambda x: x[jnp.arange(n), best]  # noqa: E731
    best_latents = space.canonical(jax.tree_util.tree_map(lambda x: pick(x)[:, 0], latents))  # drop lane axis
    out = dict(latents=best_latents, images=pick(imgs), losses=pick(final),
               terms=tuple(pick(v) for v in vals), best=best, restart_losses=final,
               history=jnp.moveaxis(hist, 2, 0), evals=evals, done=done)
    if degradation is not None:
        out["observed"] = pick(obs)
    if record_every:
        out["trajectory"] = space.canonical(jax.tree_util.tree_map(lambda x: pick(x)[:, :, 0], traj))  # [n, T, ...]
    return out


_run_batch_jit = jax.jit(_run_batch, static_argnames=("optimizer", "steps", "restarts", "start_center",
                                                      "early_stop", "record_every", "lane_group", "progress_every",
                                                      "record_noise"))


def default_lane_group(gen: Generator) -> int | None:
    """The engine's lane group for `gen` on the default backend (see `invert`'s lane_group)."""
    if jax.default_backend() != "cpu":
        return None  # accelerators: every lane of a batch in one vmapped program
    return 1


def resolve_lane_group(lane_group: int | None | str, gen: Generator) -> int | None:
    if lane_group == "auto":
        return default_lane_group(gen)
    if lane_group is None:
        return None
    if isinstance(lane_group, bool) or not isinstance(lane_group, int | np.integer) or lane_group < 1:
        raise ConfigError(f"lane_group={lane_group!r}: expected an integer >= 1, None or 'auto'")
    return int(lane_group)


PIXEL_RANGE_LIMIT = 8.0  # |value| above which an image is taken for 0..255 pixels and refused


def image_id(key: str) -> int:
    """The image's identity for its random keys: 31 bits of sha256(key). Independent of batch composition,
    position, device and process count, and of the other images of the job."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:4], "little") & 0x7FFFFFFF


def check_images(images: Any, gen: Generator, names: Sequence[str] | None = None,
                 degradation: Degradation | None = None) -> np.ndarray:
    """Validate an image batch for `gen`: [N, R, R, C] float, finite (with a degradation: its observation
    shape). Raises ImageError / ConfigError."""
    x = np.asarray(images)
    if x.dtype.kind in "iub":
        raise ConfigError(f"images: {x.dtype} array; jaxinv takes float images in [-1, 1] (x / 127.5 - 1 for "
                          "0..255 pixels, or jaxinv.images.load_images)")
    if x.dtype.kind != "f":
        raise ConfigError(f"images: expected a float array in [-1, 1], got dtype {x.dtype}")
    want = (gen.img_resolution, gen.img_resolution, gen.img_channels)
    what = "this generator"
    if degradation is not None:
        want, what = degradation.out_shape(want), f"degradation={degradation.spec()!r} on this generator"
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1:] != want:
        raise ConfigError(f"images: expected [N, {want[0]}, {want[1]}, {want[2]}] for {what}, "
                          f"got {list(x.shape)} (preprocess with jaxinv.images)")
    x = x.astype(np.float32)
    bad = ~np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ImageError(f"{names[i] if names else f'image {i}'}: contains NaN or infinite values")
    peak = np.abs(x).reshape(len(x), -1).max(axis=1) if x.size else np.zeros(len(x))
    # Generator outputs overshoot [-1, 1] (random-weight test generators reach ~6.5), 0..255 pixels do not fit.
    if (peak > PIXEL_RANGE_LIMIT).any():
        i = int(np.argmax(peak > PIXEL_RANGE_LIMIT))
        raise ImageError(f"{names[i] if names else f'image {i}'}: values up to {peak[i]:.4g}; jaxinv takes images "
                         "in [-1, 1] (x / 127.5 - 1 for 0..255 pixels)")
    return x


def default_space(gen: Generator) -> str:
    """w for generators with a W space (as the official projectors), z otherwise."""
    return "w" if gen.has_w else "z"


def space_from_spec(space: str | Space, options: dict[str, Any] | None = None) -> Space:
    """A latent space from its name (`spaces.SPACES`, or `mgan:N@L`: the multi-code prior) and options."""
    parsed = _parse_mgan(space) if isinstance(space, str) else None
    return make_space(space if parsed is None else parsed, **(options or {}))


def invert(model: Any, images: Any, *, space: str | Space | None = None, loss: Any = "mse",
           optimizer: str | Adam | LBFGS = "adam", steps: int = 400, restarts: int = 1, seed: int = 0,
           image_keys: Sequence[str] | None = None, image_indices: Sequence[int] | None = None,
           start: str | None = None, batch_size: int | None = None,
           early_stop: tuple[float, int] | None = None, resources: dict[str, Any] | None = None,
           space_options: dict[str, Any] | None = None, on_batch: Callable[[int, int], None] | None = None,
           on_step: Callable[[float], None] | None = None,
           init_latents: Any = None, record_every: int | None = None,
           lane_group: int | None | str = "auto", c: Any = None, class_idx: Any = None,
           truncation_psi: float | None = None, degradation: str | Degradation | None = None) -> InvertResult:
    """Invert `images` ([N, R, R, C] in [-1, 1]) into `model`'s latent `space`.

    model: `jaxinv.models.Model` or `jaxinv.generators.Generator`. space: name (z, w, w+, s, p, pn, mgan:N@L)
    or a Space; default w for StyleGAN-type generators, z otherwise (as the CLI). loss: spec string / Loss /
    [(weight, term)] (see `make_loss`). optimizer: "adam" | "lbfgs" or an instance. image_keys: each image's
    name (e.g. its file name): its random keys are then those `jaxinv invert` gives the file of that relative
    path; or image_indices: an integer id per image (default 0..N-1).
    start: "center" | "random" for restart 0 (default: center except Z). batch_size: images per compiled call
    (the last batch is padded, so one compilation serves all). early_stop: (rel_tol, patience) per lane.
    on_batch(done, total) is called after each batch; on_step(k) about 50 times per batch from inside the compiled
    loop (XLA's threads), k = lane-steps done since its last call (images x restarts x steps).
    init_latents: latents in the space's layout, leading
    axis N, or some of their entries (e.g. `result.latents` of an earlier run, or
    `jaxinv.encode.encoder_start(...)`, the codes without noise maps): restart 0 starts there.
    record_every: k > 0 dividing `steps`: also return the best restart's latent after every k steps.
    lane_group: images per vmapped group inside a compiled batch (groups run one after another; batches are
    padded to whole groups); None = the whole batch at once, "auto" = `default_lane_group`. Results are the
    same bits for any batch_size given the same lane_group (see `per_group`).
    class_idx (an int, or one per image) or c ([N, c_dim] or [c_dim]): the fixed class of a class-conditional
    generator (StyleGAN2/3 with c_dim > 0, BigGAN). truncation_psi: the truncation the targets were sampled
    with (BigGAN: z ~ truncnorm(-2, 2) * truncation_psi and its BN statistics; StyleGAN: applied when
    rendering from Z); default: the Generator's own (1.0 for a Model).
    degradation: a `jaxinv.degrade.Degradation` or its spec ("mask:FILE+down:4", see `jaxinv.degrade.parse`):
    `images` are then observations y (D's output shape) and every loss term compares D(G(z)) with y
    (restoration); `result.images` is the restored G(z*), `result.observed` D(G(z*)). Per-image masks:
    `Mask(masks, per_image=True)` with masks [N, H, W]. A noise model weighs mse as its likelihood.
    """
    gen = Generator.from_model(model, truncation_psi)
    sp = space_from_spec(default_space(gen) if space is None else space, space_options)
    check_space(sp, gen)
    sp = sp.prepare(gen)
    lossf = make_loss(loss, resources)
    opt = make_optimizer(optimizer)
    if int(steps) < 1 or int(restarts) < 1:
        raise ConfigError(f"steps={steps} / restarts={restarts}: both must be >= 1")
    start = start or ("random" if isinstance(sp, ZSpace) else "center")
    if start not in ("center", "random"):
        raise ConfigError(f"start={start!r}: expected 'center' or 'random'")
    deg = _parse_degradation(degradation, gen.img_resolution, gen.img_channels)
    x = check_images(images, gen, degradation=deg)
    n = len(x)
    deg_data = None
    if deg is not None:
        lossf = likelihood_loss(lossf, deg)
        deg_data = deg.per_image_data()
        if deg_data is not None:
            for d in deg_data:
                if d is not None and len(d) != n:
                    raise ConfigError(f"degradation: {len(d)} per-image masks for {n} images")
        deg = deg.static()
    cv = class_vectors(gen, n, c=c, class_idx=class_idx)
    if image_keys is not None and image_indices is not None:
        raise ConfigError("give image_keys or image_indices, not both")
    if image_keys is not None:
        if isinstance(image_keys, str) or len(image_keys) != n:
            raise ConfigError(f"image_keys: expected {n} names (one per image)")
        image_indices = [image_id(str(k)) for k in image_keys]
    idx = np.arange(n) if image_indices is None else np.asarray(image_indices, np.int32)
    if idx.shape != (n,):
        raise ConfigError(f"image_indices: expected {n} indices, got shape {idx.shape}")
    group = resolve_lane_group(lane_group, gen)
    bs = n if not batch_size else max(1, min(int(batch_size), n))
    if group is not None:
        bs = -(-bs // group) * group  # whole groups
    given = None if init_latents is None else _check_init(init_latents, sp, gen, n, cv)
    if record_every is not None and (int(record_every) < 1 or int(steps) % int(record_every)):
        raise ConfigError(f"record_every={record_every}: must be >= 1 and divide steps={steps}")
    t0 = time.perf_counter()
    outs = []
    for b0 in range(0, n, bs):
        xb, ib = x[b0:b0 + bs], idx[b0:b0 + bs]
        m = len(xb)
        gb = None if given is None else jax.tree_util.tree_map(lambda a, b0=b0: a[b0:b0 + bs], given)
        cb = None if cv is None else cv[b0:b0 + bs]
        db = jax.tree_util.tree_map(lambda a, b0=b0: a[b0:b0 + bs], deg_data)
        if m < bs:  # pad to the compiled batch size; padded lanes are discarded
            pad = lambda a, m=m: np.concatenate([a, np.repeat(a[-1:], bs - m, axis=0)])  # noqa: E731
            xb, ib = pad(xb), pad(ib)
            gb = None if gb is None else jax.tree_util.tree_map(pad, gb)
            cb = None if cb is None else pad(cb)
            db = jax.tree_util.tree_map(pad, db)
        with progress_hook(on_step):
            out = _run_batch_jit(gen, sp, lossf, jnp.asarray(xb), jnp.asarray(ib, jnp.int32), jnp.asarray(seed),
                                 optimizer=opt, steps=int(steps), restarts=int(restarts),
                                 start_center=start == "center", early_stop=early_stop, init_latents=gb,
                                 record_every=int(record_every) if record_every else None, lane_group=group,
                                 c=None if cb is None else jnp.asarray(cb), degradation=deg,
                                 deg_data=jax.tree_util.tree_map(jnp.asarray, db),
                                 progress_every=progress_interval(steps) if on_step else None)
            out = jax.tree_util.tree_map(np.asarray, out)
        hist = out.pop("history")[:, :m]
        out = jax.tree_util.tree_map(lambda a, m=m: a[:m], out)
        out["history"] = hist
        # quality against the images as the loss sees them (with a degradation: D(G(z*)) vs the masked observation)
        seen = xb[:m] if deg is None else np.asarray(_observed_target(deg, jnp.asarray(xb), db))[:m]
        out["psnr"], out["ssim"] = (np.asarray(q) for q in _quality(out["images" if deg is None else "observed"],
                                                                    seen))
        outs.append(out)
        if on_batch is not None:
            on_batch(min(b0 + bs, n), n)
    cat = lambda *a: np.concatenate(a, axis=0)  # noqa: E731
    res = jax.tree_util.tree_map(cat, *[{k: v for k, v in o.items() if k != "history"} for o in outs])
    history = np.concatenate([o["history"] for o in outs], axis=1)
    return InvertResult(latents=res["latents"], images=res["images"], losses=res["losses"],
                        terms=dict(zip(lossf.names, res["terms"], strict=True)), best_restart=res["best"],
                        restart_losses=res["restart_losses"], history=history, evals=res["evals"],
                        steps_done=res["done"], space=sp, seconds=time.perf_counter() - t0,
                        trajectory=res.get("trajectory"), observed=res.get("observed"), psnr=res["psnr"],
                        ssim=res["ssim"])


_quality = jax.jit(metrics.psnr_ssim_signed)


def _observed_target(deg: Degradation, y: jax.Array, data: Any) -> jax.Array:
    return deg.target(y, None if data is None else jax.tree_util.tree_map(jnp.asarray, data))


def likelihood_loss(loss: Loss, degradation: Degradation) -> Loss:
    """`loss` under the degradation's noise model: with Gaussian noise of std sigma, mse terms weigh
    1 / (2 sigma^2), i.e. the per-pixel negative log-likelihood (constant dropped). Without one: `loss`."""
    sigma = degradation.noise_sigma
    if sigma is None:
        return loss
    if not any(isinstance(t, MSE) for t in loss.terms):
        raise ConfigError(f"degradation={degradation.spec()!r}: the Gaussian noise model's likelihood is the mse "
                          "term: add mse to the loss")
    weights = tuple(w / (2.0 * sigma * sigma) if isinstance(t, MSE) else w
                    for t, w in zip(loss.terms, loss.weights, strict=True))
    return Loss(loss.terms, weights)


def class_vectors(gen: Generator, n: int, *, c: Any = None, class_idx: Any = None) -> np.ndarray | None:
    """The fixed class vector of each of n images, [n, c_dim] float32 (None for unconditional generators),
    from `class_idx` (an int or n ints: one-hot) or `c` ([n, c_dim] or [c_dim], e.g. a soft class vector)."""
    if c is not None and class_idx is not None:
        raise ConfigError("give the class as class_idx or as c, not both")
    if not gen.c_dim:
        if c is not None or class_idx is not None:
            raise ConfigError(f"class_idx / c: the {gen.family} generator is unconditional (c_dim=0)")
        return None
    if c is None and class_idx is None:
        raise ConfigError(f"{gen.family}: class-conditional generator (c_dim={gen.c_dim}): give class_idx "
                          f"(0..{gen.c_dim - 1}) or c")
    if class_idx is not None:
        idx = np.asarray(class_idx)
        if (idx.dtype.kind not in "iu" or idx.ndim > 1 or (idx.ndim == 1 and len(idx) != n) or (idx < 0).any()
                or (idx >= gen.c_dim).any()):
            raise ConfigError(f"class_idx={idx.tolist()}: expected one integer in [0, {gen.c_dim}) or one per "
                              f"image ({n})")
        c = np.eye(gen.c_dim, dtype=np.float32)[np.broadcast_to(idx, (n,))]
    cv = np.asarray(c, np.float32)
    if cv.ndim == 1:
        cv = np.broadcast_to(cv, (n, cv.shape[0]))
    if cv.shape != (n, gen.c_dim) or not np.isfinite(cv).all():
        raise ConfigError(f"c: expected finite [{n}, {gen.c_dim}] or [{gen.c_dim}], got {list(np.shape(c))}")
    return np.ascontiguousarray(cv)


def _check_init(init_latents: Any, space: Space, gen: Generator, n: int, c: np.ndarray | None = None) -> Any:
    """init_latents: the space's latent dict, or a subset of its entries (e.g. codes without noise maps)."""
    want = jax.eval_shape(lambda g, s, cc: s.init(jax.random.PRNGKey(0), g, n, c=cc), gen, space, c)
    if not isinstance(init_latents, dict) or not init_latents or set(init_latents) - set(want):
        got_keys = sorted(init_latents) if isinstance(init_latents, dict) else type(init_latents).__name__
        raise ConfigError(f"init_latents: expected a dict with entries among {sorted(want)}, got {got_keys}")
    want = {k: want[k] for k in init_latents}
    got = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), init_latents)
    want_s = jax.tree_util.tree_map(lambda a: tuple(a.shape), want)
    got_s = jax.tree_util.tree_map(lambda a: tuple(a.shape), got)
    if want_s != got_s:
        raise ConfigError(f"init_latents: expected the {space.name!r} space layout {want_s}, got {got_s}")
    return got


def generator_input(model: Any, space: Space, latents: Any) -> dict[str, np.ndarray]:
    """The generator input (e.g. {"ws": [N, num_ws, w_dim]}) of latents from `invert` (space prepared)."""
    gen = Generator.from_model(model)
    inp = jax.jit(lambda g, s, lat: s.to_input(g, lat))(gen, space, latents)
    return jax.tree_util.tree_map(np.asarray, inp)


class _CallableModule(types.ModuleType):
    """`jaxinv.invert(...)` calls `invert` (the module stays a module: `jaxinv.invert.make_loss`, ...)."""

    def __call__(self, *args: Any, **kwargs: Any) -> InvertResult:
        return invert(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
