"""Latent spaces as parameterisations of the generator input.

A space is a frozen dataclass: its options are static (hashable) fields, and the model statistics it needs
(w_avg, w_std, P-space PCA, ...) are array fields filled once by `prepare(gen)`. Spaces are registered as
pytrees (statistics = leaves), so a prepared space can be passed into jitted functions. Protocol:

    prepare(gen) -> Space                      eager, once per model: statistics (P_N: cached on disk)
    init(key, gen, n, center=False, c=None)    latent pytree, leading axis n; center = the deterministic start
                                               (official projector: w_avg); free noise maps always random;
                                               c [n, c_dim]: the fixed class of conditional generators
    to_input(gen, latent) -> dict              generator input for `Generator.render` ({"z"|"ws"|"styles"})
    prior(latent) -> [n]                       regulariser: squared Mahalanobis distance to the model's latent
                                               distribution per dimension (~1 for typical samples)
    perturb(latent, key, scale) -> latent      Adam's latent noise: scale x the space's root total variance
                                               per vector (the official w_std for W), on every dimension
    project(latent) -> latent                  after each Adam step (noise renormalisation, hypersphere)
    canonical(latent) -> latent                the returned latent's own form, same generator input (truncated
                                               normal: reflected into the support)
    noise_maps(latent) -> dict | None          the free noise maps (for the noise regulariser)

Spaces: Z (optional PULSE hypersphere), W (one w broadcast to num_ws), W+ (one w per layer), S (per-layer
affine outputs), P (x with w = lrelu_0.2(x) * sqrt(2), i.e. the mapping net's last activation undone: a
leaky ReLU of slope 5 applied to w / sqrt(2)), P_N (PCA-whitened P). W-type spaces optionally free the
per-layer noise maps (official projector: randn init, renormalised after each step, noise regulariser).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.errors import ConfigError
from jaxinv.generators import Generator

Latent = dict[str, Any]


def reflect_into(u: jax.Array, b: float) -> jax.Array:
    """u folded into [-b, b] by reflection at the bounds (a triangle wave; exactly u inside). Unlike a clip, it
    leaves no dead coordinates: an unconstrained solver (L-BFGS) that steps past a bound still gets a gradient
    (measured on the golden BigGAN: L-BFGS left 6-9 of 128 coordinates stuck beyond a clip, 0.4-0.6 dB lost)."""
    folded = b - jnp.abs(jnp.mod(u + b, 4 * b) - 2 * b)
    return jnp.where(jnp.abs(u) <= b, u, folded)


def truncated_z(gen: Generator, u: jax.Array) -> jax.Array:
    """The generator's z of a latent sample u: truncation_psi * reflect_into(u, b) for truncated-normal
    generators (`Generator.z_bound` = b: BigGAN), u itself otherwise."""
    b = gen.z_bound
    return u if b is None else gen.truncation_psi * reflect_into(u, b)


def sample_z(key: jax.Array, shape: tuple[int, ...], b: float | None) -> jax.Array:
    """Latent samples u of the Z spaces: N(0, I), or truncnorm(-b, b) for truncated-normal generators
    (`Generator.z_bound` = b)."""
    if b is None:
        return jax.random.normal(key, shape, jnp.float32)
    return jax.random.truncated_normal(key, -b, b, shape, jnp.float32)


def perturb_z(z: jax.Array, key: jax.Array, scale: float | jax.Array) -> jax.Array:
    """Restart noise of the Z spaces: ``scale * sqrt(z_dim)`` times N(0, I)."""
    return z + (scale * np.sqrt(z.shape[-1])) * jax.random.normal(key, z.shape)


def _register(cls: type, data: tuple[str, ...]) -> type:
    fields = [f.name for f in dataclasses.fields(cls)]
    jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=[f for f in fields if f not in data])
    return cls


def _per_item_mean(x: jax.Array) -> jax.Array:
    return jnp.mean(x, axis=tuple(range(1, x.ndim)))


# ---------------------------------------------------------------------------------------------------------
# Noise maps (official projector: randn init, renormalised to zero mean / unit variance after each step)


def init_noise_maps(key: jax.Array, gen: Generator, n: int) -> dict[str, jax.Array]:
    layers = gen.noise_layers
    keys = jax.random.split(key, max(len(layers), 1))[:len(layers)]
    return {name: jax.random.normal(k, (n, res, res), jnp.float32)
            for k, (name, res) in zip(keys, layers, strict=True)}


def renormalize_noise(noise: dict[str, jax.Array]) -> dict[str, jax.Array]:
    out = {}
    for name, m in noise.items():
        m = m - jnp.mean(m, axis=(1, 2), keepdims=True)
        out[name] = m * jax.lax.rsqrt(jnp.mean(jnp.square(m), axis=(1, 2), keepdims=True))
    return out


# ---------------------------------------------------------------------------------------------------------
# Model statistics


def _z_samples(gen: Generator, num_samples: int, seed: int) -> np.ndarray:
    # The official projector draws np.random.RandomState(123).randn(w_avg_samples, z_dim).
    return np.random.RandomState(seed).randn(num_samples, gen.z_dim)


@jax.jit
def _map_first_w(gen: Generator, z: jax.Array) -> jax.Array:
    return gen.mapping(z)[:, 0]


def mapped_w_samples(gen: Generator, num_samples: int = 10000, seed: int = 123, chunk: int = 2000) -> np.ndarray:
    """w = mapping(z) for z = RandomState(seed).randn(num_samples, z_dim); [num_samples, w_dim] float32."""
    if gen.c_dim:
        raise ConfigError(f"{gen.family}: conditional generator (c_dim={gen.c_dim}): W-space statistics need "
                          "class labels, not supported yet")
    z = _z_samples(gen, num_samples, seed).astype(np.float32)
    pad = (-len(z)) % chunk if len(z) > chunk else 0
    zp = np.concatenate([z, np.zeros((pad, z.shape[1]), np.float32)]) if pad else z
    size = min(chunk, len(zp))
    out = [np.asarray(_map_first_w(gen, jnp.asarray(zp[i:i + size]))) for i in range(0, len(zp), size)]
    return np.concatenate(out)[:num_samples].astype(np.float32)


def w_statistics(gen: Generator, num_samples: int = 10000, seed: int = 123) -> tuple[np.ndarray, np.float32]:
    """(w_avg [w_dim], w_std) as the official projector computes them from mapped samples."""
    w = mapped_w_samples(gen, num_samples, seed)
    w_avg = w.mean(axis=0, keepdims=True)
    w_std = np.float32((np.sum((w - w_avg) ** 2) / num_samples) ** 0.5)
    return w_avg[0], w_std


def p_from_w(gen: Generator, w: jax.Array) -> jax.Array:
    """Undo the mapping network's last activation: lrelu(slope 0.2) * gain -> leaky ReLU of slope 5 / gain."""
    slope, gain = gen.mapping_output_activation
    y = w / gain
    return jnp.where(y >= 0, y, y / slope)


