"""Multi-code GAN prior (Gu et al., "Image processing using multi-code GAN prior", CVPR 2020) as a latent space.

`--space mgan:N@L`: N latent codes z_1..z_N per image, the generator split after block L (counted from the
input), and the N feature maps combined with per-code channel importance alpha_n [C_L]:

    F = sum_n alpha_n * head_L(z_n)          image = tail_L(F)

z and alpha are optimised jointly in the engine's batched lanes (images x restarts), so every solver, loss,
degradation and lane group applies unchanged. Generators: the DCGAN (blocks = ConvTranspose + BatchNorm + ReLU,
composed after block L's ReLU, 1 <= L < number of blocks; the embedded face GAN has 5 blocks: 4x4x512, 8x8x256,
16x16x128, 32x32x64, then the 64x64 image). Other families are refused with a one-line error (not supported
yet).

Start: z_n ~ N(0, I) (no deterministic centre: `center` draws the same way), alpha_n = 1 / N (the average of
the N feature maps). Prior and Adam's latent noise act on the z codes exactly as the Z space's; alpha has no
prior. `importance=False` keeps alpha at 1 (not optimised): with N = 1 this is the Z space, step for step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.errors import ConfigError
from jaxinv.generators import Generator
from jaxinv.models import dcgan
from jaxinv.models.nn import bind
from jaxinv.spaces import Latent, Space, _register

_SPEC = re.compile(r"^mgan:(\d+)@(\d+)$")


def _dcgan_blocks(gen: Generator, x: jax.Array, first: int, last: int) -> jax.Array:
    """DCGAN blocks first..last (1-based; `dcgan.Generator.blocks`); block 1 takes z."""
    return bind(dcgan.Generator, gen.cfg, gen.params).blocks(jnp.asarray(x, jnp.float32), first, last)


def feature_channels(gen: Generator, layer: int) -> int:
    return int(gen.cfg.channels[layer - 1])


@dataclass(frozen=True)
class MGanSpace(Space):
    """N codes composed after generator block `layer` with channel importance (see the module)."""

    name: ClassVar[str] = "mgan"
    codes: int = 4
    layer: int = 2
    importance: bool = True  # optimise alpha (False: alpha = 1, fixed)

    def __post_init__(self) -> None:
        if self.codes < 1 or self.layer < 1:
            raise ConfigError(f"space='mgan:{self.codes}@{self.layer}': N and L must be >= 1")

    def check(self, gen: Generator) -> None:
        if gen.family != "dcgan":
            raise ConfigError(f"space='mgan': the {gen.family} generator is not supported yet (DCGAN only)")
        if not 1 <= self.layer < gen.cfg.num_layers:
            raise ConfigError(f"space='mgan:{self.codes}@{self.layer}': L must be in 1..{gen.cfg.num_layers - 1} "
                              f"for this DCGAN ({gen.cfg.num_layers} blocks)")

    def init(self, key, gen, n, center=False, c=None):
        z = jax.random.normal(key, (n, self.codes, gen.z_dim), jnp.float32)
        if not self.importance:
            return {"z": z}
        alpha = jnp.full((n, self.codes, feature_channels(gen, self.layer)), 1.0 / self.codes, jnp.float32)
        return {"z": z, "alpha": alpha}

    def render(self, gen: Generator, latent: Latent, c: Any = None) -> jax.Array:
        z = latent["z"]
        n = z.shape[0]
        feats = _dcgan_blocks(gen, z.reshape(n * self.codes, z.shape[-1]), 1, self.layer)
        feats = feats.reshape(n, self.codes, *feats.shape[1:])  # [n, N, h, w, C]
        if self.importance:
            feats = feats * latent["alpha"][:, :, None, None, :]
        return _dcgan_blocks(gen, jnp.sum(feats, axis=1), self.layer + 1, gen.cfg.num_layers)

    def to_input(self, gen, latent):
        # Not a plain generator input: the codes (and importance) of the split forward (`render`).
        return dict(latent)

    def prior(self, latent):
        z = latent["z"]
        return jnp.mean(jnp.square(z), axis=(1, 2))

    def perturb(self, latent, key, scale):
        z = latent["z"]
        return {**latent, "z": z + (scale * np.sqrt(z.shape[-1])) * jax.random.normal(key, z.shape)}


_register(MGanSpace, ())


def parse(spec: str) -> MGanSpace | None:
    """'mgan:N@L' -> MGanSpace(N, L); None when `spec` is not an mgan spec."""
    text = str(spec).strip().lower()
    if not text.startswith("mgan"):
        return None
    m = _SPEC.match(text)
    if not m:
        raise ConfigError(f"space={spec!r}: expected mgan:N@L (N codes composed after generator block L, "
                          "e.g. mgan:16@2)")
    return MGanSpace(int(m.group(1)), int(m.group(2)))
