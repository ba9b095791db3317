"""e4e / pSp image encoders (IR / IR-SE ResNet backbones and their style heads) as Flax NNX modules.

Official code: eladrich/pixel2style2pixel 5cfff38 and omertov/encoder4editing 99ea505,
``models/encoders/{helpers,psp_encoders}.py``. Head classes:

* ``GradualStyleEncoder`` (pSp, also in e4e): FPN over body taps 6/20/23 (c1 64x64x128, c2 32x32x256,
  c3 16x16x512 for a 256x256 input), one ``GradualStyleBlock`` per style (coarse 0-2 read c3, middle
  3-6 read p2 = up(c3) + latlayer1(c2), fine 7+ read p1 = up(p2) + latlayer2(c1)).
* ``Encoder4Editing`` (e4e): the same heads; style 0 gives w0, styles 1.. give deltas added to w0
  (``ProgressiveStage``; 18 = Inference uses every delta).
* ``BackboneEncoderUsingLastLayerIntoW`` (pSp: ``[B, 512]``; e4e: repeated to ``[B, n_styles, 512]``).
* ``BackboneEncoderUsingLastLayerIntoWPlus`` (pSp): BN, adaptive 7x7 average pool, Linear, EqualLinear.

Loading folds every eval-mode BatchNorm into the adjacent conv / linear (the BN *before* a padded conv
leaves a border-dependent bias, added as a small separable map), stacks the style blocks that share an
input (coarse / middle / fine groups, run by ``lax.scan``) and stores the weights of the convs that run as
Winograd algorithms (`jaxinv.winograd`) transformed. Tensors are NHWC inside; conv weights HWIO.

Module tree (`jaxinv.models.nn`; one class per official head, `encoder_class(cfg)`), at the params paths:

    input_layer                      InputLayer: weight [3, 3, input_nc, 64], bias, prelu [64]
    body.<i> / body.<lo>-<hi>        Bottleneck (a run of identical stride-1 units stacked on a leading axis):
        conv1                        BNConv2d (res_layer.0 BN + res_layer.1): weight | wino, tap_bias [3, 3, depth]
        prelu                        res_layer.2 [depth]
        conv2                        Conv2d (res_layer.3 + res_layer.4 BN): weight | wino, bias
        se                           SEModule (res_layer.5): fc1 [depth, depth/16], fc2 [depth/16, depth]
        shortcut                     Conv2d (shortcut_layer.0 1x1 + .1 BN), when in != depth
    styles.<coarse|middle|fine>      GradualStyleBlock stacked per group: convs.<0|2|..> Conv2d, linear
    latlayer1 / latlayer2            Lateral: weight [256 | 128, 512], bias
    linear, output_layer_2           Linear (W / W+ heads)
    latent_avg                       Buffer [n_styles, 512] when start_from_latent_avg

`encoder_forward` / `encode` bind the weights to the module of ``cfg.encoder_type`` and call it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from jaxinv import winograd
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models.nn import bind, buffer, param
from jaxinv.state_dict import Entry, fill

__all__ = [
    "HEAD_CLASSES", "Config", "get_blocks", "state_dict_shapes", "config_from_source", "params_from_state_dict",
    "from_source", "encoder_forward", "add_latent_avg", "encode", "face_pool", "bilinear_matrix",
    "adaptive_avg_matrix", "encoder_class", "GradualStyleEncoder", "Encoder4Editing",
    "BackboneEncoderUsingLastLayerIntoW", "BackboneEncoderUsingLastLayerIntoWPlus", "GradualStyleBlock", "Bottleneck",
]

HEAD_CLASSES = (
    "GradualStyleEncoder",
    "Encoder4Editing",
    "BackboneEncoderUsingLastLayerIntoW",
    "BackboneEncoderUsingLastLayerIntoWPlus",
)
_FPN_HEADS = ("GradualStyleEncoder", "Encoder4Editing")
# Official option names -> head class (e4e's psp.py calls the W head 'SingleStyleCodeEncoder').
_ALIASES = {"SingleStyleCodeEncoder": "BackboneEncoderUsingLastLayerIntoW"}
_FAMILY_KEYS = {"psp": "psp", "pixel2style2pixel": "psp", "e4e": "e4e", "encoder4editing": "e4e"}

# get_blocks(): units per stage for each depth; stage (in_channel, depth) pairs; every stage starts with stride 2.
_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
_STAGES = ((64, 64), (64, 128), (128, 256), (256, 512))
FPN_TAPS = (6, 20, 23)  # body indices the FPN heads read (hard-wired in the official forward)
COARSE_IND, MIDDLE_IND = 3, 7  # styles [0, 3) read c3, [3, 7) read p2, [7, n) read p1
_GROUPS = (("coarse", 0, COARSE_IND, 16), ("middle", COARSE_IND, MIDDLE_IND, 32), ("fine", MIDDLE_IND, None, 64))
STYLE_DIM = 512
SE_REDUCTION = 16
BN_EPS = 1e-5  # torch BatchNorm2d default
LEAKY_SLOPE = 0.01  # nn.LeakyReLU() default, GradualStyleBlock
INFERENCE_STAGE = 18  # e4e ProgressiveStage.Inference

# Fast-conv policy (Config.fast; measured on 2 CPU cores, batch 8): F(4x4,3x3) for stride-1 convs from 128
# input channels (the 128-channel units: 0.67 -> 0.38 CPU-s; at 64 channels it loses at 256x256 and gains 5% at
# 128x128, so 64-channel convs stay direct); the stride-2 second convs of the first unit of each stage from 128
# channels as stored S2F2 (units 3 / 7 / 21: 238 -> 212, 142 -> 127, 110 -> 96 ms). Style heads (stride 2): the fine
# group's first conv (~35% of all FLOPs) as S2F4 with its 9x larger weights made per call (storing them
# costs 0.9 GB and is no faster), stored S2F2 weights for the middle group's first conv and the fine
# group's second conv.
WINOGRAD_MIN_CIN = 128
_STORED_S2F2 = {("middle", "0"), ("fine", "2")}  # (style group, official conv index)
_PER_CALL_S2F4 = ("fine", "0")

_DN = ("NHWC", "HWIO", "NHWC")
_HI = lax.Precision.HIGHEST  # no TF32 / bf16 passes on accelerators (parity at 1e-4)


def get_blocks(num_layers: int) -> tuple[tuple[int, int, int], ...]:
    """``(in_channel, depth, stride)`` of every body unit, as the official ``get_blocks`` + ``get_block``."""
    if num_layers not in _UNITS:
        raise ConfigError(f"num_layers={num_layers}: must be one of 50, 100, 152")
    units = []
    for (cin, depth), n in zip(_STAGES, _UNITS[num_layers], strict=True):
        units.append((cin, depth, 2))
        units.extend((depth, depth, 1) for _ in range(n - 1))
    return tuple(units)


@dataclass(frozen=True)
class Config:
    encoder_type: str = "GradualStyleEncoder"  # official head class name (HEAD_CLASSES)
    family: str = "psp"  # "psp" | "e4e": the repo whose class is meant (the W head differs)
    num_layers: int = 50  # backbone depth: 50, 100 or 152 (get_blocks)
    mode: str = "ir_se"  # "ir" (bottleneck_IR) or "ir_se" (bottleneck_IR_SE, with SE modules)
    n_styles: int = 18  # number of W+ codes (2 * log2(resolution) - 2)
    input_nc: int = 3  # input image channels
    progressive_stage: int = INFERENCE_STAGE  # e4e only: deltas 1..stage are added to w0
    start_from_latent_avg: bool = True  # pSp.forward adds latent_avg to the encoder output
    fast: bool = True  # Winograd convs where they pay off (params then hold some transformed weights)

    def __post_init__(self) -> None:
        if self.encoder_type not in HEAD_CLASSES:
            raise ConfigError(f"encoder_type={self.encoder_type!r}: unknown (known: {', '.join(HEAD_CLASSES)})")
        if self.family not in ("psp", "e4e"):
            raise ConfigError(f"family={self.family!r}: must be 'psp' or 'e4e'")
        if self.mode not in ("ir", "ir_se"):
            raise ConfigError(f"mode={self.mode!r}: must be 'ir' or 'ir_se'")
        get_blocks(self.num_layers)
        if self.encoder_type in _FPN_HEADS and self.num_layers != 50:
            # Taps 6/20/23 are fixed: deeper bodies give c3 256 channels, which the 512-channel heads reject.
            raise ConfigError(f"num_layers={self.num_layers}: {self.encoder_type} only works with the 50-layer body")
        if self.encoder_type == "Encoder4Editing" and self.family != "e4e":
            raise ConfigError("Encoder4Editing is an e4e (encoder4editing) head: family must be 'e4e'")
        if self.encoder_type == "BackboneEncoderUsingLastLayerIntoWPlus" and self.family != "psp":
            raise ConfigError("BackboneEncoderUsingLastLayerIntoWPlus is a pSp head: family must be 'psp'")
        if self.n_styles < 1 or self.input_nc < 1:
            raise ConfigError(f"n_styles={self.n_styles}, input_nc={self.input_nc}: must be positive")

    @property
    def units(self) -> tuple[tuple[int, int, int], ...]:
        return get_blocks(self.num_layers)

    @property
    def body_segments(self) -> tuple[tuple[int, int], ...]:
        """Inclusive unit ranges ``(lo, hi)``: runs of identical stride-1 units (stacked, run by a scan)
        and single units; a run ends at every FPN tap so the taps stay observable."""
        segs: list[list[int]] = []
        for i, unit in enumerate(self.units):
            if segs and unit[2] == 1 and self.units[segs[-1][1]] == unit and segs[-1][1] not in FPN_TAPS:
                segs[-1][1] = i
            else:
                segs.append([i, i])
        return tuple((lo, hi) for lo, hi in segs)

    @property
    def se(self) -> bool:
        return self.mode == "ir_se"

    @property
    def num_ws(self) -> int:
        return self.n_styles

    @property
    def w_dim(self) -> int:
        return STYLE_DIM

    @property
    def fpn(self) -> bool:
        return self.encoder_type in _FPN_HEADS

    @property
    def styles_used(self) -> int:
        """Style heads the forward evaluates (e4e stops after ``progressive_stage`` deltas)."""
        if self.encoder_type == "Encoder4Editing":
            return max(1, min(self.progressive_stage + 1, self.n_styles))
        return self.n_styles

    def head_groups(self, used: int | None = None) -> tuple[tuple[str, int, int, int], ...]:
        """``(name, first_style, end_style, spatial)`` of the non-empty coarse / middle / fine groups."""
        n = self.n_styles if used is None else used
        out = []
        for name, lo, hi, spatial in _GROUPS:
            hi = n if hi is None else min(hi, n)
            if hi > lo:
                out.append((name, lo, hi, spatial))
        return tuple(out)


# ---------------------------------------------------------------------------------------------
# Official names and shapes


def _bn_names(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def state_dict_shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """Every official ``encoder`` state_dict name (``encoder.`` stripped) with its shape, in module order."""
    s: dict[str, tuple[int, ...]] = {}
    s["input_layer.0.weight"] = (64, cfg.input_nc, 3, 3)
    s.update(_bn_names("input_layer.1", 64))
    s["input_layer.2.weight"] = (64,)
    if cfg.encoder_type == "BackboneEncoderUsingLastLayerIntoWPlus":  # registered before body
        s.update(_bn_names("output_layer_2.0", 512))
        s["output_layer_2.3.weight"] = (512, 512 * 7 * 7)
        s["output_layer_2.3.bias"] = (512,)
        s["linear.weight"] = (STYLE_DIM * cfg.n_styles, 512)
        s["linear.bias"] = (STYLE_DIM * cfg.n_styles,)
    if cfg.encoder_type == "BackboneEncoderUsingLastLayerIntoW":
        s["linear.weight"] = (STYLE_DIM, 512)
        s["linear.bias"] = (STYLE_DIM,)
    for i, (cin, depth, _) in enumerate(cfg.units):
        p = f"body.{i}"
        if cin != depth:
            s[f"{p}.shortcut_layer.0.weight"] = (depth, cin, 1, 1)
            s.update(_bn_names(f"{p}.shortcut_layer.1", depth))
        s.update(_bn_names(f"{p}.res_layer.0", cin))
        s[f"{p}.res_layer.1.weight"] = (depth, cin, 3, 3)
        s[f"{p}.res_layer.2.weight"] = (depth,)
        s[f"{p}.res_layer.3.weight"] = (depth, depth, 3, 3)
        s.update(_bn_names(f"{p}.res_layer.4", depth))
        if cfg.se:
            s[f"{p}.res_layer.5.fc1.weight"] = (depth // SE_REDUCTION, depth, 1, 1)
            s[f"{p}.res_layer.5.fc2.weight"] = (depth, depth // SE_REDUCTION, 1, 1)
    if cfg.fpn:
        for _, lo, hi, spatial in cfg.head_groups():
            for i in range(lo, hi):
                for j in range(int(math.log2(spatial))):
                    s[f"styles.{i}.convs.{2 * j}.weight"] = (512, 512, 3, 3)
                    s[f"styles.{i}.convs.{2 * j}.bias"] = (512,)
                s[f"styles.{i}.linear.weight"] = (512, 512)
                s[f"styles.{i}.linear.bias"] = (512,)
        s["latlayer1.weight"] = (512, 256, 1, 1)
        s["latlayer1.bias"] = (512,)
        s["latlayer2.weight"] = (512, 128, 1, 1)
        s["latlayer2.bias"] = (512,)
    return s


# ---------------------------------------------------------------------------------------------
# Config from constructor information + weights


def _opts(init: dict[str, Any]) -> dict[str, Any]:
    """Training options, whether nested (golden ``init_kwargs.json``) or flat (checkpoint ``opts``)."""
    opts = dict(init)
    nested = init.get("opts")
    if isinstance(nested, dict):
        opts.update(nested)
    return opts


def _n_styles_from_size(size: Any, where: str, key: str) -> int:
    try:
        size = int(size)
        log = int(math.log(size, 2))
    except (TypeError, ValueError):
        raise CheckpointError(f"{where}: option {key}={size!r} is not a resolution") from None
    return 2 * log - 2


def config_from_source(family: str, init: dict[str, Any], state_dict: dict[str, np.ndarray],
                       where: str = "checkpoint", fast: bool = True) -> Config:
    """Config from the constructor information (class, opts) cross-checked with the weights' names and shapes."""
    fam = _FAMILY_KEYS.get(str(family))
    if fam is None:
        raise CheckpointError(f"{where}: family {family!r} is not an encoder family (e4e / psp)")
    opts = _opts(init)
    head = opts.get("encoder_type") or str(opts.get("class_name", "")).rsplit(".", 1)[-1] or None
    if head is None:
        head = "Encoder4Editing" if fam == "e4e" else "GradualStyleEncoder"
    head = _ALIASES.get(head, head)
    if head not in HEAD_CLASSES:
        raise CheckpointError(f"{where}: encoder_type {head!r} is not a known e4e/pSp encoder head")

    # Depth / mode: the constructor string when present (pSp/e4e always build (50, 'ir_se')), then the weights.
    num_layers, mode = 50, "ir_se"
    m = re.search(r"\(\s*(\d+)\s*,\s*['\"](\w+)['\"]", str(opts.get("constructor", "")))
    declared = m is not None
    if m:
        num_layers, mode = int(m.group(1)), m.group(2)
    for key in ("num_layers", "mode"):
        if key in opts and opts[key] is not None:
            declared = True
            num_layers, mode = (int(opts[key]), mode) if key == "num_layers" else (num_layers, str(opts[key]))
    body = {int(k.split(".")[1]) for k in state_dict if k.startswith("body.")}
    if body:
        n_units = max(body) + 1
        by_units = {sum(u): n for n, u in _UNITS.items()}
        if n_units not in by_units:
            raise CheckpointError(f"{where}: encoder body has {n_units} units (50/100/152 layers have "
                                  f"{', '.join(str(k) for k in by_units)})")
        w_layers, w_mode = by_units[n_units], "ir_se" if "body.0.res_layer.5.fc1.weight" in state_dict else "ir"
        if declared and (w_layers, w_mode) != (num_layers, mode):
            raise CheckpointError(f"{where}: constructor says ({num_layers}, {mode!r}), the weights are "
                                  f"({w_layers}, {w_mode!r})")
        num_layers, mode = w_layers, w_mode

    w_in = state_dict.get("input_layer.0.weight")
    input_nc = int(w_in.shape[1]) if w_in is not None and np.ndim(w_in) == 4 else int(opts.get("input_nc") or 3)
    if fam == "psp" and opts.get("input_nc") is not None and int(opts["input_nc"]) != input_nc:
        raise CheckpointError(f"{where}: opts.input_nc={opts['input_nc']}, the weights take {input_nc} channels")

    # Number of styles: declared (n_styles / output_size / stylegan_size), checked against the weights.
    n_styles = None
    if opts.get("n_styles") is not None:
        n_styles = int(opts["n_styles"])
    elif fam == "e4e" and opts.get("stylegan_size") is not None:
        n_styles = _n_styles_from_size(opts["stylegan_size"], where, "stylegan_size")
    elif fam == "psp" and opts.get("output_size") is not None:
        n_styles = _n_styles_from_size(opts["output_size"], where, "output_size")
    from_weights = None
    if head in _FPN_HEADS:
        idx = {int(k.split(".")[1]) for k in state_dict if k.startswith("styles.")}
        from_weights = max(idx) + 1 if idx else None
    elif head == "BackboneEncoderUsingLastLayerIntoWPlus" and "linear.weight" in state_dict:
        from_weights = int(np.shape(state_dict["linear.weight"])[0]) // STYLE_DIM
    if n_styles is not None and from_weights is not None and n_styles != from_weights:
        raise CheckpointError(f"{where}: options give {n_styles} styles, the weights hold {from_weights}")
    n_styles = n_styles or from_weights or 18

    stage = opts.get("progressive_stage", INFERENCE_STAGE)
    if not isinstance(stage, int):  # an Enum name / value as a string
        stage = INFERENCE_STAGE if str(stage).endswith("Inference") else int(re.sub(r"\D", "", str(stage)) or 0)
    has_avg = state_dict.get("latent_avg") is not None
    start = opts.get("start_from_latent_avg")
    start = has_avg if start is None else bool(start)
    if start and not has_avg:
        raise CheckpointError(f"{where}: start_from_latent_avg is set but the checkpoint has no latent_avg")
    try:
        return Config(encoder_type=head, family=fam, num_layers=num_layers, mode=mode, n_styles=n_styles,
                      input_nc=input_nc, progressive_stage=int(stage), start_from_latent_avg=start, fast=fast)
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Weights: official state_dict -> folded NHWC params


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64)


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float32)  # may stay a (transposed) view: made contiguous once, when stacked or at the end


