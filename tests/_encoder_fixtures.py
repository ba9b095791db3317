"""Weights for small encoder / decoder test models, in the official state_dict layouts."""

import math

import numpy as np

from jaxinv.models import encoders as enc
from jaxinv.models import rosinality as ros
from jaxinv.procedural import proc_tensor

_SCALES = {  # golden README section 6 scale rules by parameter kind: (scale, offset)
    "bn.weight": (0.2, 1.0), "bn.bias": (0.1, 0.0), "bn.running_mean": (0.1, 0.0), "bn.running_var": (0.5, 1.0),
    "prelu": (0.1, 0.25), "bias": (0.1, 0.0),
}


def random_encoder_state_dict(cfg: enc.Config, seed: str) -> dict[str, np.ndarray]:
    bn_prefixes = {k.rsplit(".", 1)[0] for k in enc.state_dict_shapes(cfg) if k.endswith("running_var")}
    sd = {}
    for name, shape in enc.state_dict_shapes(cfg).items():
        prefix, leaf = name.rsplit(".", 1)
        if leaf == "num_batches_tracked":
            sd[name] = np.array(1000, np.int64)
            continue
        if prefix in bn_prefixes:
            scale, offset = _SCALES[f"bn.{leaf}"]
        elif len(shape) == 1 and leaf == "weight":
            scale, offset = _SCALES["prelu"]
        elif leaf == "bias":
            scale, offset = _SCALES["bias"]
        elif prefix.endswith("linear") and len(shape) == 2 and "output_layer" not in prefix:
            scale, offset = math.sqrt(3.0), 0.0  # EqualLinear rescales by 1/sqrt(in)
        else:
            scale, offset = math.sqrt(3.0 / int(np.prod(shape[1:]))), 0.0
        sd[name] = proc_tensor(seed, name, shape, scale, offset)
    return sd


def small_decoder_state_dict(size: int, channels: tuple[int, ...], seed: int = 0) -> dict[str, np.ndarray]:
    """A rosinality g_ema state_dict (style_dim 512, n_mlp 8: the e4e / pSp decoder's) with random weights as
    the official init draws them (unit-normal; mapping weights divided by lr_mul; modulation bias 1), small
    noise strengths."""
    cfg = ros.Config(size=size, style_dim=512, n_mlp=8, channels=channels)
    rng = np.random.default_rng(seed)
    sd = {}
    for name, shape in ((e.name, e.shape) for e in ros.param_table(cfg)):
        a = rng.standard_normal(shape).astype(np.float32)
        if name.startswith("style.") and name.endswith(".weight"):
            a = a / cfg.lr_mlp  # EqualLinear(lr_mul) stores randn / lr_mul
        elif name.endswith("modulation.bias"):
            a = np.ones_like(a)
        elif name.endswith("noise.weight"):
            a = np.full_like(a, 0.1)
        elif name.endswith(".bias"):
            a = 0.1 * a
        sd[name] = a
    for name in ros.kernel_buffer_names(cfg):
        sd[name] = np.asarray(cfg.filter, np.float32) * 4
    return sd
