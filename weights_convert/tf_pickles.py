"""TF-era official pickles: the `(G, D, Gs)` snapshot tuples of the NVlabs TensorFlow code, read without
TensorFlow or torch.

The unpickler (`torch_formats`, allow-listed globals only) rebuilds each `dnnlib.tflib.network.Network` (and
PGGAN's `tfutil.Network`) as a `TFNetwork` that keeps the state its `__getstate__` wrote (version, name,
static_kwargs, components, build_module_src, build_func_name, variables); the pickled build module is text
and is never executed. `Gs` (the EMA generator) is what is converted.

PGGAN (`G_paper`) and StyleGAN (`G_style`) keep their TF variables (`jaxinv.models.pggan` / `stylegan1`
convert them). StyleGAN2 TF (`G_main`)
becomes the NVlabs stylegan2-ada-pytorch `Generator` state_dict, by the facts of the official `legacy.py`
(golden PICKLE_FORMAT.md 1.5): kwargs with the TF build function's defaults, dense and conv layouts
transposed, `Conv0_up` / `Skip` kernels spatially flipped, `mod_bias + 1`, noise inputs `[1, 1, R, R] -> [R, R]`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from weights_convert.errors import CheckpointError

_STATE_KEYS = ("version", "name", "static_kwargs", "build_func_name", "variables")  # + components (not PGGAN)


class TFNetwork:
    """The pickled state of one TF `Network`: nothing of it is code that runs."""

    version: int
    name: str
    static_kwargs: dict[str, Any]
    components: dict[str, TFNetwork]
    build_func_name: str
    variables: list[tuple[str, np.ndarray]]

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or any(k not in state for k in _STATE_KEYS):
            have = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"TF Network state lacks {[k for k in _STATE_KEYS if k not in (state or {})]} "
                             f"(has {have})")
        kw, comps, variables = state["static_kwargs"], state.get("components", {}), state["variables"]
        if not isinstance(kw, dict) or not all(isinstance(k, str) for k in kw):
            raise ValueError("TF Network static_kwargs is not a dict of names")
        if not isinstance(comps, dict) or not all(isinstance(c, TFNetwork) for c in comps.values()):
            raise ValueError("TF Network components are not Networks")
        if not isinstance(variables, list | tuple) or not all(
                isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                and isinstance(v[1], np.ndarray | np.generic) for v in variables):
            raise ValueError("TF Network variables are not (name, numpy array) pairs")
        if not isinstance(state["build_func_name"], str) or not isinstance(state["version"], int):
            raise ValueError("TF Network build_func_name / version of the wrong type")
        self.version, self.name = state["version"], str(state["name"])
        self.static_kwargs, self.components = dict(kw), dict(comps)
        self.build_func_name = state["build_func_name"]
        self.variables = [(name, np.asarray(value)) for name, value in variables]  # scalars (lod) as 0-d

    def params(self) -> dict[str, np.ndarray]:
        """Own variables by name, component variables as '<component>/<name>' (as legacy.py collects them)."""
        out = {name: value for name, value in self.variables}
        for cname, comp in self.components.items():
            out.update({f"{cname}/{k}": v for k, v in comp.params().items()})
        return out


def is_tf_snapshot(obj: Any) -> bool:
    return isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, TFNetwork) for n in obj)


def _stylegan2_kwargs(path: Any, kw: dict[str, Any]) -> dict[str, Any]:
    """NVlabs `Generator` kwargs from G_main's static_kwargs (defaults of the TF build function)."""
    known: set[str] = set()

    def arg(name: str, default: Any = None, none: Any = None) -> Any:
        known.add(name)
        value = kw.get(name, default)
        return none if value is None else value

    out = {
        "z_dim": arg("latent_size", 512), "c_dim": arg("label_size", 0), "w_dim": arg("dlatent_size", 512),
        "img_resolution": arg("resolution", 1024), "img_channels": arg("num_channels", 3),
        "mapping_kwargs": {
            "num_layers": arg("mapping_layers", 8), "embed_features": arg("label_fmaps"),
            "layer_features": arg("mapping_fmaps"), "activation": arg("mapping_nonlinearity", "lrelu"),
            "lr_multiplier": arg("mapping_lrmul", 0.01), "w_avg_beta": arg("w_avg_beta", 0.995, none=1),
        },
        "synthesis_kwargs": {
            "channel_base": arg("fmap_base", 16384) * 2, "channel_max": arg("fmap_max", 512),
            "num_fp16_res": arg("num_fp16_res", 0), "conv_clamp": arg("conv_clamp"),
            "architecture": arg("architecture", "skip"), "resample_filter": arg("resample_kernel", [1, 3, 3, 1]),
            "use_noise": arg("use_noise", True), "activation": arg("nonlinearity", "lrelu"),
        },
    }
    known |= {"truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure"}  # sampling-time only
    unknown = sorted(set(kw) - known)
    if unknown:
        raise CheckpointError(f"{path}: StyleGAN2 TF Gs has build kwargs this reader does not know: {unknown}")
    if out["c_dim"]:
        raise CheckpointError(f"{path}: conditional StyleGAN2 TF pickles (label_size={out['c_dim']}) are not "
                              "supported")
    return out


