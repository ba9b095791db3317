"""rosinality/stylegan2-pytorch Generator: golden parity (npz + official .pt containers), channel table from
weight shapes (full-size manifests), a plain-numpy reference of the forward on a small odd config, latent
assembly (truncation / mixing / input_is_latent), noise modes and converter errors."""

import argparse
import dataclasses
import json
from collections import OrderedDict
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv.errors import CheckpointError, ConfigError
from jaxinv.models import rosinality as ros
from jaxinv.parity import rosinality as handler
from jaxinv.parity.core import assert_parity, load_case
from tests.conftest import GOLDEN, require
from weights_convert.rosinality import source_from_checkpoint as read_rosinality_pt
from weights_convert.source import Source, read_golden_npz, read_source

CASE = "rosinality_r64_cm1"
CONTAINERS = GOLDEN / "containers"
WEIGHTS = {"npz": None, "train.pt": f"{CASE}.train.pt", "converted.pt": f"{CASE}.converted.pt"}
INPUTS = {"z", "z2", "wplus", "latent_avg", "psi", "inject_index"}


def _outputs(with_ckpt_avg: bool) -> list[str]:
    meta = GOLDEN / f"{CASE}.meta.json"
    names = [k for k in json.loads(meta.read_text())["io_arrays"] if k not in INPUTS] if meta.exists() else \
        ["w", "latent", "img", "img_trunc", "img_mix", "img_wplus"]
    return names + (["img_trunc.ckpt_latent_avg"] if with_ckpt_avg else [])


def _assert_close(name, out, ref, tol=None):
    assert_parity(out, ref, name, tol)


# ---------------------------------------------------------------------------------------------
# Golden parity through the parity handler (the user-facing converter), per weights source and output

_RESULTS: dict[str, dict] = {}


def _parity(source: str) -> dict:
    if source not in _RESULTS:
        require(GOLDEN / f"{CASE}.io.npz")
        weights = None if WEIGHTS[source] is None else require(CONTAINERS / WEIGHTS[source])
        case = load_case(GOLDEN / CASE, weights)
        assert handler.detect(case)
        _RESULTS[source] = {c.name: c.result() for c in handler.run(case)}
    return _RESULTS[source]


@pytest.mark.parametrize("source,output", [(s, o) for s in WEIGHTS for o in _outputs(s == "converted.pt")])
def test_golden_parity(source, output):
    results = _parity(source)
    assert output in results, f"{source}: handler produced no check {output!r} (got {sorted(results)})"
    err, tol, ok = results[output]
    assert ok, f"{CASE} [{source}] {output}: max abs err {err:.3e} > tol {tol:.3e}"


@pytest.fixture(scope="module")
def golden():
    require(GOLDEN / f"{CASE}.weights.npz")
    src = read_golden_npz(GOLDEN / f"{CASE}.weights.npz")
    cfg, params = ros.from_source(src)
    return src, cfg, params, dict(np.load(GOLDEN / f"{CASE}.io.npz"))


def test_golden_config_and_containers_agree(golden):
    src, cfg, params, _ = golden
    assert cfg.channels == (64, 64, 64, 64, 32) and cfg.num_ws == cfg.n_latent == 10 and cfg.num_layers == 9
    assert (cfg.size, cfg.style_dim, cfg.n_mlp, cfg.lr_mlp) == (64, 128, 8, 0.01)
    assert set(ros.state_dict_names(cfg)) == set(src.state_dict)
    for name in WEIGHTS.values():
        if name is None:
            continue
        ckpt = read_source(require(CONTAINERS / name))
        cfg2, params2 = ros.from_source(ckpt)
        own_avg = params2.pop("latent_avg", None)
        assert (own_avg is not None) == name.endswith("converted.pt") == cfg2.has_latent_avg
        assert dataclasses.replace(cfg2, has_latent_avg=False) == cfg, f"{name}: config {cfg2} != golden {cfg}"
        leaves = jax.tree_util.tree_leaves_with_path(params2)
        assert len(leaves) == len(jax.tree_util.tree_leaves(params))
        for path, leaf in leaves:
            ref = params
            for k in path:
                ref = ref[k.key]
            assert np.array_equal(leaf, ref), f"{name}: {jax.tree_util.keystr(path)} differs from the golden npz"
    train = read_source(CONTAINERS / WEIGHTS["train.pt"])
    assert train.init["init_kwargs"] == {"size": 64, "style_dim": 128, "n_mlp": 8, "channel_multiplier": 1}
    assert train.init["args"]["arch"] == "stylegan2"
    json.dumps(train.init)  # Source.init stays JSON-able


