"""Gradient-free and hybrid latent search: CMA-ES and BasinCMA (Huh et al. 2020), images x population in one
compiled program, with an Adam baseline on the same objective and evaluation count.

CMA-ES is evosax's `CMA_ES` (maintained, pure JAX: `init/ask/tell` jit, `vmap` and `lax.scan` cleanly, states are
pytrees), `vmap`ped over images. BasinCMA asks CMA for a population, refines every proposal with K Adam steps
inside the same program, and tells CMA the proposals with the losses reached after refinement (the loss of the
proposal's basin, as pix2latent does); the best refined point over all generations is returned, optionally
polished by `final_steps` more Adam steps. Every generation renders images x population as one generator batch.

Search coordinates are normalised: a variable v is `init_v + scale_v * u_v`, CMA starts at u = 0 with step size
`sigma`, and Adam's learning rate is in u units, so variables of different scales (BigGAN's z and class embedding)
share one search. Variables (per image, no batch axis in the search):

    "z"          [z_dim]    DCGAN / BigGAN / StyleGAN z
    "w"          [w_dim]    StyleGAN W (broadcast to all layers)
    "ws"         [num_ws, w_dim]  StyleGAN W+
    "embedding"  [z_dim]    BigGAN class embedding, optimised together with z (Huh et al.)
plus fixed per-image inputs (`fixed`, e.g. the class vector "c") that are not searched.

Evaluation count: one loss evaluation of one candidate = one generator evaluation, with or without its backward
pass (an Adam step evaluates once; a CMA candidate once; the loss after BasinCMA's last Adam step once more).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv.errors import ConfigError

try:  # an optional extra: the rest of jaxinv does not need it
    from evosax.algorithms import CMA_ES
except ImportError as e:
    raise ConfigError(f"jaxinv.cma needs evosax ({e}): pip install 'jaxinv[cma]'") from None
from jaxinv.generators import Generator
from jaxinv.losses import lpips as _lpips

METHODS = ("cma", "basincma", "adam")


@dataclass(frozen=True)
class SearchConfig:
    method: str = "basincma"  # "cma" | "basincma" | "adam"
    generations: int = 20  # CMA generations (adam: ignored, see `steps`)
    popsize: int | None = None  # CMA population (None: 4 + floor(3 ln d), the standard default)
    sigma: float = 1.0  # initial CMA step size, in units of each variable's scale
    adam_steps: int = 5  # BasinCMA: Adam steps per proposal (K)
    lr: float = 0.05  # Adam learning rate (normalised coordinates)
    final_steps: int = 0  # BasinCMA: Adam steps from the best refined point at the end
    steps: int = 100  # adam method: number of steps
    cma_vars: tuple[str, ...] | None = None  # BasinCMA: variables CMA proposes (None: all); the others start
    #                                          from `init` in every generation and are moved by Adam only
    l2_weight: float = 1.0
    lpips_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method={self.method!r}: expected one of {', '.join(METHODS)}")
        if self.generations < 1 or self.steps < 1 or self.adam_steps < 0 or self.final_steps < 0:
            raise ConfigError("generations/steps must be >= 1 and adam_steps/final_steps >= 0")
        if self.popsize is not None and self.popsize < 2:
            raise ConfigError(f"popsize={self.popsize}: CMA needs at least 2 candidates")
        if self.cma_vars is not None:
            object.__setattr__(self, "cma_vars", tuple(self.cma_vars))

    def evaluations(self, popsize: int) -> int:
        """Generator evaluations per image this configuration spends."""
        if self.method == "adam":
            return self.steps + 1
        if self.method == "cma":
            return 1 + self.generations * popsize  # + the start
        return 1 + self.generations * popsize * (self.adam_steps + 1) + self.final_steps + (self.final_steps > 0)


class SearchResult(NamedTuple):
    latents: dict[str, np.ndarray]  # best variables per image, each [N, ...]
    inputs: dict[str, np.ndarray]  # the generator input of the best latents (`Generator.render`'s dict)
    images: np.ndarray  # [N, H, W, C]
    losses: np.ndarray  # [N] loss of the best latents
    initial_losses: np.ndarray  # [N] loss at `init` (CMA methods count it: the start is a candidate)
    history: np.ndarray  # [G or steps, N] best loss so far after each generation (adam: each step)
    evaluations: int  # generator evaluations per image
    popsize: int
    seconds: float


def default_popsize(num_dims: int) -> int:
    return 4 + int(np.floor(3 * np.log(num_dims)))


# ---------------------------------------------------------------------------------------------------------
# Objective


def _to_input(gen: Generator, latent: dict[str, jax.Array], fixed: dict[str, jax.Array]) -> dict[str, Any]:
    """Per-candidate variables (leading batch axis) -> generator input."""
    inp = dict(fixed)
    for k, v in latent.items():
        if k == "w":
            inp["ws"] = jnp.broadcast_to(v[:, None], (v.shape[0], gen.num_ws, v.shape[-1]))
        else:
            inp[k] = v
    return inp


def _loss_fn(gen: Generator, cfg: SearchConfig, lpips_params: Any):
    def loss(latent, fixed, target, feat):
        """One candidate (no batch axis) -> (scalar loss, image)."""
        one = jax.tree_util.tree_map(lambda x: x[None], latent)
        img = gen.render(_to_input(gen, one, jax.tree_util.tree_map(lambda x: x[None], fixed)))
        val = cfg.l2_weight * jnp.mean(jnp.square(img - target[None]))
        if lpips_params is not None and cfg.lpips_weight:
            val = val + cfg.lpips_weight * _lpips.lpips_distance_to(lpips_params, img, feat[None])[0]
        return val, img[0]
    return loss


# ---------------------------------------------------------------------------------------------------------
# The compiled program


def _adam_refine(value, u0, steps: int, lr: float):
    """`steps` Adam steps on u from u0; returns (u, loss at u)."""
    opt = optax.adam(lr)

    def step(carry, _):
        u, s = carry
        g = jax.grad(value)(u)
        upd, s = opt.update(g, s, u)
        return (optax.apply_updates(u, upd), s), None

    if steps:
        (u0, _), _ = jax.lax.scan(step, (u0, opt.init(u0)), None, length=steps)
    return u0, value(u0)


def _run(gen: Generator, cfg: SearchConfig, popsize: int, lpips_params: Any,
         init: dict[str, jax.Array], scales: dict[str, jax.Array], fixed: dict[str, jax.Array], targets: jax.Array,
         keys: jax.Array):
    use_lpips = lpips_params is not None and cfg.lpips_weight > 0
    feats = _lpips.lpips_features(lpips_params, targets) if use_lpips else jnp.zeros((targets.shape[0], 1))
    loss = _loss_fn(gen, cfg, lpips_params if use_lpips else None)
    names = tuple(sorted(init))
    cma_names = names if (cfg.method == "cma" or cfg.cma_vars is None) else tuple(n for n in names
                                                                                 if n in cfg.cma_vars)

    def lane(key, init_i, scale_i, fixed_i, target, feat):
        def latent_of(u):
            return {n: init_i[n] + scale_i[n] * u[n] for n in names}

        def value(u):
            return loss(latent_of(u), fixed_i, target, feat)[0]

        zeros = {n: jnp.zeros_like(init_i[n]) for n in names}
        if cfg.method == "adam":
            opt = optax.adam(cfg.lr)

            def step(carry, _):
                u, s, best_u, best = carry
                v, g = jax.value_and_grad(value)(u)
                better = v < best
                best_u = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), u, best_u)
                best = jnp.minimum(v, best)
                upd, s = opt.update(g, s, u)
                return (optax.apply_updates(u, upd), s, best_u, best), best

            carry0 = (zeros, opt.init(zeros), zeros, jnp.asarray(jnp.inf, jnp.float32))  # step 0 evaluates the start
            (u, _, best_u, best), hist = jax.lax.scan(step, carry0, None, length=cfg.steps)
            v_last = value(u)  # the point after the last update is a candidate too
            better = v_last < best
            best_u = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), u, best_u)
            hist = hist.at[-1].set(jnp.minimum(best, v_last))
            return best_u, hist

        template = {n: zeros[n] for n in cma_names}
        es = CMA_ES(population_size=popsize, solution=template)
        es_params = es.default_params.replace(std_init=jnp.asarray(cfg.sigma, jnp.float32))
        k_init, k_loop = jax.random.split(key)
        state0 = es.init(k_init, template, es_params)

        def generation(carry, k):
            state, best_u, best = carry
            k_ask, k_tell = jax.random.split(k)
            pop, state = es.ask(k_ask, state, es_params)  # {n: [P, ...]}
            start = {n: (pop[n] if n in cma_names else jnp.broadcast_to(zeros[n], (popsize,) + zeros[n].shape))
                     for n in names}
            if cfg.method == "cma":
                refined, fit = start, jax.vmap(value)(start)
            else:
                refined, fit = jax.vmap(lambda u: _adam_refine(value, u, cfg.adam_steps, cfg.lr))(start)
            fit = jnp.where(jnp.isfinite(fit), fit, jnp.inf)
            state, _ = es.tell(k_tell, pop, fit, state, es_params)
            i = jnp.argmin(fit)
            better = fit[i] < best
            best_u = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a[i], b), refined, best_u)
            best = jnp.minimum(best, fit[i])
            return (state, best_u, best), best

        carry0 = (state0, zeros, value(zeros))  # the start is a candidate: the result is never worse
        (_, best_u, best), hist = jax.lax.scan(generation, carry0, jax.random.split(k_loop, cfg.generations))
        if cfg.method == "basincma" and cfg.final_steps:
            u, v = _adam_refine(value, best_u, cfg.final_steps, cfg.lr)
            better = v < best
            best_u = jax.tree_util.tree_map(lambda a, b: jnp.where(better, a, b), u, best_u)
            hist = hist.at[-1].set(jnp.minimum(best, v))
        return best_u, hist

    best_u, hist = jax.vmap(lane)(keys, init, scales, fixed, targets, feats)
    latents = {n: init[n] + scales[n].reshape((-1,) + (1,) * (init[n].ndim - 1)) * best_u[n] for n in names}
    final, imgs = jax.vmap(loss)(latents, fixed, targets, feats)
    start, _ = jax.vmap(loss)(init, fixed, targets, feats)
    return latents, final, imgs, hist.T, start


_run_jit = jax.jit(_run, static_argnames=("cfg", "popsize"))


# ---------------------------------------------------------------------------------------------------------
# Public API


def search(model: Any, targets: Any, init: dict[str, Any], config: SearchConfig | None = None, *,
           scales: dict[str, Any] | None = None, fixed: dict[str, Any] | None = None, lpips_params: Any = None,
           truncation_psi: float | None = None, seed: int = 0, **options: Any) -> SearchResult:
    """Search latents for `targets` ([N, R, R, C] in [-1, 1]) with CMA-ES, BasinCMA or Adam.

    init: starting variables per image, each [N, ...] (see the module docstring for names). scales: per
    variable a float or [N] array (default 1). fixed: per-image generator inputs not searched (e.g. "c",
    the class vector). config / **options: `SearchConfig` fields. truncation_psi: the generator's (static)
    truncation (BigGAN: its BN statistics; default the Generator's own, 1.0 for a Model).
    """
    cfg = config or SearchConfig(**options)
    if config is not None and options:
        cfg = SearchConfig(**{**cfg.__dict__, **options})
    if cfg.lpips_weight > 0 and lpips_params is None:
        raise ConfigError("lpips_weight > 0 needs lpips_params (jaxinv.losses.load_lpips / procedural_lpips)")
    gen = Generator.from_model(model, truncation_psi)
    gen = gen.with_params(jax.tree_util.tree_map(jnp.asarray, gen.params))
    x = np.asarray(targets, np.float32)
    if x.ndim == 3:
        x = x[None]
    n = len(x)
    res = gen.img_resolution
    if x.ndim != 4 or x.shape[1:3] != (res, res):
        raise ConfigError(f"targets: expected [N, {res}, {res}, C] in [-1, 1], got {list(x.shape)}")
    if not init:
        raise ConfigError("init: no variables to search (e.g. {'z': zeros [N, z_dim]})")
    init_ = {k: jnp.asarray(v, jnp.float32) for k, v in init.items()}
    fixed_ = {k: jnp.asarray(v, jnp.float32) for k, v in (fixed or {}).items()}
    for k, v in {**init_, **fixed_}.items():
        if v.shape[0] != n:
            raise ConfigError(f"{k}: {v.shape[0]} rows for {n} target images")
    if cfg.cma_vars is not None and not set(cfg.cma_vars) <= set(init_):
        raise ConfigError(f"cma_vars={list(cfg.cma_vars)}: not among the variables {sorted(init_)}")
    scales = scales or {}
    scales_ = {k: jnp.broadcast_to(jnp.asarray(scales.get(k, 1.0), jnp.float32), (n,)) for k in init_}
    cma_names = sorted(init_) if (cfg.method == "cma" or cfg.cma_vars is None) else list(cfg.cma_vars)
    dims = int(sum(np.prod(init_[k].shape[1:]) for k in cma_names))
    popsize = int(cfg.popsize or default_popsize(dims))
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(n))
    t0 = time.perf_counter()
    latents, final, imgs, hist, start = _run_jit(gen, cfg, popsize, lpips_params, init_, scales_, fixed_,
                                                 jnp.asarray(x), keys)
    latents = {k: np.asarray(v) for k, v in latents.items()}
    inputs = jax.tree_util.tree_map(np.asarray, _to_input(gen, {k: jnp.asarray(v) for k, v in latents.items()},
                                                          fixed_))
    out = SearchResult(latents=latents, inputs=inputs, images=np.asarray(imgs), losses=np.asarray(final),
                       initial_losses=np.asarray(start),
                       history=np.asarray(hist), evaluations=cfg.evaluations(popsize), popsize=popsize,
                       seconds=time.perf_counter() - t0)
    return out


def default_init(model: Any, n: int, *, space: str = "z", class_labels: Sequence[int] | None = None,
                 truncation_psi: float = 1.0) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, np.ndarray]]:
    """(init, scales, fixed) for a family's usual search space.

    dcgan: z = 0, scale 1. biggan: z = 0 with scale `truncation_psi` (the official sampler multiplies by it) and
    the class embedding (Huh et al. optimise it with z): the embedding of `class_labels` if given, else the
    mean embedding; its scale is the std of the embedding table. StyleGAN families: space "w" (w_avg, scale
    = std of mapped w) or "z" (z = 0, scale 1); conditional models need `class_labels`.
    """
    gen = Generator.from_model(model)
    fam = gen.family
    if fam == "dcgan":
        return {"z": np.zeros((n, gen.z_dim), np.float32)}, {"z": 1.0}, {}
    if fam == "biggan":
        from jaxinv.models import biggan

        table = np.asarray(gen.params["embeddings"]["weight"], np.float32)  # [num_classes, z_dim]
        if class_labels is not None:
            emb = np.asarray(gen.embed(biggan.one_hot(np.asarray(class_labels), table.shape[0])))
        else:
            emb = np.repeat(table.mean(0, keepdims=True), n, axis=0)
        init = {"z": np.zeros((n, gen.z_dim), np.float32), "embedding": emb.astype(np.float32)}
        return init, {"z": float(truncation_psi), "embedding": float(table.std())}, {}
    if not gen.has_w:
        raise ConfigError(f"{fam}: no default search space")
    fixed = {}
    c_dim = gen.c_dim
    if c_dim:
        if class_labels is None:
            raise ConfigError(f"{fam}: conditional generator (c_dim={c_dim}) needs class_labels")
        fixed["c"] = np.eye(c_dim, dtype=np.float32)[np.asarray(class_labels)]
    if space == "z":
        return {"z": np.zeros((n, gen.z_dim), np.float32)}, {"z": 1.0}, fixed
    if space not in ("w", "w+"):
        raise ConfigError(f"space={space!r}: CMA search supports z, w and w+")
    z = jax.random.normal(jax.random.PRNGKey(123), (2000, gen.z_dim), jnp.float32)
    c = None
    if c_dim:
        c = jnp.asarray(np.eye(c_dim, dtype=np.float32)[np.arange(2000) % c_dim])
    w = np.asarray(_first_w(gen, z, c))
    center = w.mean(0)
    scale = float(np.sqrt(np.mean(np.sum(np.square(w - center), axis=1)) / w.shape[1]))
    if space == "w":
        return {"w": np.repeat(center[None], n, axis=0)}, {"w": scale}, fixed
    return {"ws": np.broadcast_to(center, (n, gen.num_ws, center.size)).copy()}, {"ws": scale}, fixed


@jax.jit
def _first_w(gen: Generator, z: jax.Array, c: jax.Array | None) -> jax.Array:
    return gen.mapping(z, c)[:, 0]