def _stylegan2_state_dict(path: Any, tf: dict[str, np.ndarray], resolution: int) -> dict[str, np.ndarray]:
    """NVlabs state_dict names -> arrays (PICKLE_FORMAT.md 1.5); every TF variable must be used once."""
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        if name not in tf:
            raise CheckpointError(f"{path}: StyleGAN2 TF Gs has no variable '{name}'")
        used.add(name)
        return np.asarray(tf[name], np.float32)

    def conv(w: np.ndarray) -> np.ndarray:  # [kh, kw, in, out] -> [out, in, kh, kw]
        return np.ascontiguousarray(w.transpose(3, 2, 0, 1))

    def modulated(prefix: str, tf_layer: str, flip: bool = False) -> dict[str, np.ndarray]:
        w = take(f"synthesis/{tf_layer}/weight")
        return {f"{prefix}.weight": conv(w[::-1, ::-1] if flip else w),
                f"{prefix}.bias": take(f"synthesis/{tf_layer}/bias"),
                f"{prefix}.affine.weight": np.ascontiguousarray(take(f"synthesis/{tf_layer}/mod_weight").T),
                f"{prefix}.affine.bias": take(f"synthesis/{tf_layer}/mod_bias") + np.float32(1)}

    def noise(prefix: str, tf_layer: str, index: int) -> dict[str, np.ndarray]:
        return {f"{prefix}.noise_strength": take(f"synthesis/{tf_layer}/noise_strength"),
                f"{prefix}.noise_const": take(f"synthesis/noise{index}")[0, 0]}

    sd = {"mapping.w_avg": take("dlatent_avg")}
    i = 0
    while f"mapping/Dense{i}/weight" in tf:
        sd[f"mapping.fc{i}.weight"] = np.ascontiguousarray(take(f"mapping/Dense{i}/weight").T)
        sd[f"mapping.fc{i}.bias"] = take(f"mapping/Dense{i}/bias")
        i += 1
    sd["synthesis.b4.const"] = take("synthesis/4x4/Const/const")[0]
    sd |= modulated("synthesis.b4.conv1", "4x4/Conv") | noise("synthesis.b4.conv1", "4x4/Conv", 0)
    sd |= modulated("synthesis.b4.torgb", "4x4/ToRGB")
    for log2 in range(3, int(np.log2(resolution)) + 1):
        r = 2**log2
        b = f"synthesis.b{r}"
        sd |= modulated(f"{b}.conv0", f"{r}x{r}/Conv0_up", flip=True)
        sd |= noise(f"{b}.conv0", f"{r}x{r}/Conv0_up", 2 * log2 - 5)
        sd |= modulated(f"{b}.conv1", f"{r}x{r}/Conv1") | noise(f"{b}.conv1", f"{r}x{r}/Conv1", 2 * log2 - 4)
        if f"synthesis/{r}x{r}/ToRGB/weight" in tf:
            sd |= modulated(f"{b}.torgb", f"{r}x{r}/ToRGB")
        if f"synthesis/{r}x{r}/Skip/weight" in tf:
            sd[f"{b}.skip.weight"] = conv(take(f"synthesis/{r}x{r}/Skip/weight")[::-1, ::-1])
    # lod is a training-time variable of the TF graph (progressive growing), unused by G_main's output
    left = sorted(n for n in set(tf) - used if n != "lod")
    if left:
        raise CheckpointError(f"{path}: StyleGAN2 TF Gs has variables this reader cannot place: {left[:6]}"
                              f"{'...' if len(left) > 6 else ''}")
    return sd


