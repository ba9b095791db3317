"""Pixel losses, VGG16 loaders, LPIPS (vs float64 numpy and the projector golden), regularisers."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinv import ops
from jaxinv.errors import CheckpointError
from jaxinv.losses import lpips as L
from jaxinv.losses import pixel, regularizers
from jaxinv.losses import vgg16 as V
from jaxinv.parity.core import assert_parity
from jaxinv.procedural import verify_recipe

try:
    from tests.conftest import GOLDEN, REALDATA, require
except ImportError:  # tests/ collected as rootdir-less modules
    from conftest import GOLDEN, REALDATA, require

HEADS = REALDATA / "weights/lpips_linear_heads/vgg_v0.1.npz"
PROJ = "projector_sg2ada_r64_skip"


# ----------------------------------------------------------------------------------------------------
# Independent float64 numpy references


def np_conv3x3(x, w_oihw, b):
    bsz, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.concatenate([xp[:, i:i + h, j:j + w, :] for i in range(3) for j in range(3)], axis=3)
    wk = w_oihw.astype(np.float64).transpose(2, 3, 1, 0).reshape(9 * c, -1)
    return cols @ wk + b.astype(np.float64)


def np_vgg_taps(sd, x):
    """torchvision VGG16 features on NHWC float64 x; returns the 5 LPIPS taps."""
    taps = []
    for i in range(30):
        if i in V.CONV_INDICES:
            x = np_conv3x3(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"])
        elif i in V.POOL_INDICES:
            bsz, h, w, c = x.shape
            x = x.reshape(bsz, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        else:
            x = np.maximum(x, 0.0)
            if i in V.TAP_INDICES:
                taps.append(x)
    return taps


def np_lpips(sd, heads, a255, b255):
    """LPIPS v0.1 (lpips package formula) for images in [0, 255], NHWC float64."""
    shift = np.array([-0.030, -0.088, -0.188])
    scale = np.array([0.458, 0.448, 0.450])

    def prep(img):
        return ((img / 127.5 - 1.0) - shift) / scale

    ta, tb = np_vgg_taps(sd, prep(a255)), np_vgg_taps(sd, prep(b255))
    total = np.zeros(a255.shape[0])
    per_tap = []
    for k, (fa, fb) in enumerate(zip(ta, tb, strict=True)):
        na = fa / (np.sqrt((fa ** 2).sum(-1, keepdims=True)) + 1e-10)
        nb = fb / (np.sqrt((fb ** 2).sum(-1, keepdims=True)) + 1e-10)
        w = heads[f"lin{k}.model.1.weight"].reshape(-1).astype(np.float64)
        d = (((na - nb) ** 2) * w).sum(-1).mean(axis=(1, 2))
        per_tap.append(d)
        total += d
    return total, per_tap


def np_area_resize(x, oh, ow):
    """torch adaptive_avg_pool2d bins, loop form, NHWC."""
    bsz, h, w, c = x.shape
    out = np.zeros((bsz, oh, ow, c))
    for i in range(oh):
        h0, h1 = (i * h) // oh, math.ceil((i + 1) * h / oh)
        for j in range(ow):
            w0, w1 = (j * w) // ow, math.ceil((j + 1) * w / ow)
            out[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return out


def random_vgg_state_dict(seed=0):
    rng = np.random.default_rng(seed)
    sd = {}
    for idx, (cin, cout) in zip(V.CONV_INDICES, V.CONV_CHANNELS, strict=True):
        sd[f"features.{idx}.weight"] = (rng.standard_normal((cout, cin, 3, 3)) * math.sqrt(2 / (9 * cin))
                                        ).astype(np.float32)
        sd[f"features.{idx}.bias"] = (0.05 * rng.standard_normal(cout)).astype(np.float32)
    return sd


def to_nvlabs(sd, heads):
    out = {}
    for k, idx in enumerate(V.CONV_INDICES, start=1):
        out[f"layers.conv{k}.weight"] = sd[f"features.{idx}.weight"]
        out[f"layers.conv{k}.bias"] = sd[f"features.{idx}.bias"]
    for k in range(5):
        out[f"lpips{k}"] = heads[f"lin{k}.model.1.weight"].reshape(-1, 1, 1)
    out["layers.fc3.weight"] = np.zeros((2, 4), np.float32)  # classifier: ignored by the loader
    return out


@pytest.fixture(scope="module")
def heads():
    with np.load(require(HEADS)) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def proc_sd():
    return V.procedural_vgg16_state_dict()


@pytest.fixture(scope="module")
def proc_lpips(heads, proc_sd):
    return L.lpips_params(V.vgg16_params_from_torchvision(proc_sd), L.load_lpips_heads(heads))


_features_0_255 = jax.jit(lambda p, x: L.lpips_features(p, x, drange=(0.0, 255.0)))


# ----------------------------------------------------------------------------------------------------
# Pixel losses


def test_pixel_losses_per_item():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 8, 6, 3)).astype(np.float32)
    b = rng.standard_normal((1, 8, 6, 3)).astype(np.float32)
    ref2 = ((a.astype(np.float64) - b) ** 2).reshape(3, -1).mean(1)
    ref1 = np.abs(a.astype(np.float64) - b).reshape(3, -1).mean(1)
    out2, out1 = np.asarray(pixel.l2_loss(a, b)), np.asarray(pixel.l1_loss(a, b))
    assert out2.shape == (3,) and out1.shape == (3,)
    assert np.abs(out2 - ref2).max() <= 1e-6, np.abs(out2 - ref2).max()
    assert np.abs(out1 - ref1).max() <= 1e-6, np.abs(out1 - ref1).max()
    # vmap over items agrees with the batched call
    v = jax.vmap(lambda x: pixel.l2_loss(x[None], b)[0])(a)
    assert np.allclose(np.asarray(v), out2, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------
# VGG16 loaders


def test_procedural_vgg16_matches_golden_recipe(proc_sd):
    meta = json.loads(require(GOLDEN / f"{PROJ}.meta.json").read_text())
    recipe = meta["lpips"]["procedural_weights"]
    assert recipe["seed_string"] == "vgg16-lpips-golden"
    assert [e["name"] for e in recipe["tensors"]] == list(proc_sd)
    for e in recipe["tensors"]:
        assert list(proc_sd[e["name"]].shape) == e["shape"], e["name"]
        assert proc_sd[e["name"]].dtype == np.float32
    bad = verify_recipe(recipe, proc_sd)
    assert bad == [], f"check sums differ for {bad}"
    # the OIHW -> HWIO transposition of the converter
    p = V.procedural_vgg16()
    assert p["features"]["10"]["weight"].shape == (3, 3, 128, 256)
    np.testing.assert_array_equal(p["features"]["10"]["weight"][1, 2, 5, 7], proc_sd["features.10.weight"][7, 5, 1, 2])


def test_vgg16_features_vs_numpy_torchvision_layout():
    sd = random_vgg_state_dict(2)
    sd["classifier.6.bias"] = np.zeros(3, np.float32)  # classifier entries are allowed and ignored
    params = V.load_vgg16(sd)
    x = np.random.default_rng(3).standard_normal((2, 16, 16, 3))
    taps = V.vgg16_features(params, jnp.asarray(x, jnp.float32))
    ref = np_vgg_taps(sd, x)
    for name, r in zip(V.TAP_NAMES, ref, strict=True):
        assert_parity(taps[name], r, name)


def test_vgg16_loader_errors():
    sd = random_vgg_state_dict(4)
    bad = dict(sd)
    del bad["features.12.bias"]
    with pytest.raises(CheckpointError, match="features.12.bias"):
        V.load_vgg16(bad)
    bad = dict(sd, **{"features.99.weight": np.zeros(1, np.float32)})
    with pytest.raises(CheckpointError, match="unexpected"):
        V.load_vgg16(bad)
    bad = dict(sd, **{"features.0.weight": np.zeros((64, 3, 5, 5), np.float32)})
    with pytest.raises(CheckpointError, match="features.0.weight"):
        V.load_vgg16(bad)
    with pytest.raises(CheckpointError, match="not a VGG16"):
        V.load_vgg16({"foo": np.zeros(1)})


def test_nvlabs_layout_equals_torchvision_layout(heads):
    sd = random_vgg_state_dict(5)
    p_tv = L.lpips_params(V.load_vgg16(sd), L.load_lpips_heads(heads))
    p_nv = L.load_lpips(to_nvlabs(sd, heads))  # heads taken from the same file, as in vgg16.pt
    for leaf_tv, leaf_nv in zip(jax.tree.leaves(p_tv), jax.tree.leaves(p_nv), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf_tv), np.asarray(leaf_nv))
    with pytest.raises(CheckpointError, match="lpips3"):
        bad = to_nvlabs(sd, heads)
        bad["lpips3"] = np.ones(7, np.float32)
        L.load_lpips(bad)


def test_torch_files_torchvision_pth_and_nvlabs_torchscript(tmp_path, heads):
    torch = pytest.importorskip("torch")
    sd = random_vgg_state_dict(6)
    # (a) torchvision state_dict written by torch.save
    pth = tmp_path / "vgg16_tv.pth"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, pth)
    p_file = V.load_vgg16(pth)
    p_dict = V.load_vgg16(sd)
    for a, b in zip(jax.tree.leaves(p_file), jax.tree.leaves(p_dict), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # (b) a TorchScript archive with the NVlabs vgg16.pt names (layers.conv1..13, lpips0..4, layers.fc*)
    nn, F = torch.nn, torch.nn.functional

    class Layers(nn.Module):
        def __init__(self):
            super().__init__()
            for k, (cin, cout) in enumerate(V.CONV_CHANNELS, start=1):
                setattr(self, f"conv{k}", nn.Conv2d(cin, cout, 3, padding=1))
            self.fc1 = nn.Linear(8, 4)  # real file: 25088 -> 4096 -> 4096 -> 1000 (unused by LPIPS)

        def forward(self, x):
            return x

    class NVLpips(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()
            for k, c in enumerate(V.TAP_CHANNELS):
                self.register_buffer(f"lpips{k}", torch.ones(c, 1, 1))

        def forward(self, img: torch.Tensor, resize_images: bool = False, return_lpips: bool = True):
            return img  # only the archive's tensors matter here

    def torch_lpips_features(m, img):  # eager reference: the LPIPS recipe with torch ops
        x = (img / 127.5 - 1.0 - torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)) / torch.tensor(
            [0.458, 0.448, 0.450]).view(1, 3, 1, 1)
        feats, k = [], 1
        for block, n_convs in enumerate((2, 2, 3, 3, 3)):
            if block > 0:
                x = F.max_pool2d(x, 2)
            for _ in range(n_convs):
                x = F.relu(getattr(m.layers, f"conv{k}")(x))
                k += 1
            feats.append(x)
        out = []
        for t, f in enumerate(feats):
            f = f / (f.square().sum(1, keepdim=True).sqrt() + 1e-10)
            f = f * getattr(m, f"lpips{t}").view(1, -1, 1, 1).sqrt() / math.sqrt(f.shape[2] * f.shape[3])
            out.append(f.permute(0, 2, 3, 1).flatten(1))
        return torch.cat(out, 1)

    m = NVLpips()
    with torch.no_grad():
        nv = to_nvlabs(sd, heads)
        for name, v in m.state_dict().items():
            if name in nv and nv[name].shape == tuple(v.shape):
                v.copy_(torch.from_numpy(nv[name]))
    script = torch.jit.script(m.eval())
    ts = tmp_path / "vgg16.pt"
    torch.jit.save(script, ts)
    params = L.load_lpips(ts)
    rng = np.random.default_rng(7)
    a = rng.uniform(-40, 300, (2, 16, 16, 3)).astype(np.float32)
    with torch.no_grad():
        ref = torch_lpips_features(m, torch.from_numpy(a.transpose(0, 3, 1, 2))).numpy()
    out = np.asarray(L.nvlabs_vgg16_call(params, jnp.asarray(a)))
    err = np.abs(out - ref).max()
    assert err <= 1e-5 * max(1.0, np.abs(ref).max()), f"TorchScript vs jaxinv features: max abs err {err}"


# ----------------------------------------------------------------------------------------------------
# LPIPS


def test_area_resize_vs_loop_reference():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 30, 20, 3)).astype(np.float32)
    for oh, ow in ((15, 10), (7, 9), (30, 20)):
        out = np.asarray(L.area_resize(jnp.asarray(x), (oh, ow)))
        ref = np_area_resize(x.astype(np.float64), oh, ow)
        assert np.abs(out - ref).max() <= 1e-5, (oh, ow, np.abs(out - ref).max())


def test_area_resize_vs_torch_interpolate():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(9).standard_normal((1, 3, 64, 48)).astype(np.float32)
    for size in ((32, 24), (28, 28), (17, 40)):
        ref = torch.nn.functional.interpolate(torch.from_numpy(x), size=size, mode="area").numpy()
        out = np.asarray(L.area_resize(jnp.asarray(x.transpose(0, 2, 3, 1)), size)).transpose(0, 3, 1, 2)
        assert np.abs(out - ref).max() <= 1e-5, (size, np.abs(out - ref).max())


def test_lpips_vs_float64_numpy(proc_sd, proc_lpips, heads):
    rng = np.random.default_rng(10)
    a = rng.uniform(0, 255, (3, 16, 16, 3))
    b = np.clip(a + rng.normal(0, 40, a.shape), -200, 500)  # unclamped values, as projector synths
    b[2] = a[2]
    ref, _ = np_lpips(proc_sd, heads, a, b)

    @jax.jit
    def dists(p, x, y, x_pm1, y_pm1):  # one compile: [0, 255] inputs and their [-1, 1] versions
        return (L.lpips(p, x, y, drange=(0.0, 255.0)), L.lpips(p, x_pm1, y_pm1, drange=(-1.0, 1.0)))

    f32 = lambda v: jnp.asarray(v, jnp.float32)
    out, out_pm1 = map(np.asarray, dists(proc_lpips, f32(a), f32(b), f32(a / 127.5 - 1), f32(b / 127.5 - 1)))
    assert_parity(out, ref, "LPIPS vs float64 numpy")
    assert out[2] == 0.0 and ref[0] > 0.01
    # [-1, 1] inputs map to [0, 255] as the projector does: same distances
    assert_parity(out_pm1, ref, "LPIPS of [-1, 1] inputs")


@pytest.mark.parametrize("which,step", [("synth_images_step0", 0), ("synth_images_last", -1)])
def test_lpips_reproduces_projector_golden_dist(proc_lpips, which, step):
    io = np.load(require(GOLDEN / f"{PROJ}.io.npz"))
    target = io["target"].transpose(1, 2, 0)[None].astype(np.float32)   # uint8 CHW -> float NHWC
    synth = io[which].transpose(0, 2, 3, 1)                              # already (G + 1) * 255/2
    ft, fs = _features_0_255(proc_lpips, target), _features_0_255(proc_lpips, synth)
    assert ft.shape == (1, 499712)
    dist = float(L.lpips_distance(ft, fs)[0])
    ref = float(io["dist"][step])
    assert_parity(dist, ref, "dist")
    assert abs(dist - ref) <= 1e-5 * ref, (dist, ref)
    # per-tap split (float64 diagnostic of the golden)
    sizes = [64 * 64 * 64, 128 * 32 * 32, 256 * 16 * 16, 512 * 8 * 8, 512 * 4 * 4]
    d2 = np.square(np.asarray(ft, np.float64) - np.asarray(fs, np.float64))[0]
    per_tap = np.add.reduceat(d2, np.cumsum([0] + sizes[:-1]))
    rel = np.abs(per_tap - io["dist_per_tap"][step]) / io["dist_per_tap"][step]
    assert rel.max() <= 1e-4, f"per-tap rel err {rel}"


def test_lpips_resize_branch_and_gradients(proc_lpips):
    rng = np.random.default_rng(11)
    img = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    # taller than max_size: area-resized first (exercised with a small max_size)
    feats = jax.jit(lambda p, x, m: L.lpips_features(p, x, max_size=m), static_argnums=2)
    f_big = feats(proc_lpips, img, 16)
    f_small = feats(proc_lpips, L.area_resize(img, (16, 16)), None)
    assert np.abs(np.asarray(f_big) - np.asarray(f_small)).max() <= 1e-6
    target = f_small[:1]
    g = jax.jit(jax.grad(lambda x: L.lpips_distance(L.lpips_features(proc_lpips, x, max_size=16), target).sum()))(img)
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g[1]).max()) > 0
    # all-zero feature columns (dead ReLUs) keep a finite gradient
    gz = jax.grad(lambda f: ops.normalize_channels(f).sum())(jnp.zeros((1, 2, 2, 4)))
    assert np.all(np.isfinite(np.asarray(gz)))


def test_lpips_distance_to_equals_distance_of_concatenated_features(proc_lpips):
    # the tap-by-tap loss of inversion against lpips_distance(lpips_features(...)): values and image gradients,
    # for per-image targets and one shared target, with the area-resize branch
    rng = np.random.default_rng(12)
    img = jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32)
    tgt = L.lpips_features(proc_lpips, jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32), max_size=16)
    for t in (tgt, tgt[:1]):
        def ref(x, t=t):
            return L.lpips_distance(L.lpips_features(proc_lpips, x, max_size=16), t)

        def new(x, t=t):
            return L.lpips_distance_to(proc_lpips, x, t, max_size=16)

        np.testing.assert_allclose(np.asarray(new(img)), np.asarray(ref(img)), rtol=1e-5)
        g_ref = jax.grad(lambda x: ref(x).sum())(img)
        g_new = jax.grad(lambda x: new(x).sum())(img)
        assert float(jnp.abs(g_new - g_ref).max()) <= 1e-5 * float(jnp.abs(g_ref).max())
    with pytest.raises(ValueError, match="features per image"):
        L.lpips_distance_to(proc_lpips, img, tgt[:, :-1], max_size=16)


def test_lpips_heads_file_formats(heads):
    h_npz = L.load_lpips_heads(HEADS)
    assert [h_npz[f"lin{k}"].shape[0] for k in range(5)] == list(V.TAP_CHANNELS)
    np.testing.assert_array_equal(h_npz["lin2"], heads["lin2.model.1.weight"].reshape(-1))
    pth = REALDATA / "weights/lpips_linear_heads/vgg_v0.1.pth"
    if pth.exists():
        try:
            h_pth = L.load_lpips_heads(pth)
        except CheckpointError as e:
            pytest.skip(f"torch.save reader not available: {e}")
        for k in range(5):
            np.testing.assert_array_equal(h_pth[f"lin{k}"], h_npz[f"lin{k}"])


# ----------------------------------------------------------------------------------------------------
# Regularisers


def np_noise_reg(maps):
    total = 0.0
    for m in maps:
        n = m.astype(np.float64)
        while True:
            total += np.mean(n * np.roll(n, 1, axis=1)) ** 2
            total += np.mean(n * np.roll(n, 1, axis=0)) ** 2
            if n.shape[0] <= 8:
                break
            h, w = n.shape
            n = n.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return total


def test_noise_regularization_vs_numpy_and_golden():
    io = np.load(require(GOLDEN / f"{PROJ}.io.npz"))
    meta = json.loads((GOLDEN / f"{PROJ}.meta.json").read_text())
    order = meta["noise_buffer_order"]
    init = [io[f"rand_noise_init.{n}"] for n in order]
    # step 0 uses the initial draws, step k the buffers renormalised at the end of step k-1
    reg = jax.jit(regularizers.noise_regularization)
    for step, maps in ((0, init), (1, [io[f"noise.{n}"][0] for n in order]),
                       (29, [io[f"noise.{n}"][28] for n in order])):
        out = float(reg({n: jnp.asarray(m) for n, m in zip(order, maps, strict=True)}))
        ref = float(io["reg_loss"][step])
        assert abs(out - ref) <= 1e-5 * abs(ref), (step, out, ref)
        assert abs(np_noise_reg(maps) - ref) <= 1e-5 * abs(ref)
    # batched maps [B, H, W] -> [B], equal to per-item calls
    rng = np.random.default_rng(12)
    maps = [rng.standard_normal((3, r, r)).astype(np.float32) for r in (4, 16, 64)]
    out = np.asarray(reg(maps))
    ref = np.array([np_noise_reg([m[i] for m in maps]) for i in range(3)])
    assert out.shape == (3,) and np.abs(out - ref).max() <= 1e-6 * max(1.0, ref.max())


def test_latent_regularizers():
    rng = np.random.default_rng(13)
    w = rng.standard_normal((4, 10, 16)).astype(np.float32)
    w_avg = rng.standard_normal((1, 1, 16)).astype(np.float32)
    ref = ((w.astype(np.float64) - w_avg) ** 2).sum(axis=(1, 2))
    assert np.allclose(np.asarray(regularizers.w_avg_distance(w, w_avg)), ref, rtol=1e-5)
    z = rng.standard_normal((4, 128)).astype(np.float32)
    assert np.allclose(np.asarray(regularizers.z_gaussian_prior(z)), 0.5 * (z.astype(np.float64) ** 2).mean(1),
                       rtol=1e-5)
    ref = (np.linalg.norm(z.astype(np.float64), axis=1) - math.sqrt(128)) ** 2
    assert np.allclose(np.asarray(regularizers.z_norm_prior(z)), ref, rtol=1e-4, atol=1e-5)
    g = jax.grad(lambda z: regularizers.z_norm_prior(z).sum())(jnp.zeros((2, 8)))
    assert np.all(np.isfinite(np.asarray(g)))