def _stack(items: list[dict]) -> dict:
    """Stack same-structured param dicts on a new leading axis (one copy per leaf)."""
    leaves0, treedef = jax.tree_util.tree_flatten(items[0])
    out = [np.empty((len(items), *np.shape(a)), np.asarray(a).dtype) for a in leaves0]
    for i, item in enumerate(items):
        for buf, a in zip(out, jax.tree_util.tree_leaves(item), strict=True):
            buf[i] = a
    return jax.tree_util.tree_unflatten(treedef, out)


def _bn_affine(sd: dict, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as ``x * scale + shift`` (float64)."""
    scale = _f64(sd[f"{prefix}.weight"]) / np.sqrt(_f64(sd[f"{prefix}.running_var"]) + BN_EPS)
    return scale, _f64(sd[f"{prefix}.bias"]) - _f64(sd[f"{prefix}.running_mean"]) * scale


def _hwio(w: np.ndarray) -> np.ndarray:
    return np.asarray(w, np.float32).transpose(2, 3, 1, 0)  # OIHW -> HWIO (BN folding promotes to float64)


def _conv_bn(w: np.ndarray, sd: dict, bn: str, alg: winograd.Algorithm | None = None) -> dict[str, np.ndarray]:
    """conv (no bias) followed by BN -> conv with scaled weights and a bias (``alg``: stored Winograd weights)."""
    scale, shift = _bn_affine(sd, bn)
    w = _f64(_hwio(w)) * scale
    if alg is not None:
        return {"wino": winograd.transform_weight(w, alg), "bias": _f32(shift)}
    return {"weight": _f32(w), "bias": _f32(shift)}


def _bn_conv(sd: dict, bn: str, w: np.ndarray, fast: bool) -> dict[str, np.ndarray]:
    """BN followed by a zero-padded conv (no bias): the BN scale goes into the weights; its shift becomes
    per-tap output biases ``[kh, kw, out]`` (padding sees zeros, not the shift, so taps matter at borders).
    With ``fast`` and enough input channels the weights are stored Winograd-transformed (``wino``)."""
    scale, shift = _bn_affine(sd, bn)
    hwio = _f64(_hwio(w))
    out = {"tap_bias": _f32(np.einsum("hwio,i->hwo", hwio, shift))}
    if fast and hwio.shape[2] >= WINOGRAD_MIN_CIN:
        out["wino"] = winograd.transform_weight(hwio * scale[:, None], winograd.F43)
    else:
        out["weight"] = _f32(hwio * scale[:, None])
    return out


def _equal_linear(sd: dict, prefix: str) -> dict[str, np.ndarray]:
    """EqualLinear(lr_mul=1): ``x @ (W / sqrt(in)).T + b`` -> weight ``[in, out]`` pre-scaled."""
    w = _f64(sd[f"{prefix}.weight"])
    return {"weight": _f32(w.T / math.sqrt(w.shape[1])), "bias": _f32(sd[f"{prefix}.bias"])}


def params_from_state_dict(cfg: Config, state_dict: dict[str, np.ndarray], where: str = "checkpoint") -> dict:
    """Convert an ``encoder.``-stripped state_dict (plus optional ``latent_avg``); names and shapes checked.

    ``num_batches_tracked`` buffers are optional (unused in eval mode). With ``cfg.fast`` the weights of the
    convs that run as stored Winograd algorithms are kept transformed (key ``wino`` instead of ``weight``);
    ``fast=False`` keeps plain HWIO convs everywhere (reference path).
    """
    fast = cfg.fast
    shapes = state_dict_shapes(cfg)
    # Checked only: BatchNorms fold into the convs below, several tensors per param.
    fill([Entry(k, shape, None) for k, shape in shapes.items() if not k.endswith("num_batches_tracked")],
         state_dict, where, what=f"{cfg.family} {cfg.encoder_type} state_dict (num_layers {cfg.num_layers}, "
         f"{cfg.mode}, {cfg.n_styles} styles)", ignore=lambda k: k == "latent_avg" or k in shapes)
    sd = state_dict
    params: dict[str, Any] = {}
    inp = _conv_bn(sd["input_layer.0.weight"], sd, "input_layer.1")
    inp["prelu"] = _f32(sd["input_layer.2.weight"])
    params["input_layer"] = inp
    body: list[dict] = []
    for i, (cin, depth, stride) in enumerate(cfg.units):
        p = f"body.{i}"
        alg2 = (winograd.F43 if stride == 1 else winograd.S2F2) if fast and depth >= WINOGRAD_MIN_CIN else None
        unit: dict[str, Any] = {
            "conv1": _bn_conv(sd, f"{p}.res_layer.0", sd[f"{p}.res_layer.1.weight"], fast),
            "prelu": _f32(sd[f"{p}.res_layer.2.weight"]),
            "conv2": _conv_bn(sd[f"{p}.res_layer.3.weight"], sd, f"{p}.res_layer.4", alg2),
        }
        if cfg.se:
            unit["se"] = {"fc1": _f32(_f64(sd[f"{p}.res_layer.5.fc1.weight"])[:, :, 0, 0].T),
                          "fc2": _f32(_f64(sd[f"{p}.res_layer.5.fc2.weight"])[:, :, 0, 0].T)}
        if cin != depth:
            unit["shortcut"] = _conv_bn(sd[f"{p}.shortcut_layer.0.weight"], sd, f"{p}.shortcut_layer.1")
        body.append(unit)
    # Runs of identical units are stacked ("lo-hi", inclusive official indices) and run by a scan: one
    # compiled body instead of one per unit (compile time), the same maths.
    params["body"] = {str(lo) if lo == hi else f"{lo}-{hi}": body[lo] if lo == hi else _stack(body[lo:hi + 1])
                      for lo, hi in cfg.body_segments}

    if cfg.fpn:
        styles = {}
        for name, lo, hi, spatial in cfg.head_groups():
            blocks = []
            for i in range(lo, hi):
                p = f"styles.{i}"
                convs = {}
                for j in range(int(math.log2(spatial))):
                    w = _hwio(sd[f"{p}.convs.{2 * j}.weight"])
                    if fast and (name, str(2 * j)) in _STORED_S2F2:
                        conv = {"wino": winograd.transform_weight(w, winograd.S2F2)}
                    else:
                        conv = {"weight": _f32(w)}
                    conv["bias"] = _f32(sd[f"{p}.convs.{2 * j}.bias"])
                    convs[str(2 * j)] = conv
                blocks.append({"convs": convs, "linear": _equal_linear(sd, f"{p}.linear")})
            # The blocks of a group (styles lo..hi-1) read the same map: stacked on a leading axis, run by scan.
            styles[name] = _stack(blocks)
        params["styles"] = styles
        for lat in ("latlayer1", "latlayer2"):
            params[lat] = {"weight": _f32(_f64(sd[f"{lat}.weight"])[:, :, 0, 0].T), "bias": _f32(sd[f"{lat}.bias"])}
    elif cfg.encoder_type == "BackboneEncoderUsingLastLayerIntoW":
        params["linear"] = _equal_linear(sd, "linear")
    else:  # IntoWPlus: BN -> avgpool 7x7 -> flatten (C, H, W) -> Linear; BN folded into the Linear
        scale, shift = _bn_affine(sd, "output_layer_2.0")
        w = _f64(sd["output_layer_2.3.weight"]).reshape(512, 512, 7, 7)  # [out, c, h, w]
        b = _f64(sd["output_layer_2.3.bias"]) + np.einsum("ochw,c->o", w, shift)
        w_hwc = (w * scale[None, :, None, None]).transpose(2, 3, 1, 0).reshape(7 * 7 * 512, 512)  # NHWC flatten
        params["output_layer_2"] = {"weight": _f32(w_hwc), "bias": _f32(b)}
        params["linear"] = _equal_linear(sd, "linear")

    if cfg.start_from_latent_avg:
        avg = np.asarray(sd["latent_avg"], np.float32)
        if avg.shape[-1] != STYLE_DIM or avg.ndim > 2 or (avg.ndim == 2 and avg.shape[0] not in (1, cfg.n_styles)):
            raise CheckpointError(f"{where}: latent_avg has shape {avg.shape}, expected ({cfg.n_styles}, 512), "
                                  "(1, 512) or (512,)")
        params["latent_avg"] = np.array(np.broadcast_to(avg.reshape(-1, STYLE_DIM), (cfg.n_styles, STYLE_DIM)))
    return jax.tree_util.tree_map(np.ascontiguousarray, params)


def from_source(src: Any, fast: bool = True) -> tuple[Config, dict]:
    """(Config, params) from a `weights_convert.source.Source` of family 'e4e' or 'psp'.

    ``src.init``: golden ``init_kwargs.json`` (class_name, constructor, opts) or checkpoint opts (+ encoder_type,
    n_styles); ``src.state_dict``: ``encoder.``-stripped names, plus ``latent_avg`` when the checkpoint has one.
    ``fast``: ``Config.fast`` (False: plain convs only; faster to load and compile, slower to run).
    """
    where = str((src.provenance or {}).get("source", "checkpoint"))
    cfg = config_from_source(src.family, src.init, src.state_dict, where, fast=fast)
    return cfg, params_from_state_dict(cfg, src.state_dict, where)


# ---------------------------------------------------------------------------------------------
# Static resampling matrices


def bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``[n_out, n_in]`` rows of ``F.interpolate(mode='bilinear', align_corners=True)`` along one axis.

    Source positions and weights are computed in float32 as torch's CPU kernel does (a float64 position
    would differ by ~1e-7 relative).
    """
    f32 = np.float32
    m = np.zeros((n_out, n_in), np.float32)
    scale = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0)
    for i in range(n_out):
        src = f32(scale * f32(i))
        i0 = min(int(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        frac = min(max(f32(src - f32(i0)), f32(0)), f32(1))
        m[i, i0] += f32(1) - frac
        m[i, i1] += frac
    return m


def adaptive_avg_matrix(n_out: int, n_in: int) -> np.ndarray:
    """``[n_out, n_in]`` averaging rows of ``AdaptiveAvgPool`` along one axis (torch bin edges)."""
    m = np.zeros((n_out, n_in), np.float64)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m.astype(np.float32)


def _border_taps(n: int) -> np.ndarray:
    """``[n, 3]`` mask: tap k of a 3-wide, pad-1, stride-1 window at output i reads inside the image."""
    i = np.arange(n)[:, None] + np.arange(3)[None, :] - 1
    return ((i >= 0) & (i < n)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Modules (official names; BatchNorms folded at load time). Shapes: NHWC maps, B = batch; a stacked module
# (``stack`` = n) holds n units' weights on a leading axis and runs them by ``lax.scan``.


def _conv(x: jax.Array, w: jax.Array, stride: int = 1, padding: int = 1) -> jax.Array:
    h, wd = x.shape[1], x.shape[2]
    if w.shape[:2] == (3, 3) and padding == 1 and stride == 2 and h <= 2 and wd <= 2:
        # 1x1 output: only the taps that see the image matter; a dense product (XLA's generic conv path
        # for this case is ~100x slower than its GEMM).
        return jnp.einsum("bhwc,hwco->bo", x, w[1:1 + h, 1:1 + wd], precision=_HI)[:, None, None]
    return lax.conv_general_dilated(x, w, (stride, stride), ((padding, padding), (padding, padding)),
                                    dimension_numbers=_DN, precision=_HI)


def _prelu(x: jax.Array, alpha: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, x * alpha)


def _leaky(x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, x * LEAKY_SLOPE)


def _resize(x: jax.Array, h: int, w: int, matrix) -> jax.Array:
    """Separable spatial resampling ``[B, H, W, C] -> [B, h, w, C]`` by two small dense matrices (made from the
    input size at trace time: the size is not part of the config)."""
    mh = jnp.asarray(matrix(h, x.shape[1]))
    mw = jnp.asarray(matrix(w, x.shape[2]))
    x = jnp.einsum("ih,bhwc->biwc", mh, x, precision=_HI)
    return jnp.einsum("jw,biwc->bijc", mw, x, precision=_HI)


def _upsample_add(x: jax.Array, y: jax.Array) -> jax.Array:
    """The official ``_upsample_add``: bilinear (align_corners) resize of ``x`` to ``y``'s size, plus ``y``."""
    return _resize(x, y.shape[1], y.shape[2], bilinear_matrix) + y


def _scan(stacked: nnx.Module, f, carry: Any, count: int | None = None) -> tuple[Any, Any]:
    """``lax.scan`` of ``f(unit, carry) -> (carry, y)`` over the leading axis of a stacked module's weights
    (the first ``count`` units only when given); ``unit`` is the module holding one unit's weights."""
    graphdef, state = nnx.split(stacked)
    w = nnx.to_pure_dict(state)
    if count is not None and jax.tree_util.tree_leaves(w)[0].shape[0] != count:
        w = jax.tree_util.tree_map(lambda a: a[:count], w)
    return lax.scan(lambda c, p: f(nnx.merge(graphdef, nnx.State(p)), c), carry, w)


class Conv2d(nnx.Module):
    """Conv2d(cin, cout, k, stride, padding) with a bias (a conv + eval BatchNorm folded, or the conv's own bias).

    ``weight`` ``[*lead, k, k, cin, cout]`` (HWIO), or for a 3x3 conv run as a Winograd algorithm (``alg``:
    F43 for stride 1, S2F2 for stride 2) ``wino`` ``[*lead, n*n, cin, cout]`` stored transformed; ``bias``
    ``[*lead, cout]``. ``[B, H, W, cin] -> [B, ceil(H / stride), ceil(W / stride), cout]``.
    """

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, *, wino: bool = False,
                 lead: tuple[int, ...] = ()) -> None:
        self.stride, self.padding = stride, (k - 1) // 2
        self.alg = (winograd.F43 if stride == 1 else winograd.S2F2) if wino else None
        if wino:
            self.wino = param(*lead, self.alg.n ** 2, cin, cout)
        else:
            self.weight = param(*lead, k, k, cin, cout)
        self.bias = param(*lead, cout)

    def conv(self, x: jax.Array) -> jax.Array:
        """The conv without its bias."""
        if self.alg is not None:
            return winograd.conv3x3(x, self.wino[...], self.alg)
        return _conv(x, self.weight[...], self.stride, self.padding)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x) + self.bias[...]


class BNConv2d(nnx.Module):
    """BatchNorm2d(cin) then Conv2d(cin, cout, 3, 1, 1, bias=False) (``res_layer.0`` + ``res_layer.1``), folded:
    the BN scale in ``weight`` ``[3, 3, cin, cout]`` (or F43 ``wino`` ``[36, cin, cout]``), its shift seen by
    each tap as ``tap_bias`` ``[3, 3, cout]`` (zero padding does not see the shift: borders differ).
    ``[B, H, W, cin] -> [B, H, W, cout]``."""

    def __init__(self, cin: int, cout: int, *, wino: bool = False, lead: tuple[int, ...] = ()) -> None:
        self.alg = winograd.F43 if wino else None
        if wino:
            self.wino = param(*lead, winograd.F43.n ** 2, cin, cout)
        else:
            self.weight = param(*lead, 3, 3, cin, cout)
        self.tap_bias = param(*lead, 3, 3, cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        h, w = x.shape[1], x.shape[2]
        # Broadcast sums, not an einsum: XLA fuses them into the consumer in NHWC order (the einsum's [o, i, j]
        # result was transposed inside the PReLU fusion: 47 ms instead of 4 at 256x256x64, batch 8).
        th, tw, tb = _border_taps(h), _border_taps(w), self.tap_bias[...]
        edge = sum(th[:, kh, None, None] * sum(tw[None, :, kw, None] * tb[kh, kw] for kw in range(3))
                   for kh in range(3))
        y = winograd.conv3x3(x, self.wino[...], self.alg) if self.alg is not None else _conv(x, self.weight[...])
        return y + edge


class Linear(nnx.Module):
    """Linear / EqualLinear (its 1/sqrt(in) scale folded): ``weight`` ``[*lead, in, out]``, ``bias`` ``[*lead, out]``.
    ``[B, in] -> [B, out]``."""

    def __init__(self, cin: int, cout: int, lead: tuple[int, ...] = ()) -> None:
        self.weight = param(*lead, cin, cout)
        self.bias = param(*lead, cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x, self.weight[...], precision=_HI) + self.bias[...]


class Lateral(nnx.Module):
    """``latlayer1`` / ``latlayer2``: Conv2d(cin, 512, 1) as ``weight`` ``[cin, 512]``, ``bias`` ``[512]``.
    ``[B, H, W, cin] -> [B, H, W, 512]``."""

    def __init__(self, cin: int, cout: int = 512) -> None:
        self.weight = param(cin, cout)
        self.bias = param(cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.einsum("bhwc,co->bhwo", x, self.weight[...], precision=_HI) + self.bias[...]


class InputLayer(nnx.Module):
    """``input_layer``: Conv2d(input_nc, 64, 3, 1, 1, bias=False), BatchNorm2d(64) (folded: ``weight``
    ``[3, 3, input_nc, 64]``, ``bias`` ``[64]``), PReLU(64) (``prelu`` ``[64]``).
    ``[B, H, W, input_nc] -> [B, H, W, 64]``."""

    def __init__(self, cin: int, cout: int = 64) -> None:
        self.weight = param(3, 3, cin, cout)
        self.bias = param(cout)
        self.prelu = param(cout)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _prelu(_conv(x, self.weight[...]) + self.bias[...], self.prelu[...])


class SEModule(nnx.Module):
    """``res_layer.5``: avg pool, fc1 (1x1 conv, no bias) ``[*lead, C, C/16]``, ReLU, fc2 ``[*lead, C/16, C]``,
    sigmoid. ``[B, H, W, C] -> gate [B, 1, 1, C]``."""

    def __init__(self, channels: int, lead: tuple[int, ...] = ()) -> None:
        self.fc1 = param(*lead, channels, channels // SE_REDUCTION)
        self.fc2 = param(*lead, channels // SE_REDUCTION, channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        s = jnp.mean(x, axis=(1, 2))
        s = jnp.maximum(jnp.dot(s, self.fc1[...], precision=_HI), 0.0)
        return jax.nn.sigmoid(jnp.dot(s, self.fc2[...], precision=_HI))[:, None, None, :]


class Bottleneck(nnx.Module):
    """``body.<i>``: bottleneck_IR / bottleneck_IR_SE = res_layer(x) + shortcut_layer(x).

    res_layer: ``conv1`` (BN + 3x3 conv, `BNConv2d`), ``prelu`` ``[depth]``, ``conv2`` (3x3 conv, ``stride``, + BN:
    `Conv2d`), ``se`` (IR-SE only). shortcut_layer: MaxPool2d(1, stride) when cin == depth, else ``shortcut``
    (1x1 conv, stride, + BN). ``stack``: n identical stride-1 units (``body.<lo>-<hi>``), weights on a leading
    axis, run one after the other. ``[B, H, W, cin] -> [B, H / stride, W / stride, depth]``.
    """

    def __init__(self, cin: int, depth: int, stride: int, se: bool, fast: bool, stack: int | None = None) -> None:
        lead = () if stack is None else (stack,)
        self.stride, self.stack = stride, stack
        self.conv1 = BNConv2d(cin, depth, wino=fast and cin >= WINOGRAD_MIN_CIN, lead=lead)
        self.prelu = param(*lead, depth)
        self.conv2 = Conv2d(depth, depth, 3, stride, wino=fast and depth >= WINOGRAD_MIN_CIN, lead=lead)
        if se:
            self.se = SEModule(depth, lead)
        if cin != depth:
            self.shortcut = Conv2d(cin, depth, 1, stride, lead=lead)

    def unit(self, x: jax.Array) -> jax.Array:
        """One unit (the weights of one unit)."""
        r = _prelu(self.conv1(x), self.prelu[...])
        r = self.conv2(r)
        if hasattr(self, "se"):
            r = r * self.se(r)
        sc = self.shortcut(x) if hasattr(self, "shortcut") else x[:, ::self.stride, ::self.stride]  # MaxPool2d(1, s)
        return r + sc

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.stack is None:
            return self.unit(x)
        return _scan(self, lambda u, h: (u.unit(h), None), x)[0]


class GradualStyleBlock(nnx.Module):
    """``styles.<i>``: log2(spatial) stride-2 3x3 convs (``convs.0``, ``convs.2``, ...; each + LeakyReLU) down to
    1x1, then EqualLinear(512, 512) ``linear``. ``[B, spatial, spatial, 512] -> [B, 512]``.

    Stacked (``stack`` = the styles of one coarse / middle / fine group, which read the same map):
    ``styles.<group>``, ``[B, spatial, spatial, 512] -> [B, count, 512]`` for the first ``count`` styles.
    Convs stored as S2F2 Winograd weights per ``_STORED_S2F2``; ``per_call_s2f4``: the first conv as S2F4 with
    weights transformed in the forward.
    """

    def __init__(self, group: str, spatial: int, fast: bool, stack: int | None = None) -> None:
        lead = () if stack is None else (stack,)
        self.stack = stack
        self.per_call_s2f4 = fast and (group, "0") == _PER_CALL_S2F4
        self.convs = nnx.Dict({str(2 * j): Conv2d(512, 512, 3, 2, wino=fast and (group, str(2 * j)) in _STORED_S2F2,
                                                  lead=lead) for j in range(int(math.log2(spatial)))})
        self.linear = Linear(512, STYLE_DIM, lead)

    def block(self, x: jax.Array, first: jax.Array | None = None) -> jax.Array:
        """One block; ``first``: the first conv's output when computed elsewhere (shared Winograd input
        transform)."""
        keys = sorted(self.convs, key=int)
        for k in keys:
            conv = self.convs[k]
            y = first if (k == keys[0] and first is not None) else conv.conv(x)
            x = _leaky(y + conv.bias[...])
        if x.shape[1:3] != (1, 1):
            raise ConfigError(f"input size: the style heads end at {x.shape[1]}x{x.shape[2]}, not 1x1 "
                              "(the official GradualStyleBlock needs 256x256 inputs)")
        return self.linear(x[:, 0, 0])

    def __call__(self, x: jax.Array, count: int | None = None) -> jax.Array:
        """The first ``count`` blocks of a stack, all reading ``x`` -> ``[B, count, 512]``.

        A scan runs the blocks one after the other: one block's activations are alive at a time (the unrolled
        form kept every block's Winograd products, >1 GB at batch 8, and page-faulted them in on every call).
        The first convs share one Winograd input transform.
        """
        if self.stack is None:
            return self.block(x)
        conv0 = self.convs["0"]
        alg = conv0.alg if conv0.alg is not None else (winograd.S2F4 if self.per_call_s2f4 else None)
        if alg is not None:
            v, geometry = winograd.tile_input(x, alg)

        def block(unit: GradualStyleBlock, carry):
            first = None
            if alg is not None:
                c0 = unit.convs["0"]
                u = c0.wino[...] if c0.alg is not None else winograd.transform_weight_jax(c0.weight[...], alg)
                first = winograd.untile_output(winograd.multiply(v, u), geometry, alg)
            return carry, unit.block(x, first)

        _, out = _scan(self, block, None, count)
        return jnp.swapaxes(out, 0, 1)


class _Encoder(nnx.Module):
    """What every head has: ``input_layer``, ``body`` (official units; runs of identical stride-1 units stacked
    under ``"<lo>-<hi>"``), and pSp's ``latent_avg`` ``[n_styles, 512]`` when ``start_from_latent_avg``.
    Subclasses are the official head classes; `encoder_class` picks one by ``cfg.encoder_type``."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.input_layer = InputLayer(cfg.input_nc)
        units = cfg.units
        self.body = nnx.Dict({
            str(lo) if lo == hi else f"{lo}-{hi}": Bottleneck(*units[lo], cfg.se, cfg.fast,
                                                               None if lo == hi else hi - lo + 1)
            for lo, hi in cfg.body_segments})
        if cfg.start_from_latent_avg:
            self.latent_avg = buffer(cfg.n_styles, STYLE_DIM)  # [1, 512] / [512] in a checkpoint: broadcast

    def head(self, x: jax.Array, taps: dict[int, jax.Array], inter: dict[str, jax.Array]) -> jax.Array:
        raise NotImplementedError

    def __call__(self, x: jax.Array, *, return_intermediates: bool = False):
        """The official ``encoder(x)``: NHWC ``[B, H, W, input_nc]`` -> ``[B, n_styles, 512]`` (``[B, 512]`` for
        pSp's W head); with ``return_intermediates`` also the NHWC maps (see `encoder_forward`)."""
        cfg = self.cfg
        if x.ndim != 4 or x.shape[-1] != cfg.input_nc:
            raise ConfigError(f"input shape {tuple(x.shape)}: expected NHWC [B, H, W, {cfg.input_nc}]")
        inter: dict[str, jax.Array] = {}
        x = self.input_layer(x)
        inter["input_layer"] = x
        taps = {}
        for lo, hi in cfg.body_segments:
            x = self.body[str(lo) if lo == hi else f"{lo}-{hi}"](x)
            if hi in FPN_TAPS:
                taps[hi] = x
                inter[f"body.{hi}"] = x
        out = self.head(x, taps, inter)
        return (out, inter) if return_intermediates else out

    def add_latent_avg(self, out: jax.Array) -> jax.Array:
        """``pSp.forward``'s ``start_from_latent_avg`` step -> ``[B, n_styles, 512]`` codes."""
        return _with_latent_avg(self.cfg, self.latent_avg[...] if self.cfg.start_from_latent_avg else None, out)

    def encode(self, x: jax.Array, *, return_intermediates: bool = False):
        """W+ codes ``[B, n_styles, 512]`` = ``encoder(x) (+ latent_avg)`` (see `encode`)."""
        out, inter = self(x, return_intermediates=True)
        codes = self.add_latent_avg(out)
        if return_intermediates:
            return codes, {"encoder_out": out, **inter}
        return codes


class GradualStyleEncoder(_Encoder):
    """pSp's FPN head: ``styles`` (one `GradualStyleBlock` stack per coarse / middle / fine group: styles
    0-2 read c3 = body.23 ``[B, 16, 16, 512]``, 3-6 read p2 ``[B, 32, 32, 512]``, 7+ read p1 ``[B, 64, 64, 512]``),
    ``latlayer1`` (256 -> 512), ``latlayer2`` (128 -> 512). -> ``[B, n_styles, 512]``."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.styles = nnx.Dict({name: GradualStyleBlock(name, spatial, cfg.fast, hi - lo)
                                for name, lo, hi, spatial in cfg.head_groups()})
        self.latlayer1 = Lateral(256)
        self.latlayer2 = Lateral(128)

    def latents(self, taps: dict[int, jax.Array], inter: dict[str, jax.Array]) -> jax.Array:
        """``[B, styles_used, 512]``: the style blocks the forward evaluates."""
        cfg = self.cfg
        c1, c2, c3 = (taps[i] for i in FPN_TAPS)
        inter.update(c1=c1, c2=c2, c3=c3)
        groups = cfg.head_groups(cfg.styles_used)
        feats = {"coarse": c3}
        if any(name != "coarse" for name, *_ in groups) or cfg.encoder_type == "GradualStyleEncoder":
            feats["middle"] = inter["p2"] = _upsample_add(c3, self.latlayer1(c2))
            feats["fine"] = inter["p1"] = _upsample_add(feats["middle"], self.latlayer2(c1))
        return jnp.concatenate([self.styles[name](feats[name], hi - lo) for name, lo, hi, _ in groups], axis=1)

    def head(self, x, taps, inter):
        return self.latents(taps, inter)


class Encoder4Editing(GradualStyleEncoder):
    """e4e: the same modules; style 0 gives w0, styles 1..progressive_stage give deltas added to w0, the rest
    repeat w0. -> ``[B, n_styles, 512]``."""

    def head(self, x, taps, inter):
        cfg = self.cfg
        used = cfg.styles_used
        latents = self.latents(taps, inter)
        w0 = latents[:, :1]
        deltas = jnp.concatenate([jnp.zeros_like(w0), latents[:, 1:]], axis=1)
        w = w0 + deltas
        if used < cfg.n_styles:
            w = jnp.concatenate([w, jnp.broadcast_to(w0, (w0.shape[0], cfg.n_styles - used, STYLE_DIM))], axis=1)
        return w


class BackboneEncoderUsingLastLayerIntoW(_Encoder):
    """AdaptiveAvgPool2d(1), EqualLinear(512, 512) ``linear``: ``[B, 512]`` (pSp), repeated to
    ``[B, n_styles, 512]`` (e4e)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.linear = Linear(512, STYLE_DIM)

    def head(self, x, taps, inter):
        out = self.linear(jnp.mean(x, axis=(1, 2)))
        if self.cfg.family == "e4e":
            out = jnp.broadcast_to(out[:, None], (out.shape[0], self.cfg.n_styles, STYLE_DIM))
        return out


class BackboneEncoderUsingLastLayerIntoWPlus(_Encoder):
    """``output_layer_2`` (BatchNorm2d(512), AdaptiveAvgPool2d(7), Flatten, Linear(512 * 49, 512); the BN folded
    into the Linear, weight ``[7 * 7 * 512, 512]`` in NHWC flatten order), EqualLinear(512, 512 * n_styles)
    ``linear``. ``[B, H, W, 512] -> [B, n_styles, 512]``."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.output_layer_2 = Linear(7 * 7 * 512, 512)
        self.linear = Linear(512, STYLE_DIM * cfg.n_styles)

    def head(self, x, taps, inter):
        pooled = _resize(x, 7, 7, adaptive_avg_matrix).reshape(x.shape[0], -1)
        out = self.linear(self.output_layer_2(pooled))
        return out.reshape(-1, self.cfg.n_styles, STYLE_DIM)


_HEADS = {cls.__name__: cls for cls in (GradualStyleEncoder, Encoder4Editing, BackboneEncoderUsingLastLayerIntoW,
                                        BackboneEncoderUsingLastLayerIntoWPlus)}


def encoder_class(cfg: Config) -> type[_Encoder]:
    """The module class of ``cfg.encoder_type`` (its ``__init__(cfg)`` declares exactly the params dict)."""
    return _HEADS[cfg.encoder_type]


# ---------------------------------------------------------------------------------------------
# The engine's functions


def encoder_forward(cfg: Config, params: dict, x: jax.Array, *, return_intermediates: bool = False):
    """The official ``encoder(x)`` for NHWC ``x`` ``[B, H, W, input_nc]`` (values in [-1, 1]).

    Returns the encoder output in the official shape (``[B, n_styles, 512]``, or ``[B, 512]`` for pSp's
    ``BackboneEncoderUsingLastLayerIntoW``); with ``return_intermediates`` also a dict of NHWC maps:
    ``input_layer``, ``body.<i>`` for the FPN taps (``c1``/``c2``/``c3`` aliases) and ``p2``/``p1``.
    """
    return bind(encoder_class(cfg), cfg, params)(x, return_intermediates=return_intermediates)


def face_pool(img: jax.Array, size: int = 256) -> jax.Array:
    """``pSp.face_pool``: ``AdaptiveAvgPool2d((size, size))`` of NHWC generator images (no weights)."""
    return _resize(img, size, size, adaptive_avg_matrix)


def _with_latent_avg(cfg: Config, avg: jax.Array | None, out: jax.Array) -> jax.Array:
    codes = out if out.ndim == 3 else jnp.broadcast_to(out[:, None], (out.shape[0], cfg.n_styles, STYLE_DIM))
    return codes if avg is None else codes + avg


def add_latent_avg(cfg: Config, params: dict, out: jax.Array) -> jax.Array:
    """``pSp.forward``'s ``start_from_latent_avg`` step, broadcast to ``[B, n_styles, 512]`` codes. Reads only
    ``params["latent_avg"]`` (the parity handler passes a case's own latent_avg alone)."""
    return _with_latent_avg(cfg, params["latent_avg"] if cfg.start_from_latent_avg else None, out)


def encode(cfg: Config, params: dict, x: jax.Array, *, return_intermediates: bool = False):
    """W+ codes ``[B, n_styles, 512]`` = ``encoder(x) (+ latent_avg)`` for NHWC images in [-1, 1].

    With ``return_intermediates``: ``(codes, aux)``, aux holding ``encoder_out`` (official shape) and the
    NHWC intermediates of :func:`encoder_forward`.
    """
    return bind(encoder_class(cfg), cfg, params).encode(x, return_intermediates=return_intermediates)