def test_module_tree_is_the_params_tree():
    """The NNX module tree declares exactly the converter's params (official paths, shapes), latent_avg included
    when the checkpoint has one; its methods are the free functions."""
    from jaxinv.models.nn import bind, shapes

    for name in ("npz", "converted.pt"):
        src = read_golden_npz(require(GOLDEN / f"{CASE}.weights.npz")) if WEIGHTS[name] is None else \
            read_source(require(CONTAINERS / WEIGHTS[name]))
        cfg, params = ros.from_source(src)
        want = shapes(ros.Generator, cfg)
        assert jax.tree_util.tree_structure(want) == jax.tree_util.tree_structure(params)
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(lambda s, a: s.shape == np.shape(a), want, params))
        assert ("latent_avg" in want) == cfg.has_latent_avg == (name == "converted.pt")
    g = bind(ros.Generator, cfg, params)
    assert g.convs["2"].conv.modulation.weight.shape == params["convs"]["2"]["conv"]["modulation"]["weight"].shape
    assert g.layer("to_rgbs.1") is g.to_rgbs["1"] and g.convs["0"].conv.blur.kernel.shape == (4, 4)


# ---------------------------------------------------------------------------------------------
# Channel table from weight shapes (full-size official configs)


def _manifest_state_dict(manifest: str) -> tuple[dict, dict]:
    m = json.loads(require(GOLDEN / "manifests" / f"{manifest}.json").read_text())
    sd = {t["name"]: np.zeros(t["shape"], np.float32) for t in m["state_dict"]}
    kernel = ros.make_kernel(m["init_kwargs"]["blur_kernel"]) * 4
    for name in sd:
        if name.endswith(".kernel"):
            sd[name] = kernel.copy()
    return m, sd


@pytest.mark.parametrize("manifest", ["rosinality_256_cm1", "rosinality_1024_cm2"])
def test_channel_table_from_weight_shapes(manifest):
    m, sd = _manifest_state_dict(manifest)
    # convert_weight.py files carry no constructor info: everything comes from the weights.
    cfg, params = ros.from_source(Source("rosinality", {}, sd, {"source": manifest}))
    size = m["init_kwargs"]["size"]
    expected = tuple(m["channels"][str(2**i)] for i in range(2, int(np.log2(size)) + 1))
    assert cfg.channels == expected, f"{manifest}: channels {cfg.channels} != {expected}"
    assert (cfg.size, cfg.style_dim, cfg.n_mlp, cfg.n_latent, cfg.num_layers) == (
        size, m["init_kwargs"]["style_dim"], m["init_kwargs"]["n_mlp"], m["n_latent"], m["num_layers"])
    assert cfg.channels == ros.official_channels(size, m["init_kwargs"]["channel_multiplier"])
    assert set(ros.state_dict_names(cfg)) == set(sd)
    assert sum(x.size for x in jax.tree_util.tree_leaves(params)) == sum(
        v.size for k, v in sd.items() if not k.endswith(".kernel"))  # every value kept, blur kernels in cfg
    for name, path, shape in ((e.name, e.path, e.shape) for e in ros.param_table(cfg)):
        leaf = params
        for k in path:
            leaf = leaf[k]
        assert leaf.size == int(np.prod(shape)), f"{manifest}: {name} -> {path} {leaf.shape} vs {shape}"
    if size <= 256:  # shapes of a full forward without computing it
        z = jax.ShapeDtypeStruct((2, cfg.style_dim), jnp.float32)
        out = jax.eval_shape(lambda p, z: ros.generate(cfg, p, [z]), params, z)
        assert out.shape == (2, size, size, 3)


