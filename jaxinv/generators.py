"""A family-agnostic view of a generator for the inversion engine.

`Generator` wraps a `jaxinv.models.Model` (family, static cfg, params) and exposes what latent spaces need:
`z_dim`, `num_ws`, `w_dim`, `mapping`, `styles`, `synthesis(ws | styles, noise=...)`, `generate(z)`, the noise
layers, and `render(inp)` which runs the generator from a space's input dict:

    {"z": [B, z_dim]}                      z-driven families (DCGAN, BigGAN) or mapping + synthesis
    {"ws": [B, num_ws, w_dim]}             W / W+ / P spaces
    {"styles": {layer: [B, C]}}            S space
    optional "noise": {layer: [B, H, W]}   free noise maps (replace the stored noise_const)
    optional "c": [B, c_dim]               class vector of conditional generators

It is a pytree (params are leaves, family and cfg static), so it can be passed into jitted functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.errors import ConfigError

# Families whose module follows the StyleGAN2 API of the conventions (mapping / styles / synthesis).
W_FAMILIES = ("stylegan2", "stylegan3", "rosinality")


@dataclass(frozen=True)
class Generator:
    family: str
    cfg: Any
    params: Any

    @classmethod
    def from_model(cls, model: Any) -> Generator:
        """From a `jaxinv.models.Model` (or anything with family/cfg/params), or a Generator."""
        if isinstance(model, Generator):
            return model
        for attr in ("family", "cfg", "params"):
            if not hasattr(model, attr):
                raise ConfigError(f"model: expected a jaxinv.models.Model (family, cfg, params), got "
                                  f"{type(model).__name__}")
        return cls(model.family, model.cfg, model.params)

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
        return int(getattr(self.cfg, "c_dim", 0) or 0)

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
        return int(self.cfg.img_channels)

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
        return 0.2, float(np.sqrt(2.0))

    @property
    def w_avg(self) -> jax.Array:
        self._need_w("w_avg")
        if self.family == "rosinality":  # only checkpoints written by convert_weight.py carry latent_avg
            if "latent_avg" not in self.params:
                raise ConfigError("rosinality checkpoint without latent_avg: truncation needs a mean latent")
            return jnp.asarray(self.params["latent_avg"], jnp.float32)
        return jnp.asarray(self.params["mapping"]["w_avg"], jnp.float32)

    def _need_w(self, what: str) -> None:
        if not self.has_w:
            raise ConfigError(f"{self.family} generator has no W space ({what} needs a StyleGAN-type model)")

    # ---- forward ------------------------------------------------------------------------------------
    def mapping(self, z: jax.Array, c: jax.Array | None = None, truncation_psi: float = 1.0) -> jax.Array:
        self._need_w("mapping")
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
        self._need_w("synthesis")
        kw = {"noise": noise} if noise else {}
        return self.module.synthesis(self.cfg, self.params, ws, styles=styles, noise_mode="const", **kw)

    def generate(self, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        if self.has_w:
            return self.synthesis(self.mapping(z, c))
        if self.family == "dcgan":
            return self.module.generate(self.cfg, self.params, z)
        raise ConfigError(f"{self.family}: no z-space adaptor in jaxinv.generators yet")

    def render(self, inp: dict[str, Any]) -> jax.Array:
        """Image [B, H, W, C] (nominally [-1, 1]) from a space's generator input (see module docstring)."""
        noise = inp.get("noise")
        if "styles" in inp:
            return self.synthesis(styles=inp["styles"], noise=noise)
        if "ws" in inp:
            return self.synthesis(inp["ws"], noise=noise)
        if "z" in inp:
            if noise:
                return self.synthesis(self.mapping(inp["z"], inp.get("c")), noise=noise)
            return self.generate(inp["z"], inp.get("c"))
        raise ConfigError(f"generator input needs one of 'z', 'ws', 'styles' (got {sorted(inp)})")

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


jax.tree_util.register_dataclass(Generator, data_fields=["params"], meta_fields=["family", "cfg"])
