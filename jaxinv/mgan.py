"""Multi-code GAN prior (Gu et al., "Image processing using multi-code GAN prior", CVPR 2020) as a latent space.

`--space mgan:N@L`: N latent codes z_1..z_N per image, the generator split after block L (counted from the
input), and the N feature maps combined with per-code channel importance alpha_n [C_L]:

    F = sum_n alpha_n * head_L(z_n)          image = tail_L(F)

z and alpha are optimised jointly in the engine's batched lanes (images x restarts), so every solver, loss,
degradation and lane group applies unchanged. Blocks per family (1 <= L < number of blocks):

- DCGAN: block i = ConvTranspose + BatchNorm + ReLU (`dcgan.Generator.blocks`); the embedded face GAN has 5:
  4x4x512, 8x8x256, 16x16x128, 32x32x64, then the 64x64 image.
- StyleGAN2 (NVlabs / stylegan3 repo / TF): block i = SynthesisBlock b{4 * 2^(i-1)}; each code's w =
  mapping(z_n, c, truncation_psi) styles its head, the tail is styled by the mean of the N codes' w, and the
  'skip' architecture's partial RGB images are averaged (1/N each).
- StyleGAN3: block 1 = `input`, block i + 2 = layer L{i}; the tail styled by the mean w as for StyleGAN2.
- BigGAN-deep: block 1 = gen_z, block k + 2 = layers.<k> (GenBlock or SelfAttn), the last = bn, conv_to_rgb;
  codes u_n ~ truncnorm(-2, 2) as in the Z space (z_n = truncation_psi * u_n), the tail conditioned on the
  mean of the N codes' z with the fixed class's embedding.

Other families (rosinality, StyleGAN v1, PGGAN) are refused with a one-line error. With N = 1 the mean code is
the code itself, so `importance=False` (alpha = 1, not optimised) is the Z space step for step.

Start: z_n drawn as the Z space draws (no deterministic centre: `center` draws the same way), alpha_n = 1 / N
(the average of the N feature maps). Prior and Adam's latent noise act on the z codes exactly as the Z space's;
alpha has no prior.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from jaxinv.errors import ConfigError
from jaxinv.generators import Generator
from jaxinv.models import biggan, dcgan, stylegan2, stylegan3
from jaxinv.models.nn import bind
from jaxinv.spaces import Latent, Space, _register, perturb_z, reflect_into, sample_z, truncated_z

_SPEC = re.compile(r"^mgan:(\d+)@(\d+)$")
FAMILIES = ("dcgan", "stylegan2", "stylegan3", "biggan")


def num_blocks(gen: Generator) -> int:
    """Blocks of `gen`'s split forward (see the module docstring)."""
    if gen.family == "dcgan":
        return int(gen.cfg.num_layers)
    if gen.family == "stylegan2":
        return len(gen.cfg.block_resolutions)
    if gen.family == "stylegan3":
        return len(gen.cfg.layer_names) + 1
    return bind(biggan.BigGAN, gen.cfg, gen.params).generator.num_blocks


def codes(gen: Generator, z: jax.Array, c: Any) -> jax.Array:
    """What conditions the blocks, per code: z [M, z_dim] (c [M, c_dim] or None) -> the DCGAN's z, BigGAN's
    truncation_psi * reflect_into(u, 2) (as the Z space), StyleGAN's ws = mapping(z, c, truncation_psi)."""
    z = truncated_z(gen, jnp.asarray(z, jnp.float32))
    return gen.mapping(z, c, gen.truncation_psi) if gen.has_w else z


def head(gen: Generator, code: jax.Array, c: Any, layer: int) -> tuple[jax.Array, jax.Array | None]:
    """Blocks 1..layer of `codes` [M, ...] (c [M, c_dim] or None) -> (features [M, h, w, C], the partial RGB image
    of StyleGAN2's 'skip' architecture or None)."""
    if gen.family == "dcgan":
        return bind(dcgan.Generator, gen.cfg, gen.params).blocks(code, 1, layer), None
    if gen.family == "biggan":
        g = bind(biggan.BigGAN, gen.cfg, gen.params)
        return g.generator.blocks(None, g.cond_vector(code, c), gen.truncation_psi, 1, layer), None
    if gen.family == "stylegan2":
        synth = bind(stylegan2.Generator, gen.cfg, gen.params).synthesis
        return synth.blocks(None, None, gen.styles(code), 1, layer)
    return bind(stylegan3.Generator, gen.cfg, gen.params).synthesis.blocks(None, gen.styles(code), 1, layer), None