def test_init_kwargs_checked_against_weights():
    _, sd = _manifest_state_dict("rosinality_256_cm1")
    init = {"init_kwargs": {"size": 512, "style_dim": 512, "n_mlp": 8}}
    with pytest.raises(CheckpointError, match="size=512 in the constructor arguments, but the weights say 256"):
        ros.from_source(Source("rosinality", init, sd, {"source": "x.pt"}))
    init = {"init_kwargs": {"size": 256}, "channels_override": {"4": 256}}
    with pytest.raises(CheckpointError, match=r"channels_override\[4\]=256, but the weights have 512"):
        ros.from_source(Source("rosinality", init, sd, {"source": "x.pt"}))


def test_missing_and_unexpected_names_are_listed():
    _, sd = _manifest_state_dict("rosinality_256_cm1")
    sd.pop("convs.3.noise.weight")
    sd["convs.3.bias"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"x\.pt: .*missing \['convs\.3\.noise\.weight'\], "
                                              r"unexpected \['convs\.3\.bias'\]"):
        ros.from_source(Source("rosinality", {}, sd, {"source": "x.pt"}))
    _, sd = _manifest_state_dict("rosinality_256_cm1")
    sd["convs.7.activate.bias"] = np.zeros(7, np.float32)
    with pytest.raises(CheckpointError, match=r"convs\.7\.activate\.bias has shape \(7,\), expected \(256,\)"):
        ros.from_source(Source("rosinality", {}, sd, {"source": "x.pt"}))
    _, sd = _manifest_state_dict("rosinality_256_cm1")
    sd["to_rgbs.2.upsample.kernel"] = sd["to_rgbs.2.upsample.kernel"] * 2
    with pytest.raises(CheckpointError, match=r"to_rgbs\.2\.upsample\.kernel differs"):
        ros.from_source(Source("rosinality", {}, sd, {"source": "x.pt"}))
    _, sd = _manifest_state_dict("rosinality_256_cm1")
    sd["latent_avg"] = np.zeros(18 * 512, np.float32)
    with pytest.raises(CheckpointError, match="latent_avg has shape"):
        ros.from_source(Source("rosinality", {}, sd, {"source": "x.pt"}))


def test_source_from_checkpoint_layouts():
    _, sd = _manifest_state_dict("rosinality_256_cm1")
    src = read_rosinality_pt("c.pt", {"g_ema": sd, "latent_avg": np.ones(512, np.float32)}, {"x": 1})
    cfg, params = ros.from_source(src)
    assert params["latent_avg"].shape == (512,) and src.provenance["latent_avg"] is True
    args = argparse.Namespace(arch="swagan", size=256, latent=512, n_mlp=8, channel_multiplier=1)
    with pytest.raises(CheckpointError, match="c.pt: rosinality arch 'swagan' is not supported"):
        read_rosinality_pt("c.pt", {"g_ema": sd, "args": args}, {})
    with pytest.raises(CheckpointError, match="c.pt: 'g_ema' is list"):
        read_rosinality_pt("c.pt", {"g_ema": []}, {})


# ---------------------------------------------------------------------------------------------
# Plain-numpy reference of the official forward on a small odd config (3 n_mlp layers, uneven channels,
# asymmetric 3-tap blur kernel) - independent of jaxinv.ops.

SMALL = dict(size=16, style_dim=8, n_mlp=3, channels=(6, 5, 4), taps=[1.0, 2.0, 3.0], lr_mlp=0.05)


