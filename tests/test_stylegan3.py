"""StyleGAN3 (T and R): design statics, filtered_lrelu vs a plain numpy reference, converter name table
against the goldens and the full-size manifests, and golden parity of every output."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import ops
from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models import stylegan3 as sg3
from jaxinv.parity.core import assert_parity
from tests.conftest import GOLDEN, require
from weights_convert.source import Source, read_golden_npz, read_source

CASES = ["sg3t_r64", "sg3r_r64"]
MANIFESTS = ["sg3_t_1024_cbase32768", "sg3_t_256_cbase16384", "sg3_r_1024_cbase32768", "sg3_r_256_cbase16384"]
# Official buffers (not trainable parameters): everything else counts towards the manifest's param_count.
BUFFERS = ("transform", "freqs", "phases", "magnitude_ema", "w_avg", "up_filter", "down_filter")


def _meta(case: str) -> dict:
    return json.loads(require(GOLDEN / f"{case}.meta.json").read_text())


def _weights(case: str) -> dict[str, np.ndarray]:
    with np.load(require(GOLDEN / f"{case}.weights.npz")) as z:
        return {k: z[k] for k in z.files}


# ---------------------------------------------------------------------------------------------
# Design statics


@pytest.mark.parametrize("case", CASES)
def test_design_matches_official(case):
    meta, weights = _meta(case), _weights(case)
    cfg = sg3.Config.from_init_kwargs(meta["init_kwargs"])
    assert cfg.num_ws == meta["num_ws"]
    spec = cfg.input_spec
    assert {"channels": spec.channels, "size": list(spec.size), "sampling_rate": spec.sampling_rate,
            "bandwidth": spec.bandwidth} == meta["synthesis_input"]
    assert len(cfg.layers) == len(meta["layers"])
    for layer, ref in zip(cfg.layers, meta["layers"], strict=True):
        for key, value in ref.items():
            if key.endswith("_filter_shape"):
                f = getattr(layer, key.removesuffix("_shape"))
                assert (None if f is None else list(f.shape)) == value, (layer.name, key)
                continue
            mine = getattr(layer, key)
            mine = list(mine) if isinstance(mine, tuple) else mine
            if isinstance(value, float):
                assert mine == pytest.approx(value, rel=1e-12, abs=0), (layer.name, key, mine, value)
            else:
                assert mine == value, (layer.name, key, mine, value)
        for kind in ("up_filter", "down_filter"):
            name = f"synthesis.{layer.name}.{kind}"
            designed = getattr(layer, kind)
            if designed is None:
                assert name not in weights
            else:  # designed in numpy from the kwargs: bit-identical to the official scipy design
                np.testing.assert_array_equal(designed, weights[name], err_msg=name)


def test_bessel_j1_vs_scipy():
    """The jinc of the radial filters (the Kaiser-sinc ones are compared bit-exactly above)."""
    scipy_special = pytest.importorskip("scipy.special")
    x = np.linspace(0.0, 40.0, 2001)
    err = np.abs(sg3._bessel_j1(x) - scipy_special.j1(x)).max()
    assert err < 1e-13, f"j1 max abs err {err:.3g}"


# ---------------------------------------------------------------------------------------------
# filtered_lrelu vs a slow, obviously correct numpy reference


def _conv_valid(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """True 2-D convolution (flipped kernel), 'valid', of NHWC float64 images."""
    kh, kw = f.shape
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    g = f[::-1, ::-1]
    out = np.zeros((x.shape[0], h, w, x.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += g[i, j] * x[:, i:i + h, j:j + w]
    return out


def _filtered_lrelu_reference(x, fu, fd, b, up, down, padding, gain, slope, clamp, flip):
    """Zero-stuff, pad/crop, full 2-D conv with fu*up^2, lrelu*gain, clamp, full 2-D conv with fd, decimate."""
    x = x.astype(np.float64) + b
    n, h, w, c = x.shape
    z = np.zeros((n, h * up, w * up, c))
    z[:, ::up, ::up] = x
    px0, px1, py0, py1 = padding
    z = np.pad(z, ((0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)))
    z = z[:, max(-py0, 0):z.shape[1] - max(-py1, 0), max(-px0, 0):z.shape[2] - max(-px1, 0)]

    def as2d(f):
        f = np.ones((1, 1)) if f is None else np.asarray(f, np.float64)
        f = np.outer(f, f) if f.ndim == 1 else f
        return f[::-1, ::-1] if flip else f

    z = _conv_valid(z, as2d(fu) * up * up)
    z = np.where(z >= 0, z, z * slope) * gain
    if clamp is not None:
        z = np.clip(z, -clamp, clamp)
    return _conv_valid(z, as2d(fd))[:, ::down, ::down]


FLRELU_CASES = [
    # up, down, padding, down filter kind, input H x W, strip_bytes, flip_filter (with asymmetric filters)
    (2, 2, (9, 8, 9, 8), "sep", (13, 11), 1 << 30, False),          # T layer
    (4, 2, (-6, -9, -6, -9), "sep", (20, 18), 1 << 30, True),       # T layer with 4x upsampling (crop)
    (2, 2, (11, 10, 11, 10), "radial", (9, 12), 1 << 30, False),    # R layer
    (4, 2, (-2, -5, -2, -5), "radial", (18, 18), 1, False),         # R 4x layer, strips of minimum height
    (2, 2, (-11, -12, -11, -12), "sep", (30, 30), 3000, False),     # critically sampled last layer, strips
    (2, 1, (3, -2, 1, 4), "sep", (19, 9), 2000, True),              # asymmetric padding, no downsampling
    (1, 2, (2, 3, 0, 1), "asym2d", (16, 15), 1 << 30, True),        # generic non-symmetric 2-D filter
    (1, 1, (0, 0, 0, 0), None, (7, 7), 1 << 30, False),             # ToRGB (bias + clamp only)
]


@pytest.mark.parametrize("up,down,padding,kind,hw,strip_bytes,flip", FLRELU_CASES)
def test_filtered_lrelu_vs_reference(up, down, padding, kind, hw, strip_bytes, flip):
    rng = np.random.default_rng(sum(hw) + up + 7 * down)
    fu = None if up == 1 else sg3.design_lowpass_filter(6 * up, 3.0, 4.0, 32.0 * up)
    fd = {None: None,
          "sep": sg3.design_lowpass_filter(6 * down, 5.0, 6.0, 64.0) if down > 1 else None,
          "radial": sg3.design_lowpass_filter(6 * down, 5.0, 6.0, 64.0, radial=True),
          "asym2d": rng.normal(size=(5, 4)).astype(np.float32)}[kind]
    if flip and fu is not None:  # flip_filter only matters for asymmetric filters
        fu = (fu + rng.normal(size=fu.shape) * 0.01).astype(np.float32)
    x = rng.normal(size=(2, *hw, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    clamp = 0.7
    ref = _filtered_lrelu_reference(x, fu, fd, b, up, down, padding, np.sqrt(2), 0.2, clamp, flip)
    out = np.asarray(ops.filtered_lrelu(jnp.asarray(x), fu, fd, jnp.asarray(b), up=up, down=down, padding=padding,
                                        gain=np.sqrt(2), slope=0.2, clamp=clamp, flip_filter=flip,
                                        strip_bytes=strip_bytes))
    assert out.shape == ref.shape
    err = np.abs(out - ref).max()
    assert err <= 1e-5 * np.abs(ref).max(), f"max abs err {err:.3g} (max |ref| {np.abs(ref).max():.3g})"


def test_filtered_lrelu_strips_gradient():
    """Strips (rematerialised lax.map) give the same values and gradients as one strip pair."""
    rng = np.random.default_rng(3)
    fu = sg3.design_lowpass_filter(12, 3.0, 4.0, 64.0)
    fd = sg3.design_lowpass_filter(12, 5.0, 6.0, 64.0)
    x = jnp.asarray(rng.normal(size=(1, 12, 11, 3)).astype(np.float32))

    def loss(x, strip_bytes):
        y = ops.filtered_lrelu(x, fu, fd, None, up=2, down=2, padding=(9, 8, 9, 8), strip_bytes=strip_bytes)
        return jnp.sum(jnp.sin(y))

    whole, strips = jax.jit(lambda x: (jax.value_and_grad(loss)(x, 1 << 30), jax.value_and_grad(loss)(x, 1)))(x)
    for a, b in zip(whole, strips, strict=True):
        err = float(jnp.abs(a - b).max())
        assert err <= 1e-5 * float(jnp.abs(a).max()), f"max abs err {err:.3g}"


# ---------------------------------------------------------------------------------------------
# Converter: goldens and full-size manifests


@pytest.mark.parametrize("case", CASES)
def test_pickle_and_golden_npz_convert_identically(case):
    cfg_npz, p_npz = sg3.from_source(read_golden_npz(require(GOLDEN / f"{case}.weights.npz")))
    cfg_pkl, p_pkl = sg3.from_source(read_source(require(GOLDEN / "containers" / f"{case}.pkl")))
    assert cfg_npz == cfg_pkl
    assert jax.tree.structure(p_npz) == jax.tree.structure(p_pkl)
    for a, b in zip(jax.tree.leaves(p_npz), jax.tree.leaves(p_pkl), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_converted_directory_round_trip(tmp_path):
    """python -m weights_convert's output (orbax params + jaxinv.json) reloads to the same model."""
    from jaxinv.checkpoint import load, save
    from jaxinv.models import from_source

    model = from_source(read_source(require(GOLDEN / "containers" / "sg3r_r64.pkl")))
    again = load(save(model, tmp_path / "sg3r"))
    assert again.family == "stylegan3" and again.cfg == model.cfg
    assert again.cfg.layers[0].down_filter.shape == (12, 12)
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _manifest_state_dict(manifest: dict) -> dict[str, np.ndarray]:
    """Zeros of the manifest shapes (cheap), with the designed filters in the filter buffers."""
    cfg = sg3.Config.from_init_kwargs(manifest["init_kwargs"])
    layers = {layer.name: layer for layer in cfg.layers}
    sd = {}
    for e in manifest["state_dict"]:
        parts = e["name"].split(".")
        if parts[-1] in ("up_filter", "down_filter"):
            sd[e["name"]] = getattr(layers[parts[1]], parts[-1])
        else:
            sd[e["name"]] = np.zeros(e["shape"], np.float32)
    return sd


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_names_and_shapes(name):
    manifest = json.loads(require(GOLDEN / "manifests" / f"{name}.json").read_text())
    cfg = sg3.Config.from_init_kwargs(manifest["init_kwargs"])
    assert cfg.num_ws == manifest["num_ws"]
    assert list(cfg.layer_names) == [layer["name"] for layer in manifest["layer_names"]]
    table = sg3.param_table(cfg)
    assert [(e.name, list(e.shape)) for e in table] == [(e["name"], e["shape"]) for e in manifest["state_dict"]]
    n_params = sum(int(np.prod(e.shape)) for e in table if e.name.split(".")[-1] not in BUFFERS)
    assert n_params == manifest["param_count"]

    init = {"class_name": manifest["class_name"], "init_args": [], "init_kwargs": manifest["init_kwargs"]}
    src = Source("stylegan3", init, _manifest_state_dict(manifest), {"source": name})
    cfg2, params = sg3.from_source(src)
    assert cfg2 == cfg
    shapes = sg3.param_shapes(cfg)
    assert jax.tree.structure(params) == jax.tree.structure(shapes)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(shapes), strict=True):
        assert got.shape == want.shape
    # The whole forward traces (no compile) to an image of the configured size.
    z = jax.ShapeDtypeStruct((1, cfg.z_dim), jnp.float32)
    img = jax.eval_shape(lambda p, z: sg3.generate(cfg, p, z, None, 0.7), shapes, z)
    assert img.shape == (1, cfg.img_resolution, cfg.img_resolution, cfg.img_channels)


