"""Smoke test of benchmarks/projector.py: the jaxinv side on a tiny random generator (no torch, no official
repo). Checks that the core function runs and reports finite timings under the documented keys; no timing
assertions (machines are shared)."""

import importlib.util
import math

import numpy as np

from tests.conftest import ROOT


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_projector", ROOT / "benchmarks" / "projector.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_projector_benchmark_jaxinv_side(tmp_path):
    bench = _load_bench()
    init_kwargs = {"z_dim": 16, "c_dim": 0, "w_dim": 16, "img_resolution": 16, "img_channels": 3,
                   "mapping_kwargs": {"num_layers": 2},
                   "synthesis_kwargs": {"channel_base": 256, "channel_max": 16, "num_fp16_res": 0,
                                        "conv_clamp": 256}}
    weights, init_json = bench.numpy_generator_files(init_kwargs, tmp_path)
    target = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)

    res = bench.run_jaxinv(weights, init_json, target, batch=2, steps=2, w_avg_samples=64, heads=None)
    for key in bench.JAXINV_KEYS:
        assert key in res, f"missing key {key!r} in {sorted(res)}"
    assert res["batch"] == 2 and res["steps"] == 2
    assert res["finite"], res
    for key in ("compile_s", "exec_s", "step_s", "image_steps_per_s", "e2e_image_steps_per_s", "peak_rss_mib",
                "gflop_per_image_step", "gflop_per_s"):
        assert math.isfinite(res[key]) and res[key] > 0, f"{key} = {res[key]}"
    # The per-step rate excludes the call's prologue/epilogue (a FLOP share strictly between 0 and 1).
    assert 0 < res["steps_share"] < 1, res
    assert math.isclose(res["e2e_image_steps_per_s"], 2 * 2 / res["exec_s"], rel_tol=0.02), res
    assert math.isclose(res["image_steps_per_s"], res["e2e_image_steps_per_s"] / res["steps_share"], rel_tol=0.02)
    assert math.isclose(res["mib_per_image"], res["peak_rss_mib"] / 2, rel_tol=0.02), res

    # The table and ratio printers accept the result layout the driver builds.
    off = {"image_steps_per_s": 0.5, "step_s": 2.0, "peak_rss_mib": 1000.0, "mib_per_image": 1000.0,
           "gflop_per_image_step": 1.0, "gflop_per_s": 0.5}
    bench.print_table({"tiny": {"official": off, "jaxinv": {"default": {2: res}, "eigen": {2: res}}}})
    bench.print_ratios({"tiny": {"official": off, "jaxinv": {"default": {2: res}, "eigen": {2: res}}}}, {})
