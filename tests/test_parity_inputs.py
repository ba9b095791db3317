"""The parity handlers honour the inputs a case gives (psi, truncation cutoff, latent_avg): golden cases are
rewritten with other inputs and references computed here, independently of the handlers, and must pass; with a
wrong reference they must fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxinv.models import encoders as enc
from jaxinv.models import stylegan3 as sg3
from jaxinv.parity import encoders as enc_handler
from jaxinv.parity.core import Case, assert_parity, load_case, run_case
from jaxinv.parity.stylegan2 import truncation_inputs
from tests._encoder_fixtures import random_encoder_state_dict
from tests.conftest import GOLDEN, require
from weights_convert.source import Source, read_golden_npz


def _write_case(tmp_path: Path, case: str, io: dict[str, np.ndarray]) -> Path:
    """A copy of golden ``case`` in tmp_path whose io file holds ``io`` instead."""
    for suffix in (".weights.npz", ".init_kwargs.json", ".meta.json"):
        shutil.copy(require(GOLDEN / f"{case}{suffix}"), tmp_path / f"{case}{suffix}")
    np.savez(tmp_path / f"{case}.io.npz", **io)
    return tmp_path / case


def _golden_io(case: str) -> dict[str, np.ndarray]:
    with np.load(require(GOLDEN / f"{case}.io.npz")) as z:
        return {k: z[k] for k in z.files}


def _truncate(ws: np.ndarray, w_avg: np.ndarray, psi: float, cutoff: int) -> np.ndarray:
    """Official truncation, float64: ``x[:, :cutoff] = w_avg.lerp(x[:, :cutoff], psi)``, the rest unchanged."""
    out = np.array(ws, np.float64)
    out[:, :cutoff] = w_avg + psi * (out[:, :cutoff] - w_avg)
    return out


def _results(prefix: Path) -> dict[str, bool]:
    return {c.name: c.result()[2] for c in run_case(load_case(prefix))}


def test_truncation_inputs_layouts():
    psi = np.float32(0.7)
    assert truncation_inputs({"psi": psi, "truncation_cutoff": np.int64(-1)}) == (pytest.approx(0.7), None, None)
    # 4.2: ws_psi carries the case's cutoff; 4.1: it is uncut and ws_psi_cutoff has the cutoff
    assert truncation_inputs({"psi": psi, "truncation_cutoff": np.int64(6)})[1:] == (6, 6)
    assert truncation_inputs({"psi": psi, "truncation_cutoff": np.int64(4), "ws_psi_cutoff": 0})[1:] == (4, None)
    assert truncation_inputs({"truncation_cutoff": np.int64(0)}) == (1.0, 0, 0)  # cutoff 0 is not None


def test_stylegan3_case_with_cutoff(tmp_path):
    """sg3t_r64 with truncation_cutoff 6: ws_psi / img_G_psi computed with it (README 4.2) pass; the golden,
    uncut ws_psi given as the reference for that cutoff fails."""
    case = "sg3t_r64"
    golden = _golden_io(case)
    w_avg = np.load(GOLDEN / f"{case}.weights.npz")["mapping.w_avg"]
    psi, cutoff = float(golden["psi"]), 6
    assert 0 < cutoff < golden["ws"].shape[1]
    ws_psi = _truncate(golden["ws"], w_avg, psi, cutoff).astype(np.float32)
    cfg, params = sg3.from_source(read_golden_npz(GOLDEN / f"{case}.weights.npz", GOLDEN / f"{case}.init_kwargs.json"))
    img = np.asarray(jax.jit(sg3.synthesis, static_argnums=0)(cfg, params, ws_psi)).transpose(0, 3, 1, 2)
    base = {k: golden[k] for k in ("z", "c", "psi", "ws")} | {"truncation_cutoff": np.asarray(cutoff, np.int64)}

    results = _results(_write_case(tmp_path, case, base | {"ws_psi": ws_psi, "img_G_psi": img}))
    assert results == {"ws": True, "ws_psi": True, "img_G_psi": True}

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    results = _results(_write_case(wrong, case, base | {"ws_psi": golden["ws_psi"]}))
    assert results == {"ws": True, "ws_psi": False}


def test_stylegan2_case_without_ws_psi_cutoff(tmp_path):
    """An ada case with only ws_psi (no ws_psi_cutoff array) and cutoff 4: ws_psi is the cutoff mapping."""
    case = "sg2ada_r64_skip"
    golden = _golden_io(case)
    base = {k: golden[k] for k in ("z", "c", "psi", "truncation_cutoff", "ws")}
    assert int(base["truncation_cutoff"]) == 4
    assert _results(_write_case(tmp_path, case, base | {"ws_psi": golden["ws_psi_cutoff"]})) == {
        "ws": True, "ws_psi": True}
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    assert _results(_write_case(wrong, case, base | {"ws_psi": golden["ws_psi"]})) == {"ws": True, "ws_psi": False}


def test_encoder_codes_use_the_case_latent_avg():
    """codes = encoder_out + the case's latent_avg (an input); the model's own latent_avg is a separate check."""
    head, n_styles = "BackboneEncoderUsingLastLayerIntoWPlus", 4
    cfg = enc.Config(encoder_type=head, family="psp", num_layers=50, mode="ir", n_styles=n_styles,
                     start_from_latent_avg=True, fast=False)
    sd = random_encoder_state_dict(cfg, "test-parity-inputs")
    own = np.random.default_rng(1).normal(size=(n_styles, 512)).astype(np.float32)
    opts = {"encoder_type": head, "n_styles": n_styles, "start_from_latent_avg": True}
    _, params = enc.from_source(Source("psp", opts, {**sd, "latent_avg": own}, {}), fast=False)
    x = np.tanh(np.random.default_rng(0).normal(size=(2, 3, 32, 32))).astype(np.float32)
    out = np.asarray(jax.jit(enc.encoder_forward, static_argnums=0)(cfg, params, x.transpose(0, 2, 3, 1)))

    def checks(latent_avg):
        io = {"x": x, "encoder_out": out, "latent_avg": latent_avg, "codes": out + latent_avg}
        case = Case(Path("inline"), "inline", io, {}, {})
        return {c.name: c.result()[2] for c in enc_handler.run_checks(case, cfg, params)}

    assert checks(own) == {"encoder_out": True, "latent_avg": True, "codes": True}
    # another latent_avg: the codes made with it still pass (it was used), the model's own differs
    assert checks(own + 1.0) == {"encoder_out": True, "latent_avg": False, "codes": True}


def test_assert_parity_is_the_tool_criterion():
    ref = np.array([0.5, -20.0])
    assert assert_parity(ref + 1.9e-3, ref, "x") == pytest.approx(1.9e-3)  # tol 1e-4 * 20
    with pytest.raises(AssertionError, match="x: max abs err"):
        assert_parity(ref + 2.1e-3, ref, "x")
    with pytest.raises(AssertionError, match="shape"):
        assert_parity(ref[:1], ref, "x")
    assert_parity(ref + 0.5, ref, "x", tol=0.5)  # a stated tolerance replaces the criterion