def test_from_source_reports_missing_extra_and_bad_names():
    manifest = json.loads(require(GOLDEN / "manifests" / "sg3_t_256_cbase16384.json").read_text())
    init = {"class_name": manifest["class_name"], "init_args": [], "init_kwargs": manifest["init_kwargs"]}
    sd = _manifest_state_dict(manifest)
    del sd["synthesis.L3_52_512.bias"]
    sd["synthesis.L3_52_512.noise_const"] = np.zeros((52, 52), np.float32)
    with pytest.raises(CheckpointError, match=r"missing \['synthesis.L3_52_512.bias'\].*noise_const"):
        sg3.from_source(Source("stylegan3", init, sd, {"source": "x.pkl"}))
    sd = _manifest_state_dict(manifest)
    sd["synthesis.L5_84_512.up_filter"] = sd["synthesis.L5_84_512.up_filter"] * 1.01
    with pytest.raises(CheckpointError, match="L5_84_512.up_filter differs"):
        sg3.from_source(Source("stylegan3", init, sd, {"source": "x.pkl"}))
    sd = _manifest_state_dict(manifest)
    sd["mapping.fc0.weight"] = np.zeros((512, 513), np.float32)
    with pytest.raises(CheckpointError, match=r"mapping.fc0.weight has shape \(512, 513\)"):
        sg3.from_source(Source("stylegan3", init, sd, {"source": "x.pkl"}))
    bad = {**init, "init_kwargs": {**manifest["init_kwargs"], "architecture": "skip"}}
    with pytest.raises(CheckpointError, match="unknown Generator kwarg 'architecture'"):
        sg3.from_source(Source("stylegan3", bad, sd, {"source": "x.pkl"}))


