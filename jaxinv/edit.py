"""Editing inverted codes along closed-form (SeFa) and sampled (GANSpace) directions of a StyleGAN's W space.

    dirs = sefa(model)                      # eigenvectors of the concatenated style-affine weights
    dirs = ganspace(model, num_samples=10000)  # PCA of mapped w samples
    ws_edit = apply_edit(ws, dirs.direction(k), strength, layers=(a, b))
    images = render_edits(model, ws, dirs.direction(k), strengths, layers)   # [N, S, H, W, C], batched

SeFa (Shen & Zhou 2021): the affine A_l of every selected styled conv layer maps w to that layer's styles;
with the A_l stacked along their outputs and each output row normalised, the directions are the eigenvectors
of sum_l A_l^T A_l (descending eigenvalue). The affines are read from the family's own `styles` function
(a Jacobian; it is linear in w), so any family exposing `styles(cfg, params, ws)` works: NVlabs StyleGAN2,
rosinality, StyleGAN3. GANSpace (Härkönen et al. 2020): principal components of w = mapping(z) samples,
descending variance; its strengths are in standard deviations of the component (GANSpace's slider unit),
SeFa's in units of the unit eigenvector.

`edit` is the `jaxinv edit` command: `--latents DIR` (the inversion's `*/projected_w.npz`, official
projector format) -> `DIR_OUT/grid.png` (rows images, columns strengths), `edited_ws.npz`, `directions.npz`,
and with `--video` an animated `edit.webp` / `.gif` sweeping the strength.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from jaxinv import align, console, images
from jaxinv.encode import load_model_or_pair
from jaxinv.errors import ConfigError, ImageError
from jaxinv.generators import Generator, render_jit

# ---------------------------------------------------------------------------------------------------------
# Style layers and their affines


def _generator(model: Any) -> Generator:
    """The model's generator, its params on the device (edits render them many times)."""
    gen = Generator.from_model(model)
    if not gen.has_w:
        raise ConfigError(f"{model.family}: editing needs a StyleGAN-type model with a W space "
                          "(stylegan2, stylegan3, rosinality)")
    return gen.with_params(jax.tree_util.tree_map(jnp.asarray, gen.params))


def _is_rgb(model: Any, name: str) -> bool:
    if model.family == "stylegan3":
        return name == "input" or any(s.name == name and s.is_torgb for s in model.cfg.layers)
    return "torgb" in name or "to_rgb" in name


def style_layers(model: Any) -> list[tuple[str, int]]:
    """(layer name, ws index) of every styled *conv* layer (ToRGB and SG3's input transform excluded), in
    forward order. The index is found by probing `styles` with one-hot layer inputs."""
    gen = _generator(model)
    cfg = model.cfg
    num_ws, w_dim = gen.num_ws, gen.w_dim
    probe = np.zeros((num_ws + 1, num_ws, w_dim), np.float32)
    for k in range(num_ws):
        probe[k, k] = 1.0
    s = jax.jit(lambda g, ws: g.styles(ws))(gen, jnp.asarray(probe))  # (a jitted dict comes back sorted)
    out = []
    for name in cfg.layer_names:
        if _is_rgb(model, name):
            continue
        v = np.asarray(s[name])
        resp = np.abs(v[:num_ws] - v[num_ws:]).sum(axis=1)
        out.append((name, int(np.argmax(resp))))
    return out


