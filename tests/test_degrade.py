"""Degradation operators (jaxinv.degrade) against independent references (numpy, pillow), their gradients
against finite differences, restoration through them on the real DCGAN with known latents, batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxinv import degrade as D
from jaxinv import ops
from jaxinv.errors import ConfigError
from jaxinv.invert import invert
from jaxinv.models import dcgan

RNG = np.random.RandomState(0)
X = RNG.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)


def _pil_resize(x: np.ndarray, size: int, resample: int) -> np.ndarray:
    # pillow's float ("F") path: its own coefficients, no rounding
    return np.stack([np.stack([np.asarray(Image.fromarray(img[:, :, c], mode="F").resize((size, size), resample))
                               for c in range(img.shape[2])], axis=-1) for img in x])


@pytest.mark.parametrize("factor", [2, 4])
def test_down_matches_pillow_and_block_means(factor):
    got = np.asarray(D.Down(factor, "bicubic")(jnp.asarray(X)))
    np.testing.assert_allclose(got, _pil_resize(X, 16 // factor, Image.BICUBIC), atol=2e-6)
    area = np.asarray(D.Down(factor, "area")(jnp.asarray(X)))
    np.testing.assert_allclose(area, _pil_resize(X, 16 // factor, Image.BOX), atol=2e-6)
    blocks = X.reshape(2, 16 // factor, factor, 16 // factor, factor, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(area, blocks, atol=2e-6)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_down_nvlabs_is_the_official_downsample2d(factor):
    """kernel "nvlabs" = upfirdn2d.downsample2d(x, setup_filter([1, 3, 3, 1]), down=F): against jaxinv.ops's
    implementation (at parity with the official upfirdn2d on the goldens) and a direct numpy loop."""
    got = np.asarray(D.Down(factor, "nvlabs")(jnp.asarray(X)))
    ref = np.asarray(ops.downsample2d(jnp.asarray(X), ops.setup_filter(D.NVLABS_FILTER), down=factor))
    np.testing.assert_allclose(got, ref, atol=2e-6)
    f = np.asarray(D.NVLABS_FILTER) / 8.0
    p0 = (4 - factor + 1) // 2
    n = 16 // factor
    direct = np.zeros((2, n, n, 3))
    for oy in range(n):
        for ox in range(n):
            for ky in range(4):
                for kx in range(4):
                    iy, ix = factor * oy + ky - p0, factor * ox + kx - p0
                    if 0 <= iy < 16 and 0 <= ix < 16:
                        direct[:, oy, ox] += f[ky] * f[kx] * X[:, iy, ix]
    np.testing.assert_allclose(got, direct, atol=2e-6)


def test_random_mask_spec():
    m = D.parse("mask:random:0.5:3", 64).ops[0].mask
    assert m.shape == (64, 64) and set(np.unique(m)) == {0.0, 1.0} and abs(1 - m.mean() - 0.5) < 0.05
    np.testing.assert_array_equal(m, D.parse("mask:random:0.5:3", 64).ops[0].mask)  # drawn from the seed
    assert not np.array_equal(m, D.parse("mask:random:0.5", 64).ops[0].mask)
    for bad in ("mask:random:1.5", "mask:random:0", "mask:random:x"):
        with pytest.raises(ConfigError, match="mask"):
            D.parse(bad, 64)


def test_mask_gray_noise_and_composition_match_numpy():
    m = (RNG.uniform(size=(16, 16)) > 0.5).astype(np.float32) * 0.75
    np.testing.assert_allclose(np.asarray(D.Mask(m)(jnp.asarray(X))), X * m[None, :, :, None], atol=0)
    per = RNG.uniform(size=(2, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(D.Mask(None, per_image=True)(jnp.asarray(X), jnp.asarray(per))),
                               X * per[..., None], atol=0)
    luma = X[..., 0] * 0.299 + X[..., 1] * 0.587 + X[..., 2] * 0.114
    np.testing.assert_allclose(np.asarray(D.Gray()(jnp.asarray(X))), np.repeat(luma[..., None], 3, -1), atol=1e-6)
    # pillow's own luma conversion of an 8-bit image agrees to its rounding
    u8 = np.clip(np.rint((X[0] + 1) * 127.5), 0, 255).astype(np.uint8)
    pil = np.asarray(Image.fromarray(u8).convert("L"), np.float32) / 127.5 - 1
    ours = np.asarray(D.Gray()(jnp.asarray(u8[None] / 127.5 - 1, jnp.float32)))[0, :, :, 0]
    assert np.abs(pil - ours).max() <= 1.5 / 127.5
    # composition, left to right; noise: identity forward, a sample of std sigma in observe()
    deg = D.parse("gray+down:2:area+noise:0.25", 16)
    m2 = luma.reshape(2, 8, 2, 8, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(deg(jnp.asarray(X))), np.repeat(m2[..., None], 3, -1), atol=2e-6)
    assert deg.out_shape((16, 16, 3)) == (8, 8, 3) and deg.noise_sigma == 0.25
    big = jnp.zeros((4, 64, 64, 3))
    noisy = np.asarray(D.parse("noise:0.25", 64).observe(big, jax.random.PRNGKey(0)))
    assert abs(noisy.std() - 0.25) < 0.005 and abs(noisy.mean()) < 0.005
    # the target keeps only the observed pixels of masks acting at its resolution
    deg = D.Degradation((D.Down(2, "area"), D.Mask(m[:8, :8])))
    y = RNG.uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(deg.target(jnp.asarray(y))), y * m[None, :8, :8, None], atol=0)
    hole = np.ones((16, 16), np.float32)
    hole[6:10, 6:10] = 0
    np.testing.assert_array_equal(D.parse("mask:center:4", 16).ops[0].mask, hole)
    pre = D.Degradation((D.Mask(m), D.Down(2, "area")))  # a mask before the resampling: y as given
    np.testing.assert_array_equal(np.asarray(pre.target(jnp.asarray(y))), y)


@pytest.mark.parametrize("spec", ["down:4:bicubic", "down:2:area", "gray", "mask"])
def test_gradients_match_finite_differences(spec):
    m = RNG.uniform(size=(16, 16)).astype(np.float32)
    deg = D.Degradation((D.Mask(m),)) if spec == "mask" else D.parse(spec, 16)
    x = jnp.asarray(X[:1], jnp.float64) if jax.config.jax_enable_x64 else jnp.asarray(X[:1])
    w = jnp.asarray(RNG.normal(size=deg.out_shape((16, 16, 3))), x.dtype)
    f = lambda v: jnp.sum(w * deg(v)[0])  # noqa: E731 - a linear functional of D(x)
    g = np.asarray(jax.grad(f)(x))
    for idx in [(0, 0, 0, 0), (0, 5, 7, 1), (0, 15, 3, 2), (0, 9, 15, 0)]:
        e = np.zeros(x.shape, np.float32)
        e[idx] = 1.0
        h = 1e-2  # D is linear: the central difference is exact up to float32 rounding
        fd = (float(f(x + h * e)) - float(f(x - h * e))) / (2 * h)
        assert abs(fd - g[idx]) <= 2e-3 * max(1.0, abs(fd)), (spec, idx, fd, g[idx])


def test_bad_specs_are_one_line_config_errors(tmp_path):
    for spec, words in [("down:3", "not divisible"), ("down:x", "down:FACTOR"), ("down:4:lanczos", "kernel"),
                        ("blur", "unknown operator"), ("noise:0.1+gray", "must come last"),
                        ("noise:-1", "sigma"), (f"mask:{tmp_path / 'nope.png'}", "no such file")]:
        with pytest.raises(ConfigError, match=words) as e:
            D.parse(spec, 64)
        assert "\n" not in str(e.value) and "degradation=" in str(e.value)
    with pytest.raises(ConfigError, match=r"\[N, 16, 16, 3\]"):
        invert(dcgan.load_default(), np.zeros((1, 64, 64, 3), np.float32), degradation="down:4", steps=1)
    with pytest.raises(ConfigError, match="add mse to the loss"):
        invert(dcgan.load_default(), np.zeros((1, 64, 64, 3), np.float32), degradation="noise:0.1", loss="l1",
               steps=1)


@pytest.fixture(scope="module")
def known():
    """Two DCGAN samples with known latents, and warm starts at a fixed distance from them (so that a short
    L-BFGS run is a test of the degradation, not of the search over restarts)."""
    model = dcgan.load_default()
    z = jax.random.normal(jax.random.PRNGKey(7), (2, 100))
    clean = np.asarray(dcgan.generate(model.cfg, model.params, z))
    start = np.asarray(z + 0.6 * jax.random.normal(jax.random.PRNGKey(8), z.shape), np.float32)
    return model, clean, start


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 10 * np.log10(4.0 / np.mean((a - b) ** 2, axis=(1, 2, 3)))


def test_restoration_beats_the_degraded_input_and_baselines(known):
    model, clean, start = known
    hole = np.ones((64, 64), np.float32)
    hole[20:44, 20:44] = 0
    masked_mean = np.where(hole[None, :, :, None] > 0, clean,
                           (clean * hole[None, :, :, None]).sum(axis=(1, 2), keepdims=True) / hole.sum())
    cases = {
        # degradation, baseline (a full-resolution image judged against the original; None: the observation)
        "mask": (D.Degradation((D.Mask(hole),)), masked_mean),
        "down:4": (D.parse("down:4", 64), "bicubic"),
        "gray": (D.parse("gray", 64), None),
        "noise:0.3": (D.parse("noise:0.3", 64), None),
    }
    for name, (deg, base) in cases.items():
        obs = np.asarray(deg.observe(jnp.asarray(clean), jax.random.PRNGKey(3)))
        if isinstance(base, str):  # bicubic upsampling of the observation
            base = _pil_resize(obs, 64, Image.BICUBIC)
        elif base is None:
            base = obs
        res = invert(model, obs, degradation=deg, optimizer="lbfgs", steps=20, restarts=1,
                     init_latents={"z": start}, loss="mse")
        assert res.images.shape == clean.shape and res.observed.shape == obs.shape
        np.testing.assert_allclose(res.observed, np.asarray(deg(jnp.asarray(res.images))), atol=1e-5)
        got, ref = _psnr(res.images, clean), _psnr(base, clean)
        assert np.all(got > ref + 1.0), (name, got, ref)


def test_batching_and_per_image_masks_are_transparent(known):
    model, clean, start = known
    masks = np.ones((2, 64, 64), np.float32)
    masks[0, :32] = 0
    masks[1, :, 40:] = 0
    kw = dict(optimizer="adam", steps=5, restarts=2, seed=1, init_latents={"z": start})
    deg = D.Degradation((D.Mask(masks, per_image=True), D.Down(2, "area")))
    obs = np.asarray(deg(jnp.asarray(clean), (jnp.asarray(masks), None)))
    full = invert(model, obs, degradation=deg, **kw)
    part = invert(model, obs, degradation=deg, batch_size=1, **kw)
    np.testing.assert_array_equal(part.latents["z"], full.latents["z"])
    np.testing.assert_array_equal(part.observed, full.observed)
    # image 1 alone (its own mask, its global index) gives the same bits as inside the batch
    one = invert(model, obs[1:], degradation=D.Degradation((D.Mask(masks[1:], per_image=True), D.Down(2, "area"))),
                 image_indices=[1], **{**kw, "init_latents": {"z": start[1:]}})
    np.testing.assert_array_equal(one.latents["z"][0], full.latents["z"][1])
    # the per-image mask is this image's: a shared mask equal to it gives the same result
    shared = invert(model, obs[1:], degradation=D.Degradation((D.Mask(masks[1]), D.Down(2, "area"))),
                    image_indices=[1], **{**kw, "init_latents": {"z": start[1:]}})
    np.testing.assert_array_equal(shared.latents["z"], one.latents["z"])
    with pytest.raises(ConfigError, match="1 per-image masks for 2 images"):
        invert(model, obs, degradation=D.Degradation((D.Mask(masks[:1], per_image=True), D.Down(2, "area"))),
               steps=1)


def test_cli_degrade_job_writes_restored_and_resumes(tmp_path, capsys):
    """`jaxinv invert --degrade mask:DIR+down:2:area`: observations at 32 px, one mask per image by name (a
    missing one is that image's error row), restored.png at 64 px beside proj.png = D(G(z*)) at 32 px, the
    degradation in the manifest, a rerun resumes; a bad spec is one error line naming the flag."""
    from jaxinv import cli

    model = dcgan.load_default()
    clean = np.asarray(dcgan.generate(model.cfg, model.params, jax.random.normal(jax.random.PRNGKey(2), (3, 100))))
    (tmp_path / "obs").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(3):
        m = np.ones((64, 64), np.float32)
        m[10 + 8 * i:34 + 8 * i, 20:44] = 0
        if i < 2:  # image 2 has no mask
            Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "masks" / f"f{i}.png")
        y = np.asarray(D.Degradation((D.Mask(m), D.Down(2, "area")))(jnp.asarray(clean[i:i + 1])))[0]
        Image.fromarray(np.clip(np.rint((y + 1) * 127.5), 0, 255).astype(np.uint8)).save(tmp_path / "obs" / f"f{i}.png")
    argv = ["invert", "--images", str(tmp_path / "obs"), "--out", str(tmp_path / "out"), "--crop", "none",
            "--degrade", f"mask:{tmp_path / 'masks'}+down:2:area", "--steps", "3", "--no-progress",
            "--xla-cache", "off"]
    assert cli.main(argv) == 3  # one image without a mask
    out = tmp_path / "out"
    for i in range(2):
        assert Image.open(out / f"f{i}" / "restored.png").size == (64, 64)
        assert Image.open(out / f"f{i}" / "proj.png").size == (32, 32)
        assert Image.open(out / f"f{i}" / "target.png").size == (32, 32)
    assert "f2.png: no mask named f2.*" in (out / "errors.csv").read_text()
    assert "mask:" in (out / "jaxinv-job.json").read_text()
    capsys.readouterr()
    assert cli.main(argv) == 3
    assert "0 inverted, 2 already done" in capsys.readouterr().err
    assert cli.main([*argv[:4], str(tmp_path / "o2"), *argv[5:7], "--degrade", "down:3", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("jaxinv: error: --degrade 'down:3'") and "not divisible by 3" in err[-1], err