# ---------------------------------------------------------------------------------------------
# Forward


def test_conditional_mapping_vs_numpy():
    """c_dim > 0: embed(c), both normalised, concatenated; truncation psi with a cutoff."""
    cfg = sg3.Config(z_dim=6, c_dim=3, w_dim=5, img_resolution=16, img_channels=3, mapping_layers=2)
    rng = np.random.default_rng(0)
    p = {"embed": {"weight": rng.normal(size=(3, 5)), "bias": rng.normal(size=5)},
         "fc0": {"weight": rng.normal(size=(11, 5)) * 100, "bias": rng.normal(size=5) * 10},
         "fc1": {"weight": rng.normal(size=(5, 5)) * 100, "bias": rng.normal(size=5) * 10},
         "w_avg": rng.normal(size=5)}
    z, c = rng.normal(size=(4, 6)), np.eye(3)[[0, 2, 1, 1]]

    def norm(v):
        return v / np.sqrt(np.mean(v**2, axis=1, keepdims=True) + 1e-8)

    def fc(v, layer, lr, act):
        v = v @ (layer["weight"] * lr / np.sqrt(layer["weight"].shape[0])) + layer["bias"] * lr
        return np.where(v >= 0, v, 0.2 * v) * np.sqrt(2) if act else v

    x = np.concatenate([norm(z), norm(fc(c, p["embed"], 1.0, False))], axis=1)
    x = fc(fc(x, p["fc0"], 0.01, True), p["fc1"], 0.01, True)
    ref = np.repeat(x[:, None], cfg.num_ws, axis=1)
    ref[:, :4] = p["w_avg"] + 0.6 * (ref[:, :4] - p["w_avg"])
    params = {"mapping": jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), p)}
    out = np.asarray(sg3.mapping(cfg, params, jnp.asarray(z, jnp.float32), jnp.asarray(c, jnp.float32), 0.6, 4))
    assert_parity(out, ref, "conditional mapping")
    with pytest.raises(ConfigError, match="c must be"):
        sg3.mapping(cfg, params, jnp.asarray(z, jnp.float32))