def from_snapshot(path: Any, snapshot: tuple) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    """(family, Source.init, state_dict) of a TF-era `(G, D, Gs)` tuple's `Gs`: StyleGAN2 as the NVlabs
    stylegan2-ada-pytorch state_dict, PGGAN as its TF variables (`jaxinv.models.pggan` reads those)."""
    gs = snapshot[2]
    if gs.build_func_name == "G_paper":
        variables = gs.params()
        bad = sorted(n for n, v in variables.items() if v.dtype != np.float32)
        if bad:
            raise CheckpointError(f"{path}: PGGAN TF Gs variables not float32: {bad[:6]}")
        return "pggan", {"build_func": "G_paper", "static_kwargs": gs.static_kwargs}, variables
    if gs.build_func_name == "G_style":
        missing = [c for c in ("mapping", "synthesis") if c not in gs.components]
        if missing:
            raise CheckpointError(f"{path}: StyleGAN TF Gs lacks the component(s) {missing}")
        variables = gs.params()
        bad = sorted(n for n, v in variables.items() if v.dtype != np.float32)
        if bad:
            raise CheckpointError(f"{path}: StyleGAN TF Gs variables not float32: {bad[:6]}")
        return "stylegan1", {"build_func": "G_style", "static_kwargs": gs.static_kwargs,
                             "mapping_kwargs": gs.components["mapping"].static_kwargs,
                             "synthesis_kwargs": gs.components["synthesis"].static_kwargs}, variables
    if gs.build_func_name == "G_main":
        if gs.version < 4:
            raise CheckpointError(f"{path}: TF Network version {gs.version} (StyleGAN2 pickles are version >= 4)")
        missing = [c for c in ("mapping", "synthesis") if c not in gs.components]
        if missing:
            raise CheckpointError(f"{path}: StyleGAN2 TF Gs lacks the component(s) {missing}")
    return ("stylegan2", *stylegan2_from_variables(path, gs.build_func_name, gs.static_kwargs, gs.params()))


def stylegan2_from_variables(path: Any, func: str, static_kwargs: dict[str, Any],
                             tf: dict[str, np.ndarray]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The same from Gs's build function name, static_kwargs and variables ('mapping/...', 'synthesis/...')."""
    if func != "G_main":
        raise CheckpointError(f"{path}: TensorFlow-era pickle whose Gs is built by {func!r}: not a known generator")
    kwargs = _stylegan2_kwargs(path, static_kwargs)
    if any(re.fullmatch(r"synthesis/ToRGB_lod\d+/.*", n) for n in tf):
        raise CheckpointError(f"{path}: StyleGAN2 TF pickle of the 'orig' architecture (ToRGB_lod*): not supported")
    sd = _stylegan2_state_dict(path, tf, kwargs["img_resolution"])
    syn = kwargs["synthesis_kwargs"]
    init = {"class_name": "training.networks.Generator", "init_args": [], "init_kwargs": kwargs,
            "resolved": {"conv_clamp": syn["conv_clamp"], "architecture": syn["architecture"],
                         "repo": "stylegan2-ada-pytorch"},
            "tf_build_func": func, "tf_static_kwargs": {k: v for k, v in static_kwargs.items()
                                                        if isinstance(v, int | float | str | bool | None)}}
    return init, sd
