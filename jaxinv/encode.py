"""Learning-based inversion: e4e / pSp encoders as batched forward passes, and their codes as optimisation starts.

    pair = load_encoder("e4e_ffhq_encode.pt")            # official .pt, or a `python -m weights_convert` folder
    out = encode_images(pair, x256)                      # codes [N, n_styles, 512], images, images_256
    jaxinv.invert(pair.decoder, targets, space="w+", init_latents=encoder_start(pair, targets, ...))

The official inference scripts feed `Resize((256, 256))` + `Normalize(0.5, 0.5)` images and run the decoder
with `randomize_noise=False` (the stored noise buffers); pSp's `face_pool` average-pools the result to 256.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxinv import download
from jaxinv.checkpoint import load, load_models
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.generators import Generator
from jaxinv.images import Preprocess
from jaxinv.models import Model
from jaxinv.models import encoders as enc

ENCODER_SIZE = 256  # the official transforms' Resize((256, 256))
ENCODER_FAMILIES = ("e4e", "psp")


@dataclass(frozen=True)
class Encoder:
    """An e4e / pSp encoder as a pytree (params are leaves, cfg static), so it can enter jitted programs."""

    family: str
    cfg: enc.Config
    params: Any

    @property
    def num_ws(self) -> int:
        return int(self.cfg.n_styles)

    @property
    def w_dim(self) -> int:
        return enc.STYLE_DIM

    def code_mismatch(self, gen: Any) -> str | None:
        """Why generator `gen` cannot take this encoder's codes, or None when it can."""
        if gen.has_w and (gen.num_ws, gen.w_dim) == (self.num_ws, self.w_dim):
            return None
        want = f"[{gen.num_ws}, {gen.w_dim}]" if gen.has_w else "no W+ codes"
        return f"the encoder makes [{self.num_ws}, {self.w_dim}] codes, the {gen.family} generator takes {want}"

    def __call__(self, x: jax.Array) -> jax.Array:
        """W+ codes [B, n_styles, 512] = encoder(x) (+ latent_avg) for NHWC images in [-1, 1]."""
        return enc.encode(self.cfg, self.params, x)

    def from_generator_images(self, img: jax.Array) -> jax.Array:
        """Codes of generator-resolution targets: resized to 256 first (antialiased linear, as PIL's bilinear
        Resize of the official transforms)."""
        b, _, _, c = img.shape
        if img.shape[1:3] != (ENCODER_SIZE, ENCODER_SIZE):
            img = jax.image.resize(img, (b, ENCODER_SIZE, ENCODER_SIZE, c), "linear", antialias=True)
        return self(img)


jax.tree_util.register_dataclass(Encoder, data_fields=["params"], meta_fields=["family", "cfg"])


@dataclass(frozen=True)
class EncoderPair:
    """An e4e / pSp checkpoint: the encoder and the StyleGAN2 decoder it was trained with (None if absent)."""

    encoder: Model
    decoder: Model | None
    path: str

    @property
    def net(self) -> Encoder:
        return Encoder(self.encoder.family, self.encoder.cfg, self.encoder.params)

    def preprocess(self) -> Preprocess:
        """The official inference transform: stretch to 256x256 with bilinear filtering, values in [-1, 1]."""
        nc = int(self.encoder.cfg.input_nc)
        if nc not in (1, 3):
            raise ConfigError(f"{self.path}: encoder takes {nc}-channel inputs (not images); only 1 or 3 supported")
        return Preprocess(ENCODER_SIZE, channels=nc, resample="bilinear", stretch=True)


def load_model_or_pair(spec: str | Path) -> tuple[Model, EncoderPair | None]:
    """A generator, or an e4e / pSp checkpoint's decoder with its pair: `jaxinv invert --model` accepts both.
    A torch file is read once whichever it holds."""
    models = load_models(spec)
    if models[0].family not in ENCODER_FAMILIES:
        return models[0], None
    pair = _checked_pair(Path(spec), models[0], models[1] if len(models) > 1 else None)
    if pair.decoder is None:
        raise ConfigError(f"{spec}: an e4e / pSp encoder without a decoder (generator) to invert into")
    return pair.decoder, pair


def load_encoder(path: str | Path, decoder: str | Path | None = None) -> EncoderPair:
    """An official e4e / pSp `.pt` (read without torch), a folder written by `python -m weights_convert`
    (`encoder/` + `decoder/`), or a converted encoder folder (or a URL of a file: cached, `jaxinv.download`).
    `decoder` overrides the checkpoint's decoder."""
    path = Path(download.local_path(path))
    models = load_models(path, decoder=decoder is None)
    if models[0].family not in ENCODER_FAMILIES:
        raise CheckpointError(f"{path}: not an e4e / pSp encoder (model family {models[0].family!r})")
    dec = load(decoder) if decoder is not None else models[1] if len(models) > 1 else None
    return _checked_pair(path, models[0], dec)


def _checked_pair(path: Path, encoder: Model, decoder: Model | None) -> EncoderPair:
    pair = EncoderPair(encoder, decoder, str(path))
    if decoder is not None and (why := pair.net.code_mismatch(Generator.from_model(decoder))) is not None:
        raise CheckpointError(f"{path}: {why}")
    return pair


