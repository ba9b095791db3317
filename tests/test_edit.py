"""Editing: SeFa / GANSpace directions (orthonormal, ordered, against numpy references), exact strength-0 edits,
layer ranges, and the `jaxinv edit` command's files."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import jaxinv
from jaxinv import edit
from jaxinv.errors import ConfigError, ImageError
from tests.conftest import GOLDEN, require

SG2 = "sg2ada_r32_cond10_skip"
W_CASES = [SG2, "rosinality_r64_cm1", "sg3t_r64"]


def _load(case):
    return jaxinv.load(require(GOLDEN / f"{case}.weights.npz"))


@pytest.fixture(scope="module")
def sg2():
    return _load(SG2)


def _orthonormal_err(v):
    return float(np.abs(v @ v.T - np.eye(len(v))).max())


@pytest.mark.parametrize("case", W_CASES)
def test_sefa_orthonormal_and_ordered(case):
    model = _load(case)
    d = edit.sefa(model)
    assert d.vectors.shape == (model.cfg.w_dim, model.cfg.w_dim)
    err = _orthonormal_err(d.vectors.astype(np.float64))
    assert err <= 1e-5, f"{case}: SeFa directions not orthonormal, max |V V^T - I| = {err:.2e}"
    assert np.all(np.diff(d.values) <= 1e-6 * d.values[0]), f"{case}: eigenvalues not descending"


def test_sefa_matches_numpy_reference(sg2):
    """Independent reference: the NVlabs affine weights read straight from the params ([in, out], scaled by the
    equalised-lr gain 1/sqrt(w_dim)), conv layers only, columns normalised, eigenvectors of W W^T."""
    syn = sg2.params["synthesis"]
    mats = [np.asarray(syn[f"b{res}"][name]["affine"]["weight"], np.float64) / np.sqrt(sg2.cfg.w_dim)
            for res, name, *_ in sg2.cfg.layers if name != "torgb"]
    w = np.concatenate(mats, axis=1)
    w /= np.linalg.norm(w, axis=0, keepdims=True)
    vals, vecs = np.linalg.eigh(w @ w.T)
    vals, vecs = vals[::-1], vecs[:, ::-1]
    d = edit.sefa(sg2)
    np.testing.assert_allclose(d.values, vals, rtol=1e-4)
    # eigenvectors agree up to sign where eigenvalues are distinct
    gap = np.minimum(np.abs(np.diff(vals, prepend=np.inf)), np.abs(np.diff(vals, append=-np.inf)))
    distinct = gap > 1e-3 * vals[0]
    cos = np.abs(np.sum(d.vectors.astype(np.float64) * vecs.T, axis=1))
    assert distinct.sum() > 10 and np.all(cos[distinct] > 1 - 1e-4), f"min |cos| {cos[distinct].min():.6f}"
    # a ws range restricts the factorised layers
    sub = edit.sefa(sg2, num_directions=3, layers=(0, 2))
    assert sub.vectors.shape == (3, sg2.cfg.w_dim) and sub.layers == (0, 2)


def test_ganspace_orthonormal_ordered_and_variances(sg2):
    d = edit.ganspace(sg2, num_directions=8, num_samples=3000, seed=1)
    assert _orthonormal_err(d.vectors.astype(np.float64)) <= 1e-5
    assert np.all(np.diff(d.values) <= 0), f"variances not descending: {d.values}"
    w = edit.mapped_w(sg2, 3000, seed=1).astype(np.float64)
    proj = (w - w.mean(0)) @ d.vectors.T.astype(np.float64)
    np.testing.assert_allclose(proj.var(axis=0, ddof=1), d.values, rtol=1e-3)
    np.testing.assert_allclose(d.mean, w.mean(0), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(d.direction(0)), np.sqrt(d.values[0]), rtol=1e-5)


def test_strength_zero_reproduces_inversion_exactly(sg2):
    ws = np.repeat(edit.mapped_w(sg2, 3, seed=7)[:, None], sg2.cfg.num_ws, axis=1)
    ws += 0.1 * np.random.default_rng(0).standard_normal(ws.shape).astype(np.float32)  # a W+ code
    d = edit.sefa(sg2).direction(0)
    assert np.array_equal(np.asarray(edit.apply_edit(ws, d, 0.0, (1, 4))), ws)
    moved = np.asarray(edit.apply_edit(ws, d, 2.0, (1, 4)))
    assert np.array_equal(moved[:, [0, 4, 5, 6, 7]], ws[:, [0, 4, 5, 6, 7]])
    np.testing.assert_allclose(moved[:, 1:4] - ws[:, 1:4], np.broadcast_to(2.0 * d, (3, 3, d.size)), atol=1e-6)
    imgs = edit.render_edits(sg2, ws, d, [-2.0, 0.0, 2.0], layers=(1, 4))
    assert imgs.shape == (3, 3, 32, 32, 3)
    recon = edit.render_ws(sg2, ws)
    assert np.array_equal(imgs[:, 1], recon), f"strength 0 differs: max abs {np.abs(imgs[:, 1] - recon).max():.3e}"
    assert np.abs(imgs[:, 2] - recon).max() > 1e-2


def test_edit_cli(sg2, tmp_path):
    ws = np.repeat(edit.mapped_w(sg2, 3, seed=3)[:, None], sg2.cfg.num_ws, axis=1)  # 3 codes: reuses a compile
    lat = tmp_path / "inv"
    for i, name in enumerate(["a", "b", "c"]):
        (lat / name).mkdir(parents=True)
        np.savez(lat / name / "projected_w.npz", w=ws[i:i + 1])  # the official projector's format
    out = tmp_path / "out"
    rc = edit.main(["--model", str(GOLDEN / f"{SG2}.weights.npz"), "--latents", str(lat), "--direction", "sefa:1",
                    "--strength", "3", "--layers", "0:4", "--steps", "3", "--out", str(out), "--video",
                    "--video-format", "gif", "--frames", "4"])
    assert rc == 0
    sheet = np.asarray(Image.open(out / "grid.png"))
    assert sheet.shape == (3 * 34 + 2, 3 * 34 + 2, 3)
    saved = np.load(out / "edited_ws.npz")
    np.testing.assert_array_equal(saved["ws"][:, 1], ws)  # the middle column is strength 0
    assert list(saved["names"]) == ["a", "b", "c"]
    gif = Image.open(out / "edit.gif")
    assert gif.n_frames == 4
    with pytest.raises(ImageError, match="projected_w"):
        edit.load_latents(tmp_path / "out", sg2.cfg.num_ws)


def test_errors(sg2):
    from jaxinv.models import dcgan

    with pytest.raises(ConfigError, match="W space"):
        edit.sefa(dcgan.load_default())
    with pytest.raises(ConfigError, match=r"layers=\(3, 99\)"):
        edit.sefa(sg2, layers=(3, 99))
    with pytest.raises(ConfigError, match="unknown method"):
        edit.directions(sg2, "pca:0")
    with pytest.raises(ConfigError, match="out of range"):
        edit.sefa(sg2, num_directions=2).direction(5)
    assert jnp.asarray(edit.apply_edit(np.zeros((1, 8, 64)), np.ones(64), 0.0)).sum() == 0


def test_edit_paste_back(sg2, tmp_path):
    """--paste-back: each edit goes back into the photo at the quad that `invert --align` recorded."""
    photo = (np.random.RandomState(0).rand(80, 100, 3) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    ws = np.repeat(edit.mapped_w(sg2, 1, seed=5)[:, None], sg2.cfg.num_ws, axis=1)
    lat = tmp_path / "inv" / "photo"
    lat.mkdir(parents=True)
    np.savez(lat / "projected_w.npz", w=ws)
    quad = [[30, 20], [30, 52], [62, 52], [62, 20]]  # TL, BL, BR, TR: a 32 x 32 square
    (lat / "align.json").write_text(json.dumps({"source": str(tmp_path / "photo.png"), "quad": quad}))
    out = tmp_path / "out"
    assert edit.main(["--model", str(GOLDEN / f"{SG2}.weights.npz"), "--latents", str(tmp_path / "inv"),
                      "--direction", "sefa:1", "--strength", "3", "--steps", "3", "--out", str(out),
                      "--paste-back"]) == 0
    pasted = [np.asarray(Image.open(out / "photo" / f"pasted_{k}.png")) for k in range(3)]
    assert all(p.shape == photo.shape for p in pasted)
    for p in pasted:
        np.testing.assert_array_equal(p[:15], photo[:15])  # away from the quad: the photo
        np.testing.assert_array_equal(p[:, :25], photo[:, :25])
    assert not np.array_equal(pasted[0][30:45, 40:55], photo[30:45, 40:55])  # the edit is inside
    assert not np.array_equal(pasted[0][30:45, 40:55], pasted[2][30:45, 40:55])  # strengths differ there
    (lat / "align.json").unlink()
    assert edit.main(["--model", str(GOLDEN / f"{SG2}.weights.npz"), "--latents", str(tmp_path / "inv"),
                      "--direction", "sefa:1", "--strength", "3", "--out", str(out), "--paste-back"]) == 2