def _small_model(seed=3):
    rng = np.random.default_rng(seed)
    cfg0 = ros.Config(size=SMALL["size"], style_dim=SMALL["style_dim"], n_mlp=SMALL["n_mlp"],
                      channels=SMALL["channels"], blur_kernel=ros._as_tuple2d(ros.make_kernel(SMALL["taps"])))
    sd = {}
    for name, shape in ((e.name, e.shape) for e in ros.param_table(cfg0)):
        sd[name] = rng.standard_normal(shape).astype(np.float32)
        if name.endswith("modulation.bias"):
            sd[name] += 1
        elif name.startswith("style.") and name.endswith(".bias"):
            sd[name] *= 1 / SMALL["lr_mlp"]
        elif name.endswith(".bias") or name.endswith("noise.weight"):
            sd[name] *= 0.3
    for name in ros.kernel_buffer_names(cfg0):
        sd[name] = ros.make_kernel(SMALL["taps"]) * 4
    init = {"init_kwargs": {"size": 16, "lr_mlp": SMALL["lr_mlp"]}}
    cfg, params = ros.from_source(Source("rosinality", init, sd, {"source": "small"}))
    assert cfg == ros.Config(size=16, style_dim=8, n_mlp=3, channels=(6, 5, 4), blur_kernel=cfg0.blur_kernel,
                             lr_mlp=SMALL["lr_mlp"])
    return cfg, params, {k: v.astype(np.float64) for k, v in sd.items()}


def _lrelu(x):
    return np.where(x >= 0, x, 0.2 * x) * np.sqrt(2)


def _np_style(sd, z):
    x = z / np.sqrt(np.mean(z**2, axis=1, keepdims=True) + 1e-8)
    for i in range(1, SMALL["n_mlp"] + 1):
        w = sd[f"style.{i}.weight"] * (SMALL["lr_mlp"] / np.sqrt(SMALL["style_dim"]))
        x = _lrelu(x @ w.T + sd[f"style.{i}.bias"] * SMALL["lr_mlp"])
    return x


def _np_upfirdn(x, k, up, pad0, pad1):
    """One sample [C, H, W]: zero-stuff, pad (crop if negative), convolve with k (flipped correlation)."""
    c, h, w = x.shape
    u = np.zeros((c, h * up, w * up))
    u[:, ::up, ::up] = x
    u = np.pad(u, ((0, 0), (max(pad0, 0), max(pad1, 0)), (max(pad0, 0), max(pad1, 0))))
    u = u[:, max(-pad0, 0): u.shape[1] - max(-pad1, 0), max(-pad0, 0): u.shape[2] - max(-pad1, 0)]
    kf = k[::-1, ::-1]
    oh, ow = u.shape[1] - k.shape[0] + 1, u.shape[2] - k.shape[1] + 1
    return sum(u[:, a: a + oh, b: b + ow] * kf[a, b] for a in range(k.shape[0]) for b in range(k.shape[1]))