def w_from_p(gen: Generator, p: jax.Array) -> jax.Array:
    slope, gain = gen.mapping_output_activation
    return jnp.where(p >= 0, p, p * slope) * gain


def cache_dir() -> Path:
    """On-disk cache for per-model statistics: $JAXINV_CACHE_DIR, else ~/.cache/jaxinv."""
    env = os.environ.get("JAXINV_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "jaxinv"


def p_statistics(gen: Generator, num_samples: int = 10000, seed: int = 123,
                 cache: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """PCA of P = p_from_w(mapping(z)): {"mean" [w_dim], "basis" [w_dim, w_dim] (columns = components),
    "scale" [w_dim] (sqrt eigenvalues)}. Computed once per model and cached on disk under
    `<cache>/pn_stats/<model fingerprint>-<num_samples>-<seed>.npz`."""
    root = Path(cache) if cache is not None else cache_dir()
    path = root / "pn_stats" / f"{gen.fingerprint()[:32]}-{num_samples}-{seed}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as d:
            return {k: d[k] for k in ("mean", "basis", "scale")}
    w = mapped_w_samples(gen, num_samples, seed)
    p = np.asarray(p_from_w(gen, jnp.asarray(w)), np.float64)
    mean = p.mean(axis=0)
    cov = np.cov(p - mean, rowvar=False)
    eigval, basis = np.linalg.eigh(cov)
    scale = np.sqrt(np.maximum(eigval, 1e-12 * max(float(eigval.max()), 1e-30)))
    stats = {"mean": mean.astype(np.float32), "basis": basis.astype(np.float32), "scale": scale.astype(np.float32)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, **stats)
    tmp.replace(path)
    return stats


# ---------------------------------------------------------------------------------------------------------
# Spaces


@dataclass(frozen=True)
class Space:
    """Base class: defaults for the optional hooks."""

    name: ClassVar[str] = "?"

    def prepare(self, gen: Generator) -> Space:
        return self

    def init(self, key: jax.Array, gen: Generator, n: int, center: bool = False, c: Any = None) -> Latent:
        raise NotImplementedError

    def to_input(self, gen: Generator, latent: Latent) -> dict[str, Any]:
        raise NotImplementedError

    def render(self, gen: Generator, latent: Latent, c: Any = None) -> jax.Array:
        """The image of a latent (c: the fixed class of conditional generators). Spaces that run the generator
        in pieces (`jaxinv.mgan`) override it."""
        inp = self.to_input(gen, latent)
        return gen.render(inp if c is None else {**inp, "c": c})

    def prior(self, latent: Latent) -> jax.Array:
        raise NotImplementedError

    def perturb(self, latent: Latent, key: jax.Array, scale: jax.Array) -> Latent:
        return latent

    def project(self, latent: Latent) -> Latent:
        return latent

    def canonical(self, latent: Latent) -> Latent:
        return latent

    def noise_maps(self, latent: Latent) -> dict[str, jax.Array] | None:
        return latent.get("noise")

    def from_ws(self, gen: Generator, ws: jax.Array) -> Latent:
        """The code part of the latent whose generator input is `ws` [n, num_ws, w_dim] (e.g. an encoder's W+
        codes): exact for w+, s, p and pn; W takes the layer mean. Free noise maps are not included."""
        raise ConfigError(f"space {self.name!r}: cannot start from W+ codes (use w+, w, s, p or pn)")

    def _check_prepared(self, *fields: str) -> None:
        for f in fields:
            if getattr(self, f) is None:
                raise ConfigError(f"space {self.name!r}: call space.prepare(gen) first ({f} is not computed)")


@dataclass(frozen=True)
class ZSpace(Space):
    """z ~ N(0, I). `sphere=True`: z is used at radius sqrt(z_dim) (PULSE's hypersphere) and renormalised.

    Truncated-normal generators (BigGAN, `Generator.z_bound` = b): the latent is the unscaled sample
    u ~ truncnorm(-b, b), the generator takes z = truncation_psi * reflect_into(u, b) (the official sampler's
    `truncnorm(-2, 2) * truncation`); Adam's projection reflects u back into the support after every step, the
    reflection in `to_input` keeps any solver's z inside it, and results are returned reflected (`canonical`).
    `embedding=True` (BigGAN): the class embedding is
    optimised with z (Huh et al. 2020), starting at the embedding of the fixed class c."""

    name: ClassVar[str] = "z"
    sphere: bool = False
    embedding: bool = False  # BigGAN: also optimise the class embedding [z_dim]
    z_bound: float | None = None  # filled by prepare: the generator's truncated-normal support (None: normal)
    emb_mean: Any = None  # [z_dim] mean of the embedding table (prior centre); filled by prepare
    emb_std: Any = None  # scalar: std of the table's entries (prior and perturbation unit)

    def prepare(self, gen):
        out = dataclasses.replace(self, z_bound=gen.z_bound)
        if self.embedding:
            table = jnp.asarray(gen.params["embeddings"]["weight"], jnp.float32)  # [num_classes, z_dim]
            out = dataclasses.replace(out, emb_mean=jnp.mean(table, axis=0), emb_std=jnp.std(table))
        return out

    def init(self, key, gen, n, center=False, c=None):
        if center and not self.sphere:
            z = jnp.zeros((n, gen.z_dim), jnp.float32)
        else:
            z = sample_z(key, (n, gen.z_dim), gen.z_bound)
        if not self.embedding:
            return {"z": z}
        if c is None:
            raise ConfigError("space 'z' with embedding=True: the embedding starts at the class's, give the class "
                              "(class_idx or c)")
        return {"z": z, "embedding": gen.embed(c)}

    def _on_sphere(self, z):
        return z * jnp.sqrt(z.shape[-1] / jnp.sum(jnp.square(z), axis=-1, keepdims=True))

    def to_input(self, gen, latent):
        z = self._on_sphere(latent["z"]) if self.sphere else truncated_z(gen, latent["z"])
        inp = {"z": z}
        if self.embedding:
            inp["embedding"] = latent["embedding"]
        return inp

    def prior(self, latent):
        if not self.embedding:
            return _per_item_mean(jnp.square(latent["z"]))
        e = (latent["embedding"] - self.emb_mean) / self.emb_std
        return jnp.mean(jnp.square(jnp.concatenate([latent["z"], e], axis=-1)), axis=-1)

    def perturb(self, latent, key, scale):
        kz, ke = jax.random.split(key) if self.embedding else (key, None)
        out = {**latent, "z": perturb_z(latent["z"], kz, scale)}
        if self.embedding:
            e = latent["embedding"]
            out["embedding"] = e + (scale * self.emb_std * np.sqrt(e.shape[-1])) * jax.random.normal(ke, e.shape)
        return out

    def project(self, latent):
        if self.sphere:
            return {**latent, "z": self._on_sphere(latent["z"])}
        return self.canonical(latent)

    def canonical(self, latent):
        if self.z_bound is not None and not self.sphere:
            return {**latent, "z": reflect_into(latent["z"], self.z_bound)}
        return latent


@dataclass(frozen=True)
class _WFamily(Space):
    """Shared parts of the StyleGAN spaces: optional free noise maps, statistics from mapped samples."""

    noise: bool = False  # optimise the per-layer noise maps too (official projector: True)
    num_samples: int = 10000  # mapped samples for the statistics (official w_avg_samples)
    seed: int = 123  # RandomState seed of those samples (official: 123)

    def _with_noise(self, key, gen, n, latent):
        if self.noise:
            latent["noise"] = init_noise_maps(key, gen, n)
        return latent

    def _input(self, latent, inp):
        if self.noise:
            inp["noise"] = latent["noise"]
        return inp

    def project(self, latent):
        if self.noise:
            return {**latent, "noise": renormalize_noise(latent["noise"])}
        return latent

    def _mapped(self, key, gen, n, c=None):
        z = jax.random.normal(key, (n, gen.z_dim), jnp.float32)
        return gen.mapping(z, c)[:, 0]


@dataclass(frozen=True)
class WSpace(_WFamily):
    """One w per image, broadcast to all num_ws layers (the official projector's space)."""

    name: ClassVar[str] = "w"
    per_layer: ClassVar[bool] = False
    w_avg: Any = None  # [w_dim]
    w_std: Any = None  # scalar

    def prepare(self, gen):
        w_avg, w_std = w_statistics(gen, self.num_samples, self.seed)
        return dataclasses.replace(self, w_avg=jnp.asarray(w_avg), w_std=jnp.asarray(w_std))

    def init(self, key, gen, n, center=False, c=None):
        self._check_prepared("w_avg")
        kw, kn = jax.random.split(key)
        w = jnp.broadcast_to(self.w_avg, (n, gen.w_dim)) if center else self._mapped(kw, gen, n, c)
        if self.per_layer:
            w = jnp.broadcast_to(w[:, None], (n, gen.num_ws, gen.w_dim))
        return self._with_noise(kn, gen, n, {"w": w})

    def to_input(self, gen, latent):
        w = latent["w"]
        ws = w if self.per_layer else jnp.broadcast_to(w[:, None], (w.shape[0], gen.num_ws, w.shape[-1]))
        return self._input(latent, {"ws": ws})

    def prior(self, latent):
        d2 = jnp.sum(jnp.square(latent["w"] - self.w_avg), axis=-1) / jnp.square(self.w_std)
        return d2 if d2.ndim == 1 else jnp.mean(d2, axis=1)

    def perturb(self, latent, key, scale):
        return {**latent, "w": latent["w"] + (scale * self.w_std) * jax.random.normal(key, latent["w"].shape)}

    def from_ws(self, gen, ws):
        # W keeps one w per image: the layer mean is the closest single code (in L2) to the W+ codes.
        return {"w": ws if self.per_layer else jnp.mean(ws, axis=1)}


@dataclass(frozen=True)
class WPlusSpace(WSpace):
    """One w per layer: [num_ws, w_dim] per image."""

    name: ClassVar[str] = "w+"
    per_layer: ClassVar[bool] = True


@dataclass(frozen=True)
class SSpace(_WFamily):
    """Style space: every layer's affine output, the synthesis run from styles."""

    name: ClassVar[str] = "s"
    s_mean: Any = None  # {layer: [C]}
    s_std: Any = None  # {layer: scalar}

    def prepare(self, gen):
        w = jnp.asarray(mapped_w_samples(gen, self.num_samples, self.seed))
        ws = jnp.broadcast_to(w[:, None], (w.shape[0], gen.num_ws, gen.w_dim))
        s = jax.jit(lambda g, x: g.styles(x))(gen, ws)
        mean = {k: jnp.mean(v, axis=0) for k, v in s.items()}
        std = {k: jnp.sqrt(jnp.mean(jnp.square(v - mean[k]))) for k, v in s.items()}
        return dataclasses.replace(self, s_mean=mean, s_std=std)

    def init(self, key, gen, n, center=False, c=None):
        self._check_prepared("s_mean")
        kw, kn = jax.random.split(key)
        if center:
            s = {k: jnp.broadcast_to(v, (n,) + v.shape) for k, v in self.s_mean.items()}
        else:
            w = self._mapped(kw, gen, n, c)
            s = gen.styles(jnp.broadcast_to(w[:, None], (n, gen.num_ws, gen.w_dim)))
        return self._with_noise(kn, gen, n, {"s": s})

    def to_input(self, gen, latent):
        return self._input(latent, {"styles": latent["s"]})

    def from_ws(self, gen, ws):
        return {"s": gen.styles(ws)}

    def prior(self, latent):
        terms = [_per_item_mean(jnp.square((v - self.s_mean[k]) / self.s_std[k])) for k, v in latent["s"].items()]
        return sum(terms) / len(terms)

    def perturb(self, latent, key, scale):
        keys = jax.random.split(key, len(latent["s"]))
        s = {k: v + (scale * self.s_std[k] * np.sqrt(v.shape[-1])) * jax.random.normal(kk, v.shape)
             for kk, (k, v) in zip(keys, sorted(latent["s"].items()), strict=True)}
        return {**latent, "s": s}


@dataclass(frozen=True)
class PSpace(_WFamily):
    """P: x with w = lrelu_0.2(x) * sqrt(2) (the mapping net's last pre-activation). `per_layer` (default,
    as P+ in Zhu et al. 2020) gives one x per layer, else one x broadcast."""

    name: ClassVar[str] = "p"
    per_layer: bool = True
    cache: str | None = None  # statistics cache root (None: $JAXINV_CACHE_DIR or ~/.cache/jaxinv)
    p_mean: Any = None  # [w_dim]
    p_basis: Any = None  # [w_dim, w_dim], columns are principal directions
    p_scale: Any = None  # [w_dim], sqrt of the eigenvalues

    def prepare(self, gen):
        st = p_statistics(gen, self.num_samples, self.seed, self.cache)
        return dataclasses.replace(self, p_mean=jnp.asarray(st["mean"]), p_basis=jnp.asarray(st["basis"]),
                                   p_scale=jnp.asarray(st["scale"]))

    def _shape(self, gen, n):
        return (n, gen.num_ws, gen.w_dim) if self.per_layer else (n, gen.w_dim)

    def _ws(self, gen, p):
        w = w_from_p(gen, p)
        return w if self.per_layer else jnp.broadcast_to(w[:, None], (w.shape[0], gen.num_ws, w.shape[-1]))

    def whiten(self, p: jax.Array) -> jax.Array:
        return ((p - self.p_mean) @ self.p_basis) / self.p_scale

    def unwhiten(self, v: jax.Array) -> jax.Array:
        return (v * self.p_scale) @ self.p_basis.T + self.p_mean

    def _start_p(self, key, gen, n, center, c=None):
        self._check_prepared("p_mean")
        if center:
            return jnp.broadcast_to(self.p_mean, self._shape(gen, n))
        p = p_from_w(gen, self._mapped(key, gen, n, c))
        return jnp.broadcast_to(p[:, None], self._shape(gen, n)) if self.per_layer else p

    def init(self, key, gen, n, center=False, c=None):
        kw, kn = jax.random.split(key)
        return self._with_noise(kn, gen, n, {"p": self._start_p(kw, gen, n, center, c)})

    def to_input(self, gen, latent):
        return self._input(latent, {"ws": self._ws(gen, latent["p"])})

    def from_ws(self, gen, ws):
        p = p_from_w(gen, ws if self.per_layer else jnp.mean(ws, axis=1))
        return {"p": p}

    def prior(self, latent):
        return _per_item_mean(jnp.square(self.whiten(latent["p"])))

    def perturb(self, latent, key, scale):
        spread = jnp.sqrt(jnp.sum(jnp.square(self.p_scale)))
        return {**latent, "p": latent["p"] + (scale * spread) * jax.random.normal(key, latent["p"].shape)}


@dataclass(frozen=True)
class PNSpace(PSpace):
    """P_N: PCA-whitened P, v = diag(1/sqrt(lambda)) V^T (p - mean); the prior is N(0, I) on v."""

    name: ClassVar[str] = "pn"

    def init(self, key, gen, n, center=False, c=None):
        kw, kn = jax.random.split(key)
        v = jnp.zeros(self._shape(gen, n)) if center else self.whiten(self._start_p(kw, gen, n, False, c))
        return self._with_noise(kn, gen, n, {"v": v})

    def to_input(self, gen, latent):
        return self._input(latent, {"ws": self._ws(gen, self.unwhiten(latent["v"]))})

    def from_ws(self, gen, ws):
        return {"v": self.whiten(super().from_ws(gen, ws)["p"])}

    def prior(self, latent):
        return _per_item_mean(jnp.square(latent["v"]))

    def perturb(self, latent, key, scale):
        v = latent["v"]
        return {**latent, "v": v + (scale * np.sqrt(v.shape[-1])) * jax.random.normal(key, v.shape)}


_register(ZSpace, ("emb_mean", "emb_std"))
_register(WSpace, ("w_avg", "w_std"))
_register(WPlusSpace, ("w_avg", "w_std"))
_register(SSpace, ("s_mean", "s_std"))
_register(PSpace, ("p_mean", "p_basis", "p_scale"))
_register(PNSpace, ("p_mean", "p_basis", "p_scale"))

SPACES: dict[str, type[Space]] = {"z": ZSpace, "w": WSpace, "w+": WPlusSpace, "s": SSpace, "p": PSpace,
                                  "pn": PNSpace}


def make_space(space: str | Space, **options: Any) -> Space:
    """A space from its name (z, w, w+, s, p, pn) and options (e.g. noise=True, sphere=True); `mgan:N@L` is
    read one floor up (`jaxinv.invert.space_from_spec`)."""
    if isinstance(space, Space):
        cls, key = type(space), space.name
    else:
        key = str(space).lower().replace("_", "").replace("plus", "+")
        if key not in SPACES:
            raise ConfigError(f"space={space!r}: unknown latent space (choose from {', '.join(SPACES)})")
        cls = SPACES[key]
    bad = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
    if bad:
        raise ConfigError(f"space {key!r}: unknown option(s) {bad}")
    if isinstance(space, Space):
        return dataclasses.replace(space, **options) if options else space
    return cls(**options)


def check_space(space: Space, gen: Generator) -> None:
    """One-line ConfigError when a space does not apply to a generator."""
    if hasattr(space, "check"):  # spaces with their own generator requirements (mgan)
        space.check(gen)
        return
    if not isinstance(space, ZSpace) and not gen.has_w:
        raise ConfigError(f"space={space.name!r}: the {gen.family} generator has only a Z space")
    if isinstance(space, ZSpace) and space.embedding and gen.family != "biggan":
        raise ConfigError(f"space 'z' with embedding=True: the {gen.family} generator has no class embedding "
                          "(BigGAN only)")
    if isinstance(space, ZSpace) and space.sphere and gen.z_bound is not None:
        raise ConfigError(f"space 'z' with sphere=True: the {gen.family} generator's z is truncated-normal, "
                          "not on a hypersphere")
    if getattr(space, "noise", False) and not gen.noise_layers:
        raise ConfigError(f"space {space.name!r} with noise=True: the {gen.family} generator has no noise inputs")