def style_affines(model: Any, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The linear part of each layer's style affine as [w_dim, C] (lr gains included), from `styles`."""
    gen = _generator(model)
    names = [n for n, _ in style_layers(model)] if names is None else list(names)

    def f(g, w):  # one w broadcast to every layer: each layer sees exactly its affine of w
        ws = jnp.broadcast_to(w[None, None], (1, g.num_ws, w.shape[0]))
        s = g.styles(ws)
        return {n: s[n][0] for n in names}

    jac = jax.jit(jax.jacfwd(f, argnums=1))(gen, jnp.zeros((gen.w_dim,), jnp.float32))  # name -> [C, w_dim]
    return {n: np.asarray(jac[n]).T for n in names}


# ---------------------------------------------------------------------------------------------------------
# Directions


@dataclass(frozen=True)
class Directions:
    method: str  # "sefa" | "ganspace"
    vectors: np.ndarray  # [K, w_dim], orthonormal rows
    values: np.ndarray  # [K] eigenvalues (sefa) / variances (ganspace), descending
    scales: np.ndarray  # [K] what strength 1 moves: 1 (sefa) / the component's std (ganspace)
    layers: tuple[int, int] | None = None  # ws range the directions were computed for (sefa)
    mean: np.ndarray | None = None  # ganspace: mean of the w samples

    def direction(self, k: int) -> np.ndarray:
        if not 0 <= k < len(self.vectors):
            raise ConfigError(f"direction='{self.method}:{k}': index out of range (0..{len(self.vectors) - 1})")
        return (self.vectors[k] * self.scales[k]).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        extra = {"mean": self.mean} if self.mean is not None else {}
        np.savez(path, method=np.asarray(self.method), vectors=self.vectors, values=self.values,
                 scales=self.scales, layers=np.asarray(self.layers if self.layers else (-1, -1)), **extra)
        return path


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    """Deterministic signs: the largest-magnitude entry of every vector is positive."""
    idx = np.argmax(np.abs(vectors), axis=1)
    sign = np.sign(vectors[np.arange(len(vectors)), idx])
    return vectors * np.where(sign == 0, 1, sign)[:, None]


def _layer_range(model: Any, layers: tuple[int, int] | None) -> tuple[int, int]:
    num_ws = _generator(model).num_ws
    a, b = layers if layers is not None else (0, num_ws)
    if not 0 <= a < b <= num_ws:
        raise ConfigError(f"layers=({a}, {b}): need 0 <= a < b <= num_ws = {num_ws}")
    return int(a), int(b)


def sefa(model: Any, num_directions: int | None = None, layers: tuple[int, int] | None = None) -> Directions:
    """SeFa directions from the style affines of the conv layers whose ws index is in `layers` (a, b)."""
    a, b = _layer_range(model, layers)
    names = [n for n, i in style_layers(model) if a <= i < b]
    if not names:
        raise ConfigError(f"layers=({a}, {b}): no styled conv layer in that ws range")
    mats = style_affines(model, names)
    weight = np.concatenate([mats[n] for n in names], axis=1).astype(np.float64)  # [w_dim, sum C]
    weight = weight / np.maximum(np.linalg.norm(weight, axis=0, keepdims=True), 1e-12)
    vals, vecs = np.linalg.eigh(weight @ weight.T)
    order = np.argsort(vals)[::-1][: num_directions or len(vals)]
    vectors = _fix_signs(vecs[:, order].T)
    return Directions("sefa", vectors.astype(np.float32), vals[order].astype(np.float32),
                      np.ones(len(order), np.float32), (a, b))


def mapped_w(model: Any, num_samples: int, seed: int = 0, chunk: int = 4096) -> np.ndarray:
    """w = mapping(z) for z ~ N(0, I) ([num_samples, w_dim]); conditional models use uniform random classes."""
    gen = _generator(model)
    c_dim = gen.c_dim
    f = jax.jit(lambda g, z, c: g.mapping(z, c)[:, 0])
    key = jax.random.PRNGKey(seed)
    out = []
    for i0 in range(0, num_samples, chunk):
        n = min(chunk, num_samples - i0)
        kz, kc = jax.random.split(jax.random.fold_in(key, i0))
        z = jax.random.normal(kz, (n, gen.z_dim), jnp.float32)
        c = jax.nn.one_hot(jax.random.randint(kc, (n,), 0, c_dim), c_dim) if c_dim else None
        out.append(np.asarray(f(gen, z, c)))
    return np.concatenate(out)


def ganspace(model: Any, num_directions: int | None = None, num_samples: int = 10000, seed: int = 0) -> Directions:
    """GANSpace: PCA of mapped w samples (components by descending variance; strength in stds)."""
    w = mapped_w(model, num_samples, seed).astype(np.float64)
    mean = w.mean(axis=0)
    _, s, vt = np.linalg.svd(w - mean, full_matrices=False)
    k = num_directions or len(s)
    var = (s[:k] ** 2) / (len(w) - 1)
    return Directions("ganspace", _fix_signs(vt[:k]).astype(np.float32), var.astype(np.float32),
                      np.sqrt(var).astype(np.float32), None, mean.astype(np.float32))


def directions(model: Any, spec: str, layers: tuple[int, int] | None = None,
               num_samples: int = 10000) -> tuple[Directions, int]:
    """`sefa:K` / `ganspace:K` -> (Directions, K)."""
    method, _, k = spec.partition(":")
    try:
        k = int(k)
    except ValueError:
        raise ConfigError(f"direction={spec!r}: expected sefa:K or ganspace:K with an integer K") from None
    if method == "sefa":
        return sefa(model, layers=layers), k
    if method == "ganspace":
        return ganspace(model, num_samples=num_samples), k
    raise ConfigError(f"direction={spec!r}: unknown method {method!r} (sefa, ganspace)")


# ---------------------------------------------------------------------------------------------------------
# Applying and rendering


def apply_edit(ws: Any, direction: Any, strength: Any, layers: tuple[int, int] | None = None) -> jax.Array:
    """ws [..., num_ws, w_dim] moved by strength * direction on the ws indices a..b-1 (all if None).
    Strength 0 returns ws unchanged (ws + 0)."""
    ws = jnp.asarray(ws, jnp.float32)
    num_ws = ws.shape[-2]
    a, b = layers if layers is not None else (0, num_ws)
    mask = ((jnp.arange(num_ws) >= a) & (jnp.arange(num_ws) < b))[:, None]
    step = jnp.asarray(strength, jnp.float32)[..., None, None] * jnp.asarray(direction, jnp.float32)
    return jnp.where(mask, ws + step, ws)


def render_edits(model: Any, ws: Any, direction: Any, strengths: Sequence[float],
                 layers: tuple[int, int] | None = None, batch_size: int = 8) -> np.ndarray:
    """Images [N, S, H, W, C] of every code edited at every strength, rendered in batches of `batch_size`."""
    gen = _generator(model)
    ws = np.asarray(ws, np.float32)
    if ws.ndim != 3 or ws.shape[1:] != (model.cfg.num_ws, model.cfg.w_dim):
        raise ConfigError(f"latents: expected [N, {model.cfg.num_ws}, {model.cfg.w_dim}], got {list(ws.shape)}")
    s = np.asarray(strengths, np.float32)
    edited = np.asarray(apply_edit(ws[:, None], direction, s[None, :], layers))  # [N, S, num_ws, w_dim]
    # One strength at a time, codes in their original batch positions: the strength-0 batch is bit-identical
    # to `render_ws(ws)`'s, so it gives the same images exactly (XLA results can depend on a row's position).
    bs = min(int(batch_size), len(ws))
    return np.stack([_render_ws(gen, edited[:, j], bs) for j in range(len(s))], axis=1)


def _render_ws(gen: Generator, ws: np.ndarray, batch_size: int) -> np.ndarray:
    """Render ws [M, num_ws, w_dim] in batches padded to exactly `batch_size` (one compiled program)."""
    bs = max(1, int(batch_size))
    out = []
    for i0 in range(0, len(ws), bs):
        chunk = ws[i0:i0 + bs]
        m = len(chunk)
        if m < bs:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], bs - m, axis=0)])
        out.append(np.asarray(render_jit(gen, {"ws": jnp.asarray(chunk)}))[:m])
    return np.concatenate(out)