def tail(gen: Generator, feats: jax.Array, img: jax.Array | None, code: jax.Array, c: Any, layer: int) -> jax.Array:
    """Blocks layer+1.. of composed features [B, h, w, C] -> image, conditioned by `code` [B, ...] (the mean of
    the N codes, see the module docstring; the DCGAN's tail takes none)."""
    last = num_blocks(gen)
    if gen.family == "dcgan":
        return bind(dcgan.Generator, gen.cfg, gen.params).blocks(feats, layer + 1, last)
    if gen.family == "biggan":
        g = bind(biggan.BigGAN, gen.cfg, gen.params)
        return g.generator.blocks(feats, g.cond_vector(code, c), gen.truncation_psi, layer + 1, last)
    if gen.family == "stylegan2":
        synth = bind(stylegan2.Generator, gen.cfg, gen.params).synthesis
        return synth.blocks(feats, img, gen.styles(code), layer + 1, last)[1]
    return bind(stylegan3.Generator, gen.cfg, gen.params).synthesis.blocks(feats, gen.styles(code), layer + 1, last)


def feature_channels(gen: Generator, layer: int) -> int:
    """Channels C_L of block `layer`'s output (the length of each alpha_n)."""
    c = jnp.zeros((1, gen.c_dim), jnp.float32) if gen.c_dim else None
    out = jax.eval_shape(lambda z: head(gen, codes(gen, z, c), c, layer)[0],
                         jax.ShapeDtypeStruct((1, gen.z_dim), jnp.float32))
    return int(out.shape[-1])


@dataclass(frozen=True)
class MGanSpace(Space):
    """N codes composed after generator block `layer` with channel importance (see the module)."""

    name: ClassVar[str] = "mgan"
    codes: int = 4
    layer: int = 2
    importance: bool = True  # optimise alpha (False: alpha = 1, fixed)
    z_bound: float | None = None  # filled by prepare: the generator's truncated-normal support (None: normal)

    def __post_init__(self) -> None:
        if self.codes < 1 or self.layer < 1:
            raise ConfigError(f"space='mgan:{self.codes}@{self.layer}': N and L must be >= 1")

    def check(self, gen: Generator) -> None:
        if gen.family not in FAMILIES:
            raise ConfigError(f"space='mgan': the {gen.family} generator is not supported (supported: "
                              f"{', '.join(FAMILIES)})")
        if not 1 <= self.layer < num_blocks(gen):
            raise ConfigError(f"space='mgan:{self.codes}@{self.layer}': L must be in 1..{num_blocks(gen) - 1} "
                              f"for this {gen.family} generator ({num_blocks(gen)} blocks)")

    def prepare(self, gen):
        return dataclasses.replace(self, z_bound=gen.z_bound)

    def init(self, key, gen, n, center=False, c=None):
        z = sample_z(key, (n, self.codes, gen.z_dim), gen.z_bound)
        if not self.importance:
            return {"z": z}
        alpha = jnp.full((n, self.codes, feature_channels(gen, self.layer)), 1.0 / self.codes, jnp.float32)
        return {"z": z, "alpha": alpha}

    def render(self, gen: Generator, latent: Latent, c: Any = None) -> jax.Array:
        z = latent["z"]
        n = z.shape[0]
        per_image = lambda a: a.reshape(n, self.codes, *a.shape[1:])  # noqa: E731  [n * N, ...] -> [n, N, ...]
        cc = None if c is None else jnp.repeat(jnp.asarray(c, jnp.float32), self.codes, axis=0)
        code = codes(gen, z.reshape(n * self.codes, z.shape[-1]), cc)
        feats, img = head(gen, code, cc, self.layer)
        feats = per_image(feats)  # [n, N, h, w, C]
        if self.importance:
            feats = feats * latent["alpha"][:, :, None, None, :]
        if img is not None:
            img = jnp.mean(per_image(img), axis=1)
        return tail(gen, jnp.sum(feats, axis=1), img, jnp.mean(per_image(code), axis=1), c, self.layer)

    def to_input(self, gen, latent):
        # Not a plain generator input: the codes (and importance) of the split forward (`render`).
        return dict(latent)

    def prior(self, latent):
        z = latent["z"]
        return jnp.mean(jnp.square(z), axis=(1, 2))

    def perturb(self, latent, key, scale):
        return {**latent, "z": perturb_z(latent["z"], key, scale)}

    def project(self, latent):
        return self.canonical(latent)

    def canonical(self, latent):
        if self.z_bound is None:
            return latent
        return {**latent, "z": reflect_into(latent["z"], self.z_bound)}


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
