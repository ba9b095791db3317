"""Degradations: known, differentiable, batched operators D(image) -> observation for restoration by inversion.

    deg = parse("mask:hole.png+down:4", resolution=64)     # or Degradation((Mask(m), Down(4)))
    obs = deg(images)                                       # [B, 64, 64, 3] -> [B, 16, 16, 3]
    res = jaxinv.invert(model, observations, degradation=deg)   # the loss compares D(G(z)) with the observation

Operators (applied left to right, images NHWC in [-1, 1]):

    mask    x * m, m [H, W] in [0, 1] (1 = observed, 0 = missing; soft values allowed): inpainting. Shared
            by every image, or one per image (`Mask(masks, per_image=True)`, masks [N, H, W]). Specs:
            mask:FILE, mask:DIR (one file per image, by name), mask:center:S (a central S x S hole),
            mask:random:P[:SEED] (a fraction P of the pixels missing, drawn once from SEED, default 0).
    down:F  downsampling by an integer factor F with a stated kernel (super-resolution): `bicubic` (default;
            Keys a = -0.5 with its support stretched by F, i.e. antialiased, exactly pillow's
            `Image.resize(..., BICUBIC)`), `area` (mean of each F x F block, pillow's BOX) or `nvlabs` (the
            StyleGAN2/3 code's `upfirdn2d.downsample2d` with the [1, 3, 3, 1] filter: padded with zeros, no
            renormalisation at the border). Each is one separable matrix per axis (pillow's coefficients, borders
            renormalised as pillow does, for the first two).
    gray    ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, repeated on the 3 channels (colorization): the
            observation stays a 3-channel image, so a grayscale file loads as it is and LPIPS still applies.
    noise:S additive Gaussian noise of std S (in [-1, 1] units) (denoising). Its deterministic part is the
            identity; it makes the pixel term the noise model's negative log-likelihood: the engine weighs
            `mse` by 1 / (2 S^2) (per-pixel Gaussian NLL, constant dropped). Last in a chain only.

Masks also apply to the observation: pixels outside the masks that act at the observation's resolution (those
after the last `down`) are ignored, i.e. the target the loss sees is m * y, whatever the file holds there.

Engine floor: this module imports `jaxinv.ops`-level code only (errors, images), nothing from the engine.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv.errors import ConfigError

__all__ = ["Op", "Mask", "Down", "Gray", "Noise", "Degradation", "parse", "resample_matrix", "LUMA",
           "KERNELS", "load_mask", "mask_for", "data_shapes", "item_masks"]

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as pillow's convert("L")
KERNELS = ("bicubic", "area", "nvlabs")
NVLABS_FILTER = (1.0, 3.0, 3.0, 1.0)  # the resample filter of the NVlabs StyleGAN2/3 networks
_HI = jax.lax.Precision.HIGHEST  # resampling is a tiny matmul: keep float32 (no TF32 on GPUs)


def _register(cls: type, data: tuple[str, ...] = ()) -> type:
    names = [f.name for f in dataclasses.fields(cls)]
    jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=[n for n in names if n not in data])
    return cls


# ---------------------------------------------------------------------------------------------------------
# Resampling matrices (pillow's ImagingResample coefficients)


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5  # pillow's (and Keys') a; torch's bicubic uses -0.75
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _box(x: np.ndarray) -> np.ndarray:
    return ((x > -0.5) & (x <= 0.5)).astype(np.float64)


@functools.lru_cache(maxsize=64)
def resample_matrix(n_in: int, n_out: int, kernel: str) -> np.ndarray:
    """[n_out, n_in] float32 matrix of pillow's resampling along one axis (downscaling, antialiased: the
    kernel's support is stretched by n_in / n_out; weights renormalised to sum 1 where the border cuts it)."""
    if kernel not in KERNELS:
        raise ConfigError(f"degradation: unknown resampling kernel {kernel!r} (choose from {', '.join(KERNELS)})")
    if kernel == "nvlabs":
        return _fir_down_matrix(n_in, n_in // n_out, NVLABS_FILTER)
    filt, support = (_bicubic, 2.0) if kernel == "bicubic" else (_box, 0.5)
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support *= fscale
    out = np.zeros((n_out, n_in), np.float64)
    for o in range(n_out):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        w = filt((np.arange(lo, hi) - center + 0.5) / fscale)
        out[o, lo:hi] = w / w.sum()
    return out.astype(np.float32)


def _fir_down_matrix(n_in: int, down: int, taps: Sequence[float]) -> np.ndarray:
    """[n_in // down, n_in] float32 matrix of `upfirdn2d.downsample2d` along one axis: out[o] = sum_k f[k] *
    x[down * o + k - p0] with p0 = (len(f) - down + 1) // 2, f normalised to sum 1, zeros outside the image."""
    f = np.asarray(taps, np.float64) / np.sum(taps)
    p0 = (len(f) - down + 1) // 2
    out = np.zeros((n_in // down, n_in), np.float64)
    for o in range(n_in // down):
        for k, fk in enumerate(f):
            i = down * o + k - p0
            if 0 <= i < n_in:
                out[o, i] += fk
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------
# Operators


@dataclass(frozen=True)
class Op:
    """One operator. `__call__(x, aux)`: x [B, H, W, C]; aux is this operator's per-image operand ([B, ...])
    or None. `out_shape((H, W, C))` the shape it returns."""

    name: ClassVar[str] = "?"
    per_image = False  # not annotated: a plain class attribute, so Mask's field keeps its place

    def __call__(self, x: jax.Array, aux: Any = None) -> jax.Array:
        raise NotImplementedError

    def out_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return shape

    def spec(self) -> str:
        return self.name


@dataclass(frozen=True)
class Mask(Op):
    """x * m (1 = observed, 0 = missing). `mask`: [H, W] (or [H, W, 1]) shared by every image, or with
    `per_image=True` one mask per image [N, H, W] (the engine hands each image its row). `source`: where the
    mask came from (a file or folder), for the spec."""

    name: ClassVar[str] = "mask"
    mask: Any = None
    per_image: bool = False
    source: str | None = None
    preprocess: Any = None  # per-image masks: the images' `jaxinv.images.Preprocess` (see `load_mask`)

    def __post_init__(self) -> None:
        # Only user input is checked: pytree rebuilding (jit, vmap, eval_shape) passes tracers and placeholders.
        if not isinstance(self.mask, np.ndarray | list | tuple | jax.Array) or isinstance(self.mask, jax.core.Tracer):
            return
        m = np.asarray(self.mask)
        want = 3 if self.per_image else 2
        if m.ndim == want + 1 and m.shape[-1] == 1:
            m = m[..., 0]
        if m.ndim != want:
            raise ConfigError(f"degradation mask: expected {'[N, H, W]' if self.per_image else '[H, W]'}, got "
                              f"shape {list(np.shape(self.mask))}")
        if not np.isfinite(m).all() or m.min() < 0 or m.max() > 1:
            raise ConfigError("degradation mask: values must be finite and in [0, 1] (1 = observed, 0 = missing)")
        object.__setattr__(self, "mask", np.asarray(m, np.float32))

    def _m(self, aux: Any) -> jax.Array:
        m = aux if self.per_image else self.mask
        if m is None:
            raise ConfigError("degradation mask: per-image masks need one mask per image (none given)")
        m = jnp.asarray(m, jnp.float32)
        return m[..., None] if self.per_image else m[None, :, :, None]

    def __call__(self, x, aux=None):
        m = self._m(aux)
        if m.shape[-3:-1] != x.shape[1:3]:
            raise ConfigError(f"degradation mask: mask is {m.shape[-3]}x{m.shape[-2]}, the image it applies to "
                              f"is {x.shape[1]}x{x.shape[2]}")
        return x * m

    def spec(self) -> str:
        return f"mask:{self.source or 'array'}"


@dataclass(frozen=True)
class Down(Op):
    """Downsampling by an integer `factor` with a resampling `kernel` ("bicubic" or "area", see the module)."""

    name: ClassVar[str] = "down"
    factor: int = 4
    kernel: str = "bicubic"

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int | np.integer) or self.factor < 2:
            raise ConfigError(f"degradation down: factor must be an integer >= 2, got {self.factor!r}")
        if self.kernel not in KERNELS:
            raise ConfigError(f"degradation down: unknown kernel {self.kernel!r} (choose from {', '.join(KERNELS)})")

    def out_shape(self, shape):
        h, w, c = shape
        if h % self.factor or w % self.factor:
            raise ConfigError(f"degradation down:{self.factor}: {h}x{w} images are not divisible by {self.factor}")
        return (h // self.factor, w // self.factor, c)

    def __call__(self, x, aux=None):
        h, w = x.shape[1:3]
        oh, ow, _ = self.out_shape((h, w, x.shape[3]))
        ah = jnp.asarray(resample_matrix(h, oh, self.kernel))
        aw = jnp.asarray(resample_matrix(w, ow, self.kernel))
        return jnp.einsum("oh,bhwc,pw->bopc", ah, x, aw, precision=_HI)

    def spec(self) -> str:
        return f"down:{self.factor}:{self.kernel}"


@dataclass(frozen=True)
class Gray(Op):
    """ITU-R 601 luma, repeated on the 3 channels."""

    name: ClassVar[str] = "gray"

    def out_shape(self, shape):
        if shape[2] != 3:
            raise ConfigError(f"degradation gray: needs 3-channel (RGB) images, got {shape[2]} channel(s)")
        return shape

    def __call__(self, x, aux=None):
        self.out_shape(x.shape[1:])
        y = jnp.einsum("bhwc,c->bhw", x, jnp.asarray(LUMA, jnp.float32), precision=_HI)
        return jnp.broadcast_to(y[..., None], x.shape)


@dataclass(frozen=True)
class Noise(Op):
    """Additive Gaussian noise of std `sigma` ([-1, 1] units): identity forward, the likelihood's scale."""

    name: ClassVar[str] = "noise"
    sigma: float = 0.1

    def __post_init__(self) -> None:
        s = self.sigma
        if isinstance(s, bool) or not isinstance(s, int | float | np.floating) or not np.isfinite(s) or s <= 0:
            raise ConfigError(f"degradation noise: sigma must be a number > 0, got {s!r}")
        object.__setattr__(self, "sigma", float(s))

    def __call__(self, x, aux=None):
        return x

    def sample(self, x: jax.Array, key: jax.Array) -> jax.Array:
        return x + self.sigma * jax.random.normal(key, x.shape, x.dtype)

    def spec(self) -> str:
        return f"noise:{self.sigma!r}"


_register(Mask, ("mask",))
_register(Down)
_register(Gray)
_register(Noise)


# ---------------------------------------------------------------------------------------------------------
# Composition


@dataclass(frozen=True)
class Degradation:
    """A chain of operators, applied left to right. A pytree: shared masks are leaves, the rest static."""

    ops: tuple[Op, ...]

    def __post_init__(self) -> None:
        ops = tuple(self.ops)
        object.__setattr__(self, "ops", ops)
        if not ops:
            raise ConfigError("degradation: no operators given")
        for i, op in enumerate(ops):
            if not isinstance(op, Op):
                raise ConfigError(f"degradation: expected operators (Mask, Down, Gray, Noise), got "
                                  f"{type(op).__name__}")
            if isinstance(op, Noise) and i != len(ops) - 1:
                raise ConfigError("degradation: noise is the observation's noise model and must come last")

    def __call__(self, x: jax.Array, data: Sequence[Any] | None = None) -> jax.Array:
        """D(x): x [B, H, W, C]; `data` the per-image operands (`per_image_data()` rows), None when none."""
        data = data if data is not None else (None,) * len(self.ops)
        for op, aux in zip(self.ops, data, strict=True):
            x = op(x, aux)
        return x

    def out_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        s = tuple(int(v) for v in shape)
        for op in self.ops:
            s = op.out_shape(s)
        return s

    @property
    def noise_sigma(self) -> float | None:
        return self.ops[-1].sigma if isinstance(self.ops[-1], Noise) else None

    @property
    def per_image(self) -> bool:
        return any(op.per_image for op in self.ops)

    def per_image_data(self) -> tuple[Any, ...] | None:
        """The per-image operands, one entry per operator ([N, ...] or None); None when there are none."""
        if not self.per_image:
            return None
        return tuple(np.asarray(op.mask) if op.per_image and op.mask is not None else None for op in self.ops)

    def static(self) -> Degradation:
        """This chain without its per-image arrays (which the engine batches with the images)."""
        return Degradation(tuple(dataclasses.replace(op, mask=None) if op.per_image else op for op in self.ops))

    def target(self, y: jax.Array, data: Sequence[Any] | None = None) -> jax.Array:
        """The observation as the loss sees it: y times the masks acting at its resolution (after the last
        resampling), so that pixels outside them are ignored."""
        data = data if data is not None else (None,) * len(self.ops)
        for op, aux in reversed(list(zip(self.ops, data, strict=True))):
            if isinstance(op, Down):
                break
            if isinstance(op, Mask):
                y = op(y, aux)
        return y

    def observe(self, x: jax.Array, key: jax.Array | None = None, data: Sequence[Any] | None = None) -> jax.Array:
        """Simulate observations of clean images x: D(x) plus, with a noise model, a noise sample (`key`)."""
        y = self(x, data)
        if self.noise_sigma is not None:
            if key is None:
                raise ConfigError("degradation observe: the noise model needs a PRNG key")
            y = self.ops[-1].sample(y, key)
        return y

    def spec(self) -> str:
        return "+".join(op.spec() for op in self.ops)


jax.tree_util.register_dataclass(Degradation, data_fields=["ops"], meta_fields=[])


# ---------------------------------------------------------------------------------------------------------
# Spec strings and mask files


def load_mask(path: str | Path, resolution: int, preprocess: Any = None) -> np.ndarray:
    """A mask file -> [resolution, resolution] float32 in [0, 1] (white = observed, black = missing). It goes
    through the images' geometric preprocessing (`preprocess`: a `jaxinv.images.Preprocess`, its crop and first
    resize) so that it stays aligned with its image; then a Lanczos resize, clipped to [0, 1]."""
    from jaxinv.images import Preprocess, load_image

    pre = Preprocess(resolution) if preprocess is None else dataclasses.replace(preprocess, resolution=resolution,
                                                                                channels=1)
    m = load_image(path, dataclasses.replace(pre, channels=1))[..., 0]
    return np.clip((m + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)


def mask_for(folder: str | Path, key: str) -> Path:
    """The mask of image `key` (its path inside the job, e.g. 'a/001.png') in a mask folder: the file with the
    same relative path and stem, any image extension. Exactly one must exist."""
    from jaxinv.errors import ImageError
    from jaxinv.images import IMAGE_EXTS

    stem = Path(folder) / Path(key).with_suffix("")
    found = sorted(p for p in stem.parent.glob(stem.name + ".*") if p.suffix.lower() in IMAGE_EXTS) \
        if stem.parent.is_dir() else []
    if len(found) != 1:
        why = "no mask" if not found else f"{len(found)} masks ({', '.join(p.name for p in found)})"
        raise ImageError(f"{key}: {why} named {stem.name}.* in mask folder {folder}")
    return found[0]


def parse(spec: str | Degradation | None, resolution: int, channels: int = 3,
          preprocess: Any = None) -> Degradation | None:
    """A Degradation from a spec: ops joined by '+', each `mask:FILE`, `mask:DIR` (one mask per image, matched
    by name: `mask_for`), `mask:center:S` (a central S x S hole), `mask:random:P[:SEED]` (a fraction P of the
    pixels missing), `down:F[:bicubic|area|nvlabs]`, `gray`,
    `noise:SIGMA`. `resolution`, `channels`: the generator's images (masks are read at the resolution where they
    act; `preprocess` aligns them with the images, see `load_mask`). None / '' / 'none' -> None."""
    if spec is None or isinstance(spec, Degradation):
        return spec
    text = str(spec).strip()
    if text.lower() in ("", "none"):
        return None
    ops: list[Op] = []
    op: Op
    shape = (int(resolution), int(resolution), int(channels))
    for part in text.split("+"):
        name, _, arg = part.strip().partition(":")
        name = name.lower()
        try:
            if name == "mask":
                if not arg:
                    raise ConfigError("mask needs a file or folder (mask:FILE or mask:DIR)")
                p = Path(arg)
                hole = re.fullmatch(r"center:(\d+)", arg)
                rnd = re.fullmatch(r"random:([0-9.eE+-]+)(?::(\d+))?", arg)
                if rnd:  # a generated pattern: a fraction P of the pixels missing
                    try:
                        frac = float(rnd.group(1))
                    except ValueError:
                        frac = -1.0
                    if not 0 < frac < 1:
                        raise ConfigError(f"mask:{arg}: the missing fraction P must be in (0, 1)")
                    rng = np.random.default_rng(int(rnd.group(2) or 0))
                    op = Mask((rng.random(shape[:2]) >= frac).astype(np.float32), source=arg)
                elif hole:  # a generated pattern: a central S x S hole
                    size, r = int(hole.group(1)), shape[0]
                    if not 0 < size < r:
                        raise ConfigError(f"mask:{arg}: the hole must be 1..{r - 1} pixels wide")
                    m = np.ones((r, r), np.float32)
                    m[(r - size) // 2:(r + size) // 2, (r - size) // 2:(r + size) // 2] = 0
                    op = Mask(m, source=arg)
                elif p.is_dir():
                    op = Mask(None, per_image=True, source=arg, preprocess=preprocess)
                elif p.is_file():
                    op = Mask(load_mask(p, shape[0], preprocess), source=arg)
                else:
                    raise ConfigError(f"mask:{arg}: no such file or folder")
            elif name == "down":
                f, _, kernel = arg.partition(":")
                if not f.isdigit():
                    raise ConfigError(f"down:{arg}: expected down:FACTOR[:{'|'.join(KERNELS)}] (an integer factor)")
                op = Down(int(f), kernel or "bicubic")
            elif name == "gray" and not arg:
                op = Gray()
            elif name == "noise":
                try:
                    sigma = float(arg)
                except ValueError:
                    raise ConfigError(f"noise:{arg}: expected noise:SIGMA (a number > 0, [-1, 1] units)") from None
                op = Noise(sigma)
            else:
                raise ConfigError(f"unknown operator {part.strip()!r} (mask:FILE|mask:DIR|mask:center:S|"
                                  "mask:random:P[:SEED], down:F[:kernel], gray, noise:SIGMA)")
            shape = op.out_shape(shape)
        except ConfigError as e:
            msg = str(e).removeprefix("degradation ").removeprefix("degradation: ")
            raise ConfigError(f"degradation={text!r}: {msg}") from None
        ops.append(op)
    try:
        return Degradation(tuple(ops))
    except ConfigError as e:
        raise ConfigError(f"degradation={text!r}: {str(e).removeprefix('degradation: ')}") from None


def data_shapes(deg: Degradation, resolution: int, channels: int = 3) -> tuple[tuple[int, ...] | None, ...]:
    """Per operator: the shape of one image's operand ([H, W] of a per-image mask), or None."""
    out: list[tuple[int, ...] | None] = []
    shape = (int(resolution), int(resolution), int(channels))
    for op in deg.ops:
        out.append(shape[:2] if op.per_image else None)
        shape = op.out_shape(shape)
    return tuple(out)


def item_masks(deg: Degradation, key: str, resolution: int, channels: int = 3) -> tuple[np.ndarray | None, ...]:
    """Per operator: image `key`'s mask for a `mask:DIR` operator (`mask_for`, read at the resolution where the
    operator acts and aligned as `load_mask` says), None for the others."""
    return tuple(None if s is None else load_mask(mask_for(op.source, key), s[0], op.preprocess)
                 for op, s in zip(deg.ops, data_shapes(deg, resolution, channels), strict=True))