def _forward(net: Encoder, gen: Any, x: jax.Array) -> dict[str, jax.Array]:
    codes = net(x)
    out = {"codes": codes}
    if gen is not None:
        img = gen.synthesis(codes)  # stored noise: the official randomize_noise=False
        out["images"] = img
        out["images_256"] = enc.face_pool(img, ENCODER_SIZE)
    return out


_forward_jit = jax.jit(_forward)


def encode_images(pair: EncoderPair, images: Any) -> dict[str, np.ndarray]:
    """Images [N, 256, 256, C] in [-1, 1] (see `EncoderPair.preprocess`) -> codes [N, n_styles, 512] and, with a
    decoder, images [N, R, R, 3] (decoder resolution) and images_256 (face_pool)."""
    x = jnp.asarray(images, jnp.float32)
    want = (ENCODER_SIZE, ENCODER_SIZE, int(pair.encoder.cfg.input_nc))
    if x.ndim != 4 or x.shape[1:] != want:
        raise ConfigError(f"encode: expected images [N, {want[0]}, {want[1]}, {want[2]}], got {tuple(x.shape)}")
    gen = Generator.from_model(pair.decoder) if pair.decoder is not None else None
    return jax.tree_util.tree_map(np.asarray, _forward_jit(pair.net, gen, x))


def encoder_start(pair: EncoderPair, targets: Any, gen: Any, space: Any) -> dict[str, np.ndarray]:
    """The code entries of `space` (prepared) whose generator input is the encoder's W+ codes of `targets`
    (generator resolution, [-1, 1]): pass as `jaxinv.invert(..., init_latents=...)` (restart 0 starts there)."""
    start = _start_jit(pair.net, gen, space, jnp.asarray(targets, jnp.float32))
    return jax.tree_util.tree_map(np.asarray, start)


_start_jit = jax.jit(lambda net, gen, space, targets: space.from_ws(gen, net.from_generator_images(targets)))


# ---------------------------------------------------------------------------------------------------------
# `jaxinv encode` as a resumable batch job (jaxinv.jobs)


def _encode_program(net: Encoder, gen: Any, targets: jax.Array, ids: jax.Array, seed: jax.Array) -> dict:
    from jaxinv import metrics

    out = _forward(net, gen, targets)
    if gen is not None:
        rec = out["images_256"]
        if rec.shape[-1] != targets.shape[-1]:  # grayscale input, RGB decoder: compare in grayscale
            rec = jnp.mean(jnp.clip(rec, -1, 1), axis=-1, keepdims=True)
        out["psnr"], out["ssim"] = metrics.psnr_ssim_signed(rec, targets)
    return out


def encode_spec(pair: EncoderPair, load: Any, *, batch_size: int = 8, devices: Any = None,
                preprocess: dict[str, Any] | None = None) -> Any:
    """The JobSpec of `jaxinv encode`: per image DIR/<name>/ target.png (the 256 encoder input), latent.npz
    (`w`: the codes, [1, n_styles, 512]), projected_w.npz (the official projector's format) and, with a
    decoder, proj.png (decoder resolution) and proj_256.png (face_pool); metrics.csv: PSNR / SSIM of
    proj_256 against the input."""
    from jaxinv import jobs
    from jaxinv.distributed import Devices

    devices = devices or Devices.local()
    bs = devices.global_batch(batch_size)
    gen = Generator.from_model(pair.decoder) if pair.decoder is not None else None
    net = pair.net
    call = jobs.compile_batch_fn(_encode_program, devices, (net, gen))
    shape = (ENCODER_SIZE, ENCODER_SIZE, int(pair.encoder.cfg.input_nc))
    manifest = {"encoder": jobs.tree_fingerprint(net.params), "encoder_config": repr(net.cfg),
                "decoder": gen.fingerprint() if gen is not None else None, "preprocess": preprocess or {},
                "image_shape": list(shape)}
    res = gen.img_resolution if gen is not None else 0
    png_max = lambda r, c: r * r * c + r * 8 + 4096  # noqa: E731 - a stored PNG is never much larger than raw
    out_bytes = png_max(ENCODER_SIZE, shape[2]) + 2 * (net.num_ws * 512 * 4 + 4096)
    if gen is not None:
        out_bytes += png_max(res, 3) + png_max(ENCODER_SIZE, 3)

    def write(w: Any, ref: Any, host: dict, row: int, target: np.ndarray) -> dict[str, Any]:
        codes = np.asarray(host["codes"][row][None], np.float32)
        if not np.isfinite(codes).all():
            raise jobs.ItemFlagged("encoder codes are NaN/inf")
        w.write("target.png", jobs.png_bytes(target))
        w.write("latent.npz", jobs.npz_bytes({"w": codes}))
        w.write("projected_w.npz", jobs.npz_bytes({"w": codes}))
        if gen is None:
            return {}
        w.write("proj.png", jobs.png_bytes(host["images"][row]))
        w.write("proj_256.png", jobs.png_bytes(host["images_256"][row]))
        return {"psnr": jobs.format_metric(host["psnr"][row]), "ssim": jobs.format_metric(host["ssim"][row])}

    return jobs.JobSpec(kind="encode", manifest=manifest, item_shape=shape, load=load,
                        compute=lambda x, ids: call(x, ids, 0), write=write,
                        columns=["psnr", "ssim"] if gen is not None else [], bytes_per_image=out_bytes,
                        batch_size=bs)