def _np_modconv(sd, name, x, s, up, demodulate=True):
    w = sd[f"{name}.conv.weight"][0]  # [out, in, k, k]
    k = w.shape[-1]
    w = w / np.sqrt(w.shape[1] * k * k) * s[None, :, None, None]
    if demodulate:
        w = w / np.sqrt((w**2).sum(axis=(1, 2, 3)) + 1e-8)[:, None, None, None]
    if up:  # conv_transpose2d, stride 2, padding 0: scatter every input pixel
        c, h, wd = x.shape
        out = np.zeros((w.shape[0], 2 * (h - 1) + k, 2 * (wd - 1) + k))
        for a in range(k):
            for b in range(k):
                out[:, a: a + 2 * h: 2, b: b + 2 * wd: 2] += np.einsum("chw,oc->ohw", x, w[:, :, a, b])
        kernel = ros.make_kernel(SMALL["taps"]) * 4
        p = (len(SMALL["taps"]) - 2) - (k - 1)
        return _np_upfirdn(out, kernel, 1, (p + 1) // 2 + 1, p // 2 + 1)
    xp = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    h, wd = x.shape[1:]
    return sum(np.einsum("chw,oc->ohw", xp[:, a: a + h, b: b + wd], w[:, :, a, b]) for a in range(k) for b in range(k))


def _np_generate(sd, latent, noise_on=True):
    """latent [B, n_latent, D] -> NCHW images, with the stored noise buffers."""
    cfg_layers = ros.Config(size=16, style_dim=8, n_mlp=3, channels=SMALL["channels"]).layers
    kernel = ros.make_kernel(SMALL["taps"]) * 4
    p = len(SMALL["taps"]) - 2
    imgs = []
    for b in range(latent.shape[0]):
        x = sd["input.input"][0]
        skip = None
        j = 0
        for name, kind, idx, *_ in cfg_layers:
            mw, mb = sd[f"{name}.conv.modulation.weight"], sd[f"{name}.conv.modulation.bias"]
            s = latent[b, idx] @ (mw / np.sqrt(mw.shape[1])).T + mb
            if kind == "rgb":
                y = _np_modconv(sd, name, x, s, False, demodulate=False) + sd[f"{name}.bias"][0]
                if skip is not None:
                    y = y + _np_upfirdn(skip, kernel, 2, (p + 1) // 2 + 1, p // 2)
                skip = y
            else:
                x = _np_modconv(sd, name, x, s, kind == "up")
                if noise_on:
                    x = x + sd[f"{name}.noise.weight"][0] * sd[f"noises.noise_{j}"][0, 0]
                x = _lrelu(x + sd[f"{name}.activate.bias"][:, None, None])
                j += 1
        imgs.append(skip)
    return np.stack(imgs)


@pytest.fixture(scope="module")
def small():
    cfg, params, sd = _small_model()
    rng = np.random.default_rng(7)
    z, z2 = rng.standard_normal((2, 2, cfg.style_dim)).astype(np.float32)
    layers = jax.jit(partial(ros.synthesis, return_layers=True), static_argnums=0, static_argnames="noise_mode")

    def synth(*args, return_layers=False, **kw):  # one compiled program per input kind / noise mode
        img, outs = layers(*args, **kw)
        return (img, outs) if return_layers else img

    return cfg, params, sd, z, z2, synth


_generate = jax.jit(ros.generate, static_argnums=0, static_argnames=("noise_mode", "return_latents"))


def test_small_forward_matches_numpy_reference(small):
    cfg, params, sd, z, z2, synth = small
    _assert_close("w", ros.mapping(cfg, params, z), _np_style(sd, z.astype(np.float64)))
    img, latent = _generate(cfg, params, [z, z2], inject_index=3, return_latents=True)
    w, w2 = _np_style(sd, z.astype(np.float64)), _np_style(sd, z2.astype(np.float64))
    ref_latent = np.concatenate([np.repeat(w[:, None], 3, 1), np.repeat(w2[:, None], cfg.n_latent - 3, 1)], 1)
    _assert_close("latent (mixing at 3)", latent, ref_latent)
    ref = _np_generate(sd, ref_latent)
    assert img.shape == (2, 16, 16, 3)
    _assert_close("img (mixing, const noise)", np.asarray(img).transpose(0, 3, 1, 2), ref)
    _assert_close("img (noise_mode='none')", np.asarray(synth(cfg, params, latent, noise_mode="none"))
                  .transpose(0, 3, 1, 2), _np_generate(sd, ref_latent, noise_on=False))


def test_small_styles_and_layer_outputs(small):
    cfg, params, sd, z, z2, synth = small
    latent = ros.make_latent(cfg, params, [z])
    s = ros.styles(cfg, params, latent)
    assert list(s) == cfg.layer_names == ["conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0", "convs.2",
                                          "convs.3", "to_rgbs.1"]
    for name, _, idx, c_in, *_ in cfg.layers:
        mw, mb = sd[f"{name}.conv.modulation.weight"], sd[f"{name}.conv.modulation.bias"]
        _assert_close(f"styles.{name}", s[name], np.asarray(latent[:, idx]) @ (mw / np.sqrt(8)).T + mb)
        assert s[name].shape == (2, c_in)
    img, layers = synth(cfg, params, latent, return_layers=True)
    assert np.array_equal(np.asarray(layers["to_rgbs.1"]), np.asarray(img))
    # precomputed S space gives the same image (the inversion engine optimises styles directly)
    _assert_close("img from styles", synth(cfg, params, styles=s), img)


def test_truncation_semantics(small):
    cfg, params, sd, z, z2, synth = small
    w = np.asarray(ros.mapping(cfg, params, z))
    avg = np.linspace(-1, 1, cfg.style_dim, dtype=np.float32)
    lat = ros.make_latent(cfg, params, [z], truncation=0.7, truncation_latent=avg[None])
    _assert_close("truncated latent", lat, np.repeat((avg + 0.7 * (w - avg))[:, None], cfg.n_latent, 1))
    for t in (1, 1.0, 1.5):  # official: only truncation < 1 is applied
        _assert_close(f"truncation={t}", ros.make_latent(cfg, params, [z], truncation=t, truncation_latent=avg[None]),
                      np.repeat(w[:, None], cfg.n_latent, 1), tol=0.0)
    traced = jax.jit(lambda t: ros.make_latent(cfg, params, [z], truncation=t, truncation_latent=avg[None]))
    _assert_close("traced truncation 0.7", traced(0.7), lat)
    _assert_close("traced truncation 1.5", traced(1.5), np.repeat(w[:, None], cfg.n_latent, 1))
    with pytest.raises(ConfigError, match="needs truncation_latent"):
        ros.make_latent(cfg, params, [z], truncation=0.5)
    with_avg = dict(params, latent_avg=jnp.asarray(avg))  # a convert_weight.py checkpoint's own latent_avg
    _assert_close("default truncation_latent", ros.make_latent(cfg, with_avg, [z], truncation=0.7), lat, tol=0.0)
    # truncation applies to both mixing inputs and to W+ inputs
    wplus = np.random.default_rng(1).standard_normal((2, cfg.n_latent, cfg.style_dim)).astype(np.float32)
    _assert_close("W+ truncation", ros.make_latent(cfg, params, [wplus], input_is_latent=True, truncation=0.5,
                                                   truncation_latent=avg[None]), avg + 0.5 * (wplus - avg))


def test_mixing_and_latent_inputs(small):
    cfg, params, sd, z, z2, synth = small
    w, w2 = np.asarray(ros.mapping(cfg, params, z)), np.asarray(ros.mapping(cfg, params, z2))
    seen = set()
    for seed in range(12):  # random inject_index in [1, n_latent - 1], the same per key
        lat = np.asarray(ros.make_latent(cfg, params, [z, z2], key=jax.random.key(seed)))
        k = int(np.sum(np.all(lat == w[:, None], axis=(0, 2))))
        assert 1 <= k <= cfg.n_latent - 1
        assert np.array_equal(lat[:, :k], np.repeat(w[:, None], k, 1)) and np.array_equal(lat[:, k:], np.repeat(
            w2[:, None], cfg.n_latent - k, 1))
        assert np.array_equal(lat, ros.make_latent(cfg, params, [z, z2], key=jax.random.key(seed)))
        seen.add(k)
    assert len(seen) > 1
    _assert_close("input_is_latent w", ros.make_latent(cfg, params, [w], input_is_latent=True),
                  np.repeat(w[:, None], cfg.n_latent, 1), tol=0.0)
    mixed_w = ros.make_latent(cfg, params, [w, w2], input_is_latent=True, inject_index=2)
    _assert_close("mixing of w inputs", mixed_w, ros.make_latent(cfg, params, [z, z2], inject_index=2), tol=0.0)
    with pytest.raises(ConfigError, match="needs a PRNG key"):
        ros.make_latent(cfg, params, [z, z2])
    with pytest.raises(ConfigError, match="3 latent inputs"):
        ros.make_latent(cfg, params, [z, z2, z])
    with pytest.raises(ConfigError, match="expected \\[B, 6, 8\\]"):
        ros.make_latent(cfg, params, [np.zeros((2, 5, 8), np.float32)], input_is_latent=True)


def test_noise_modes_and_overrides(small):
    cfg, params, sd, z, z2, synth = small
    latent = ros.make_latent(cfg, params, [z])
    const = np.asarray(synth(cfg, params, latent))
    stored = {name: params["noises"][f"noise_{j}"] for j, (name, _) in enumerate(cfg.noise_layers)}
    assert [(n, r) for n, r in cfg.noise_layers] == [("conv1", 4), ("convs.0", 8), ("convs.1", 8), ("convs.2", 16),
                                                     ("convs.3", 16)]
    per_sample = {k: jnp.stack([v, -v]) for k, v in stored.items()}  # [B, R, R]
    img = np.asarray(synth(cfg, params, latent, noise=per_sample))
    _assert_close("stored noise passed as override (sample 0)", img[0], const[0])
    assert np.abs(img[1] - const[1]).max() > 1e-3
    r1 = np.asarray(synth(cfg, params, latent, noise_mode="random", key=jax.random.key(1)))
    r1b = np.asarray(synth(cfg, params, latent, noise_mode="random", key=jax.random.key(1)))
    r2 = np.asarray(synth(cfg, params, latent, noise_mode="random", key=jax.random.key(2)))
    assert np.array_equal(r1, r1b) and np.abs(r1 - r2).max() > 1e-3 and np.abs(r1 - const).max() > 1e-3
    zero = jax.tree_util.tree_map(lambda x: x, params)
    for name, _ in cfg.noise_layers:
        ros._layer(zero, name)["noise"]["weight"] = jnp.zeros(())
    _assert_close("noise weight 0 == noise_mode none", synth(cfg, zero, latent, noise_mode="random",
                                                             key=jax.random.key(1)),
                  synth(cfg, params, latent, noise_mode="none"))
    with pytest.raises(ConfigError, match="needs a PRNG key"):
        ros.synthesis(cfg, params, latent, noise_mode="random")
    with pytest.raises(ConfigError, match="noise_mode='bogus'"):
        ros.synthesis(cfg, params, latent, noise_mode="bogus")


# ---------------------------------------------------------------------------------------------
# Files written by real torch (test-only dependency): legacy (torch < 1.6) stream format


def test_torch_legacy_converted_file(tmp_path, golden):
    torch = pytest.importorskip("torch")
    src, cfg, params, io = golden
    path = tmp_path / "stylegan2-custom.pt"
    sd = OrderedDict((k, torch.from_numpy(np.array(v))) for k, v in src.state_dict.items())
    torch.save({"g_ema": sd, "latent_avg": torch.from_numpy(io["latent_avg"])}, path,
               _use_new_zipfile_serialization=False)
    cfg2, params2 = ros.from_source(read_source(path))
    assert cfg2 == dataclasses.replace(cfg, has_latent_avg=True)
    assert np.array_equal(params2.pop("latent_avg"), io["latent_avg"])
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, params2, params))


