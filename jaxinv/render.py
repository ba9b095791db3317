"""Render any family from a generator-input dict with *explicit* params (for weight tuning and searches).

`Renderer(family, cfg, truncation)` is a frozen, hashable callable `renderer(params, inp) -> img [B, H, W, C]`,
so it can be a static argument of a jitted function while the params stay traced (PTI differentiates through
them; CMA/BasinCMA and the editors keep them fixed). Generator inputs by family:

    stylegan2 / stylegan3 / rosinality   {"ws": [B, num_ws, w_dim]}  or  {"z": [B, z_dim], "c": [B, c_dim]?}
    dcgan                                {"z": [B, z_dim]}
    biggan                               {"z": [B, z_dim], "embedding": [B, z_dim]}  (class embedding, as
                                         Huh et al. optimise it)  or  {"z", "class_vector": [B, num_classes]}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.errors import ConfigError
from jaxinv.models import family_module

W_FAMILIES = ("stylegan2", "stylegan3", "rosinality")
FAMILIES = (*W_FAMILIES, "dcgan", "biggan")


@dataclass(frozen=True)
class Renderer:
    family: str
    cfg: Any  # the family's frozen Config (hashable)
    truncation: float = 1.0  # BigGAN only: selects the BN statistics (static)
    noise_mode: str = "const"  # StyleGAN families: stored noise buffers, as projectors and PTI use

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"family {self.family!r}: rendering supports {', '.join(FAMILIES)}")

    @classmethod
    def from_model(cls, model: Any, truncation: float = 1.0) -> Renderer:
        return cls(model.family, model.cfg, float(truncation))

    @property
    def has_w(self) -> bool:
        return self.family in W_FAMILIES

    @property
    def module(self):
        return family_module(self.family)

    def __call__(self, params: Any, inp: dict[str, Any]) -> jax.Array:
        m = self.module
        if self.has_w:
            ws = inp["ws"] if "ws" in inp else self.mapping_ws(params, inp["z"], inp.get("c"))
            return m.synthesis(self.cfg, params, ws, noise_mode=self.noise_mode)
        if self.family == "dcgan":
            return m.generate(self.cfg, params, inp["z"])
        # biggan
        if "embedding" in inp:
            cond = jnp.concatenate([jnp.asarray(inp["z"], jnp.float32), jnp.asarray(inp["embedding"], jnp.float32)],
                                   axis=1)
            return m.generator(self.cfg, params, cond, self.truncation)
        if "class_vector" in inp:
            return m.generate(self.cfg, params, inp["z"], inp["class_vector"], self.truncation)
        raise ConfigError("biggan input needs 'z' and 'embedding' or 'class_vector'")

    # ---- W helpers (StyleGAN families) -------------------------------------------------------------
    def mapping_w(self, params: Any, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        """z [B, z_dim] -> one w per sample [B, w_dim] (no truncation)."""
        if not self.has_w:
            raise ConfigError(f"{self.family}: no mapping network (W space needs a StyleGAN-type model)")
        if self.family == "rosinality":
            return self.module.mapping(self.cfg, params, z)
        return self.module.mapping(self.cfg, params, z, c)[:, 0]

    def mapping_ws(self, params: Any, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        w = self.mapping_w(params, z, c)
        return jnp.broadcast_to(w[:, None], (w.shape[0], self.cfg.num_ws, w.shape[-1]))

    def w_center(self, params: Any, num_samples: int = 2000, seed: int = 0) -> np.ndarray:
        """The truncation centre [w_dim]: the stored w_avg / latent_avg, else the mean of mapped samples."""
        if self.family in ("stylegan2", "stylegan3"):
            return np.asarray(params["mapping"]["w_avg"], np.float32)
        if "latent_avg" in params:
            return np.asarray(params["latent_avg"], np.float32).reshape(-1)
        z = jax.random.normal(jax.random.PRNGKey(seed), (num_samples, self.cfg.z_dim), jnp.float32)
        return np.asarray(jnp.mean(self.mapping_w(params, z), axis=0))

    def c_dim(self) -> int:
        return int(getattr(self.cfg, "c_dim", 0) or 0) if self.family != "rosinality" else 0

    def z_dim(self) -> int:
        return int(self.cfg.z_dim)

    def code_key(self, inp: dict[str, Any]) -> str:
        """The input entry a pivot is made of (what PTI's locality regulariser perturbs)."""
        return "ws" if "ws" in inp else "z"


def _render(renderer: Renderer, params: Any, inp: dict[str, Any]) -> jax.Array:
    return renderer(params, inp)


# Shared compiled renderer: equal Renderers (same family/cfg/truncation) reuse one compilation.
render_jit = jax.jit(_render, static_argnums=0)