@pytest.fixture(scope="module", params=CASES)
def golden_checks(request):
    """All checks of the parity handler for one case (one compiled synthesis per case)."""
    from jaxinv.parity import stylegan3 as handler
    from jaxinv.parity.core import load_case

    case = load_case(require(GOLDEN / f"{request.param}.io.npz"))
    assert handler.detect(case)
    return request.param, case.io, {c.name: c for c in handler.run(case)}


def test_golden_parity(golden_checks):
    case, io, checks = golden_checks
    outputs = {n for n in io if n not in ("z", "c", "wplus", "psi", "truncation_cutoff")}
    assert set(checks) == outputs, f"{case}: outputs not checked: {sorted(outputs - set(checks))}"
    failures = []
    for name, check in sorted(checks.items()):
        err, tol, ok = check.result()
        if not ok:
            failures.append(f"{name}: max abs err {err:.3g} > tol {tol:.3g}")
    assert not failures, f"{case}: " + "; ".join(failures)


def test_styles_input_and_noise_arguments():
    """S-space input runs exactly the ws forward (same jaxpr); StyleGAN3 has no noise to pass."""
    case = "sg3t_r64"
    cfg, params = sg3.from_source(read_golden_npz(require(GOLDEN / f"{case}.weights.npz")))
    ws = jnp.zeros((2, cfg.num_ws, cfg.w_dim))
    via_ws = jax.make_jaxpr(lambda p, ws: sg3.synthesis(cfg, p, ws))(params, ws)
    via_styles = jax.make_jaxpr(lambda p, ws: sg3.synthesis(cfg, p, styles=sg3.styles(cfg, p, ws)))(params, ws)
    assert str(via_styles) == str(via_ws)
    with pytest.raises(ConfigError, match="no noise inputs"):
        sg3.synthesis(cfg, params, ws, noise={cfg.layer_names[0]: jnp.zeros((36, 36))})
    with pytest.raises(ConfigError, match="noise_mode"):
        sg3.synthesis(cfg, params, ws, noise_mode="fixed")
    with pytest.raises(ConfigError, match="ws must be"):
        sg3.synthesis(cfg, params, ws[:, 1:])