def test_converted_directory_round_trip(tmp_path):
    from jaxinv import checkpoint
    from jaxinv.models import from_source

    model = from_source(read_source(require(CONTAINERS / WEIGHTS["converted.pt"])))
    checkpoint.save(model, tmp_path / "out")
    back = checkpoint.load(tmp_path / "out")
    assert back.family == "rosinality" and back.cfg == model.cfg
    assert back.provenance["latent_avg"] is True and back.provenance["key"] == "g_ema"
    assert jax.tree_util.tree_structure(back.params) == jax.tree_util.tree_structure(model.params)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, back.params, model.params))


def test_engine_adaptor_maps_and_renders_like_the_official_generator():
    """The inversion engine's Generator view: G.style(z) broadcast to num_ws, rendered as G([w], input_is_latent)."""
    from jaxinv.checkpoint import load
    from jaxinv.generators import Generator

    gen = Generator.from_model(load(require(GOLDEN / "containers" / "rosinality_r64_cm1.converted.pt")))
    io = np.load(GOLDEN / "rosinality_r64_cm1.io.npz")
    ws = gen.mapping(jnp.asarray(io["z"]))
    assert ws.shape == (io["z"].shape[0], gen.num_ws, gen.w_dim)
    assert_parity(ws[:, 0], io["w"], "w")
    img = np.asarray(gen.render({"ws": jnp.asarray(io["wplus"])})).transpose(0, 3, 1, 2)
    assert_parity(img, io["img_wplus"], "img_wplus")
    np.testing.assert_allclose(np.asarray(gen.w_avg), io["latent_avg"])
