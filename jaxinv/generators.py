"""One generator interface for every method (invert, spaces, encode, jobs, cma, pti, edit).

`Generator` wraps a `jaxinv.models.Model` (family, static cfg, params) with the official API's names:
`z_dim`, `c_dim`, `num_ws`, `w_dim`, `w_avg`, `mapping(z, c, truncation_psi)`, `styles(ws)`,
`synthesis(ws | styles, noise=...)`, `__call__(z, c)`, the noise layers, and `render(inp)` which runs the
generator from a generator-input dict:

    {"z": [B, z_dim]}                      DCGAN; StyleGAN families (mapping at `truncation_psi`, then synthesis)
    {"z", "c": [B, c_dim]}                 class-conditional StyleGAN2/3; BigGAN (c = the (soft) class vector)
    {"z", "embedding": [B, z_dim]}         BigGAN with its class embedding given directly (Huh et al. optimise it)
    {"ws": [B, num_ws, w_dim]}             W / W+ / P spaces
    {"styles": {layer: [B, C]}}            S space
    optional "noise": {layer: [B, H, W]}   free noise maps (replace the stored noise_const)

`truncation_psi` is static: the StyleGAN truncation applied when rendering from z, and BigGAN's truncation
(it selects BN statistics, and z was sampled as truncnorm(-2, 2) * truncation_psi, see `z_bound`).

It is a pytree (params are leaves; family, cfg and truncation_psi static), so it can be passed into jitted
functions. Methods that run the generator with other weights (PTI's tuned params) use `with_params(p)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.errors import ConfigError

# Families whose module follows the StyleGAN2 API of the conventions (mapping / styles / synthesis).
W_FAMILIES = ("stylegan2", "stylegan3", "rosinality", "stylegan1")
FAMILIES = (*W_FAMILIES, "dcgan", "pggan", "biggan")
# The official BigGAN samples z = truncnorm(-2, 2) * truncation (`truncated_noise_sample`).
_BIGGAN_Z_BOUND = 2.0
# Mapped samples for the W centre of checkpoints that store none (rosinality without latent_avg).
_W_CENTER_SAMPLES = 2000


@dataclass(frozen=True)
class Generator:
    family: str
    cfg: Any  # the family's frozen Config (hashable, static under jit)
    params: Any
    truncation_psi: float = 1.0

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"family {self.family!r}: the generator interface supports {', '.join(FAMILIES)}")
        psi = self.truncation_psi
        if isinstance(psi, bool) or not isinstance(psi, int | float | np.floating):
            raise ConfigError(f"truncation_psi must be a static Python float, got {type(psi).__name__}")
        object.__setattr__(self, "truncation_psi", float(psi))
        if self.family == "biggan" and not 0.0 < self.truncation_psi <= 1.0:
            raise ConfigError(f"truncation_psi={self.truncation_psi}: BigGAN needs 0 < truncation_psi <= 1")

    @classmethod
    def from_model(cls, model: Any, truncation_psi: float | None = None) -> Generator:
        """From a `jaxinv.models.Model` (or anything with family/cfg/params), or a Generator (whose
        truncation_psi is kept unless one is given)."""
        if isinstance(model, Generator):
            return model if truncation_psi is None else dataclasses.replace(model, truncation_psi=truncation_psi)
        for attr in ("family", "cfg", "params"):
            if not hasattr(model, attr):
                raise ConfigError(f"model: expected a jaxinv.models.Model (family, cfg, params), got "
                                  f"{type(model).__name__}")
        return cls(model.family, model.cfg, model.params, 1.0 if truncation_psi is None else truncation_psi)

    def with_params(self, params: Any) -> Generator:
        """The same generator with other weights (e.g. PTI's base + delta, traced inside a jitted program)."""
        return dataclasses.replace(self, params=params)

    @property
    def module(self) -> ModuleType:
        from jaxinv.models import family_module

        return family_module(self.family)

    # ---- static facts -------------------------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        return int(self.cfg.z_dim)

    @property
    def c_dim(self) -> int:
        """Length of the class vector c (BigGAN: num_classes; 0 for unconditional generators)."""
        if self.family == "biggan":
            return int(self.cfg.num_classes)
        return int(getattr(self.cfg, "c_dim", 0) or 0)

    @property
    def z_bound(self) -> float | None:
        """The support [-b, b] of the unscaled latent when z is truncated-normal (BigGAN: 2), else None. The
        generator's z is then `truncation_psi * u`, u in [-b, b]."""
        return _BIGGAN_Z_BOUND if self.family == "biggan" else None

    @property
    def has_w(self) -> bool:
        return self.family in W_FAMILIES

    @property
    def num_ws(self) -> int | None:
        return int(self.cfg.num_ws) if self.has_w else None

    @property
    def w_dim(self) -> int | None:
        return int(self.cfg.w_dim) if self.has_w else None

    @property
    def img_resolution(self) -> int:
        return int(self.cfg.img_resolution)

    @property
    def img_channels(self) -> int:
        return 3 if self.family == "biggan" else int(self.cfg.img_channels)

    @property
    def noise_layers(self) -> tuple[tuple[str, int], ...]:
        """(layer name, resolution) of every noise input (empty when the family has none)."""
        return tuple(getattr(self.cfg, "noise_layers", ()) or ()) if self.has_w else ()

    @property
    def mapping_output_activation(self) -> tuple[float, float]:
        """(negative slope, gain) of the mapping network's last activation (P spaces invert it)."""
        act = getattr(self.cfg, "mapping_activation", "lrelu")
        if not self.has_w or act != "lrelu":
            raise ConfigError(f"{self.family}: P spaces need a mapping network ending in lrelu (got {act!r})")
        return 0.2, 1.0 if self.family == "stylegan1" else float(np.sqrt(2.0))  # v1's lrelu has no gain

    @property
    def w_avg(self) -> jax.Array:
        """The W centre [w_dim] truncation pulls towards: the stored w_avg (rosinality: latent_avg, which only
        convert_weight.py writes), else the mean of mapped samples z = normal(PRNGKey(0), [2000, z_dim])."""
        self._need_w("w_avg")
        if self.family != "rosinality":
            return jnp.asarray(self.params["mapping"]["w_avg"], jnp.float32)
        if "latent_avg" in self.params:
            return jnp.asarray(self.params["latent_avg"], jnp.float32).reshape(-1)
        z = jax.random.normal(jax.random.PRNGKey(0), (_W_CENTER_SAMPLES, self.z_dim), jnp.float32)
        return jnp.mean(self.module.mapping(self.cfg, self.params, z), axis=0)

    def _need_w(self, what: str) -> None:
        if not self.has_w:
            raise ConfigError(f"{self.family} generator has no W space ({what} needs a StyleGAN-type model)")

    def _check_c(self, c: Any) -> Any:
        if self.c_dim and c is None:
            raise ConfigError(f"{self.family}: class-conditional generator (c_dim={self.c_dim}) needs a class "
                              "(c [B, c_dim], e.g. one-hot of class_idx)")
        if not self.c_dim and c is not None:
            raise ConfigError(f"{self.family}: unconditional generator (c_dim=0) got a class vector c")
        return c

    # ---- forward ------------------------------------------------------------------------------------
    def mapping(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0) -> jax.Array:
        """z [B, z_dim] (+ c) -> ws [B, num_ws, w_dim], truncated towards `w_avg` by truncation_psi."""
        self._need_w("mapping")
        self._check_c(c)
        if self.family == "rosinality":  # G.style(z) gives one w per image: broadcast as the NVlabs mapping does
            w = self.module.mapping(self.cfg, self.params, z)
            if truncation_psi != 1:
                w = self.w_avg + truncation_psi * (w - self.w_avg)
            return jnp.broadcast_to(w[:, None], (w.shape[0], self.num_ws, w.shape[-1]))
        return self.module.mapping(self.cfg, self.params, z, c, truncation_psi=truncation_psi)

    def styles(self, ws: jax.Array) -> dict[str, jax.Array]:
        self._need_w("styles")
        return self.module.styles(self.cfg, self.params, ws)

    def synthesis(self, ws: jax.Array | None = None, *, styles: dict | None = None,
                  noise: dict | None = None) -> jax.Array:
        """ws (or styles) -> image [B, H, W, C]; stored noise (the projectors' noise_mode="const") unless free
        noise maps are given."""
        self._need_w("synthesis")
        kw = {"noise": noise} if noise else {}
        return self.module.synthesis(self.cfg, self.params, ws, styles=styles, noise_mode="const", **kw)

    def embed(self, c: jax.Array) -> jax.Array:
        """BigGAN's class embedding of (soft) class vectors c [B, num_classes] -> [B, z_dim]."""
        if self.family != "biggan":
            raise ConfigError(f"{self.family}: no class embedding (BigGAN only)")
        return self.module.embed(self.cfg, self.params, c)

    def __call__(self, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        """The official forward G(z, c) at this generator's truncation_psi -> image [B, H, W, C]."""
        self._check_c(c)
        if self.has_w:
            return self.synthesis(self.mapping(z, c, self.truncation_psi))
        if self.family == "biggan":
            return self.module.generate(self.cfg, self.params, z, c, self.truncation_psi)
        if self.family == "pggan":
            return self.module.generate(self.cfg, self.params, z, c)
        return self.module.generate(self.cfg, self.params, z)

    def render(self, inp: dict[str, Any]) -> jax.Array:
        """Image [B, H, W, C] (nominally [-1, 1]) from a generator-input dict (see the module docstring)."""
        noise = inp.get("noise")
        if "styles" in inp:
            return self.synthesis(styles=inp["styles"], noise=noise)
        if "ws" in inp:
            return self.synthesis(inp["ws"], noise=noise)
        if "z" not in inp:
            raise ConfigError(f"generator input needs one of 'z', 'ws', 'styles' (got {sorted(inp)})")
        if self.family == "biggan" and "embedding" in inp:
            cond = jnp.concatenate([jnp.asarray(inp["z"], jnp.float32),
                                    jnp.asarray(inp["embedding"], jnp.float32)], axis=1)
            return self.module.generator(self.cfg, self.params, cond, self.truncation_psi)
        if noise:
            return self.synthesis(self.mapping(inp["z"], inp.get("c"), self.truncation_psi), noise=noise)
        return self(inp["z"], inp.get("c"))

    # ---- identity -----------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 over family, config and every param (name, dtype, shape, bytes): keys on-disk caches."""
        import hashlib

        h = hashlib.sha256()
        h.update(self.family.encode())
        h.update(repr(self.cfg).encode())
        for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(self.params)[0],
                                 key=lambda kv: jax.tree_util.keystr(kv[0])):
            a = np.ascontiguousarray(np.asarray(leaf))
            h.update(jax.tree_util.keystr(path).encode())
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()


jax.tree_util.register_dataclass(Generator, data_fields=["params"], meta_fields=["family", "cfg", "truncation_psi"])


def _render(gen: Generator, inp: dict[str, Any]) -> jax.Array:
    return gen.render(inp)


# One compiled renderer for eager callers: equal generators (same family, cfg, truncation_psi) share it.
render_jit = jax.jit(_render)