def render_ws(model: Any, ws: Any, batch_size: int = 8) -> np.ndarray:
    """Images of codes ws [N, num_ws, w_dim], through the same batched program as `render_edits`."""
    ws = np.asarray(ws, np.float32)
    return _render_ws(_generator(model), ws, min(int(batch_size), len(ws)))


# ---------------------------------------------------------------------------------------------------------
# Files


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Generator output ([-1, 1]) -> uint8 RGB/gray (`images.to_uint8`, one channel dropped for pillow)."""
    x = images.to_uint8(img)
    return x[..., 0] if x.shape[-1] == 1 else x


def grid(images: np.ndarray, pad: int = 2) -> np.ndarray:
    """[rows, cols, H, W, C] float images -> one uint8 sheet."""
    rows, cols, h, w = images.shape[:4]
    u8 = to_uint8(images)
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad) + u8.shape[4:], 255, np.uint8)
    for i in range(rows):
        for j in range(cols):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            sheet[y:y + h, x:x + w] = u8[i, j]
    return sheet


def save_grid(images: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    Image.fromarray(grid(images)).save(path)
    return path


def save_video(frames: np.ndarray, path: str | Path, fps: float = 12.0) -> Path:
    """frames [T, N, H, W, C] (float) -> an animated WebP/GIF (by suffix) of the N images side by side."""
    path = Path(path)
    if path.suffix.lower() not in (".webp", ".gif"):
        raise ConfigError(f"{path}: video must be .webp or .gif (animated, written with pillow)")
    pics = [Image.fromarray(grid(f[None])) for f in frames]
    duration = int(round(1000 / fps))
    kw = {"lossless": True} if path.suffix.lower() == ".webp" else {"optimize": False}
    pics[0].save(path, save_all=True, append_images=pics[1:], duration=duration, loop=0, **kw)
    return path


def load_latents(path: str | Path, num_ws: int) -> tuple[list[str], np.ndarray]:
    """Inverted W/W+ codes: a directory of `<stem>/projected_w.npz` (official projector format, key `w`
    [1, num_ws, w_dim]) or one npz with `w` / `ws` ([N, num_ws, w_dim] or [N, w_dim])."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*/projected_w.npz")) + sorted(path.glob("projected_w.npz"))
        if not files:
            raise ImageError(f"{path}: no */projected_w.npz found (run `jaxinv invert --space w` or w+ first)")
        names = [f.parent.name if f.parent != path else path.name for f in files]
    elif path.is_file():
        files, names = [path], None
    else:
        raise ImageError(f"{path}: no such latents file or directory")
    out = []
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                key = "w" if "w" in z.files else ("ws" if "ws" in z.files else None)
                if key is None:
                    raise ImageError(f"{f}: npz has no 'w' or 'ws' array (keys: {z.files})")
                w = np.asarray(z[key], np.float32)
        except ImageError:
            raise
        except Exception as e:  # zipfile / ValueError on corrupt data
            raise ImageError(f"{f}: not a readable latent npz ({type(e).__name__}: {e})") from None
        if w.ndim == 2:
            w = np.repeat(w[:, None], num_ws, axis=1)
        if w.ndim != 3 or w.shape[1] != num_ws:
            raise ImageError(f"{f}: latent shape {list(w.shape)}, expected [N, {num_ws}, w_dim]")
        out.append(w)
    ws = np.concatenate(out)
    if names is None:
        names = [f"{path.stem}_{i}" for i in range(len(ws))]
    return names, ws


# ---------------------------------------------------------------------------------------------------------
# CLI (`jaxinv edit`)


def _parse_layers(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    a, sep, b = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(a), int(b)
    except ValueError:
        raise ConfigError(f"--layers {text!r}: expected a:b (ws indices, b exclusive)") from None


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", required=True, help="converted model directory or official checkpoint (StyleGAN)")
    parser.add_argument("--latents", required=True, help="inversion output DIR (*/projected_w.npz) or one .npz")
    parser.add_argument("--direction", required=True, help="sefa:K or ganspace:K (K = component index)")
    parser.add_argument("--strength", type=float, required=True, help="largest |strength| of the sweep")
    parser.add_argument("--layers", default=None, help="ws range a:b the edit applies to (default: all)")
    parser.add_argument("--steps", type=int, default=5, help="grid columns: strengths linspace(-S, S, steps)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--video", action="store_true", help="also write an animated sweep (edit.webp)")
    parser.add_argument("--video-format", default="webp", choices=["webp", "gif"])
    parser.add_argument("--frames", type=int, default=24, help="video frames per sweep (-S..S..-S)")
    parser.add_argument("--samples", type=int, default=10000, help="GANSpace: mapped w samples for the PCA")
    parser.add_argument("--batch", type=int, default=8, help="images per rendered batch")
    parser.add_argument("--paste-back", action="store_true",
                        help="--latents from `jaxinv invert --align`: also write OUT/<name>/pasted_<k>.png, each "
                             "edit's face warped back into the original photo (the quad and landmarks in "
                             "<latents>/<name>/align.json)")
    return parser


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    model = load_model_or_pair(args.model)[0]
    _generator(model)
    layers = _parse_layers(args.layers)
    if layers is not None:
        _layer_range(model, layers)
    if args.steps < 1 or args.frames < 2:
        raise ConfigError("--steps must be >= 1 and --frames >= 2")
    names, ws = load_latents(args.latents, int(model.cfg.num_ws))
    dirs, k = directions(model, args.direction, layers, num_samples=args.samples)
    d = dirs.direction(k)
    strengths = np.linspace(-args.strength, args.strength, args.steps).astype(np.float32)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    imgs = render_edits(model, ws, d, strengths, layers, batch_size=args.batch)
    save_grid(imgs, out / "grid.png")
    np.savez(out / "edited_ws.npz", ws=np.asarray(apply_edit(ws[:, None], d, strengths[None], layers)),
             strengths=strengths, names=np.asarray(names))
    dirs.save(out / "directions.npz")
    if args.paste_back:
        n = paste_back_edits(Path(args.latents), names, imgs, out)
        console.log(f"pasted back {n} x {len(strengths)} edits (OUT/<name>/pasted_<k>.png, k = strength index)")
    if args.video:
        half = np.linspace(-args.strength, args.strength, args.frames // 2 + 1, dtype=np.float32)
        sweep = np.concatenate([half, half[-2:0:-1]])
        frames = render_edits(model, ws, d, sweep, layers, batch_size=args.batch)  # [N, T, ...]
        save_video(np.moveaxis(frames, 1, 0), out / f"edit.{args.video_format}")
    console.log(f"{len(ws)} codes x {len(strengths)} strengths along {args.direction} -> {out / 'grid.png'} "
                f"({time.perf_counter() - t0:.1f} s)")
    return 0


def paste_back_edits(latents: Path, names: Sequence[str], imgs: np.ndarray, out: Path) -> int:
    """Each code's edits imgs [N, T, H, W, C] ([-1, 1]) warped into its photo (`align.paste_back`, the quad and
    landmarks of `latents/<name>/align.json`: the face only) -> out/<name>/pasted_<k>.png. Returns how many codes
    had a quad."""
    if not latents.is_dir():
        raise ConfigError(f"latents={str(latents)!r}: paste-back needs the output folder of an aligned inversion")
    missing = [n for n in names if not (latents / n / "align.json").is_file()]
    if missing:
        raise ImageError(f"{latents / missing[0] / 'align.json'}: no alignment record (an inversion without alignment)")
    for name, row in zip(names, imgs, strict=True):
        rec = json.loads((latents / name / "align.json").read_text())
        photo = align.read_photo(rec["source"])
        (out / name).mkdir(parents=True, exist_ok=True)
        for k, img in enumerate(row):
            pasted = align.paste_back(photo, to_uint8(img), np.asarray(rec["quad"]),
                                      landmarks=align.record_landmarks(rec))
            Image.fromarray(pasted).save(out / name / f"pasted_{k}.png")
    return len(names)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m jaxinv.edit ...` (the same options as `jaxinv edit`)."""
    from jaxinv.errors import JaxinvError

    parser = add_arguments(argparse.ArgumentParser(prog="jaxinv edit", description=__doc__.split("\n")[0]))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except JaxinvError as e:
        print(f"jaxinv edit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
