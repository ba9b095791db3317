"""Benchmarks: a smoke test of benchmarks/projector.py's jaxinv side on a tiny random generator (no torch, no
official repo) and the protocol's pure logic (interference accounting, median/spread, refusal of disturbed
rounds) on synthetic samples. No timing assertions (machines are shared)."""

import gzip
import importlib.util
import json
import math
import sys

import numpy as np

from tests.conftest import ROOT


def _load(name: str, file: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / file)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


protocol = _load("_protocol", "_protocol.py")  # the scripts import it by this name


def _load_bench():
    return _load("bench_projector", "projector.py")


STAT = """cpu  900 0 100 5000 10 0 0 30 0 0
cpu0 400 0 50 2500 5 0 0 10 0 0
cpu1 500 0 50 2500 5 0 0 20 0 0
intr 1 2 3
"""


def _stat(busy0: int, busy1: int, steal0: int = 0, steal1: int = 0) -> str:
    """/proc/stat text: cpu0 / cpu1 with the given user ticks (other busy fields 0) and steal."""
    return (f"cpu  1 1 1 1 1 1 1 1 0 0\ncpu0 {busy0} 0 0 100 0 0 0 {steal0} 0 0\n"
            f"cpu1 {busy1} 0 0 100 0 0 0 {steal1} 0 0\n")


def test_read_stat_sums_the_affinity_cpus():
    assert protocol.read_stat(STAT, cpus=[0, 1]) == {"busy": 1000, "steal": 30}
    assert protocol.read_stat(STAT, cpus=[1]) == {"busy": 550, "steal": 20}


def test_interference_is_machine_busy_minus_own_plus_steal():
    # 10 s piece at 100 ticks/s: both CPUs busy 1000 + 500 ticks = 15 s, own tree 14 s -> 1 s = 0.1 cores
    rec = protocol.interference(protocol.read_stat(_stat(0, 0), [0, 1]), protocol.read_stat(_stat(1000, 500), [0, 1]),
                                own_s=14.0, wall_s=10.0, tick=0.01)
    assert rec["machine_busy_s"] == 15.0 and rec["own_cores"] == 1.4
    assert math.isclose(rec["foreign_cores"], 0.1)
    # a hypervisor's steal counts as other load; own time above machine busy (tick rounding) clamps at 0
    rec = protocol.interference(protocol.read_stat(_stat(0, 0), [0, 1]),
                                protocol.read_stat(_stat(1000, 500, 100, 100), [0, 1]),
                                own_s=15.0, wall_s=10.0, tick=0.01)
    assert math.isclose(rec["foreign_cores"], 0.2)
    rec = protocol.interference(protocol.read_stat(_stat(0, 0), [0, 1]), protocol.read_stat(_stat(100, 0), [0, 1]),
                                own_s=1.2, wall_s=1.0, tick=0.01)
    assert rec["foreign_cores"] == 0.0


def test_machine_record(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f "
                       "avx512_bf16\n\nprocessor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    assert protocol.cpu_info(str(cpuinfo)) == {"cpu_model": "AMD EPYC 9R14",
                                               "isa": ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16"]}
    assert protocol.xla_isa_cap("--xla_cpu_max_isa=AVX512 --foo --xla_cpu_max_isa=AVX2") == "AVX2"
    assert protocol.xla_isa_cap("") is None
    info = protocol.machine_info({"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"})
    assert info["xla_max_isa"] == "AVX2" and info["jax"] and "cpu_model" in info
    assert "--xla_cpu_max_isa=AVX2" in protocol.header(info)


def test_summarise_median_spread_and_refusal():
    s = protocol.summarise([(1.0, False), (3.0, True), (1.4, False), (1.2, False)])
    assert (s["median"], s["min"], s["max"], s["clean"], s["rounds"], s["disturbed"]) == (1.2, 1.0, 1.4, 3, 4, 0)
    assert protocol.fmt_summary(s, unit="x") == "1.20x [1.00..1.40] 3/4 clean"
    refused = protocol.summarise([(1.0, True), (2.0, True)])
    assert refused["median"] is None and protocol.fmt_summary(refused) == "-"
    allowed = protocol.summarise([(1.0, True), (2.0, True), (4.0, False)], allow_disturbed=True)
    assert allowed["median"] == 2.0 and allowed["disturbed"] == 2
    assert protocol.fmt_summary(allowed).endswith("1/3 clean DISTURBED 2")


def _piece(speed: float, foreign: float, disturbed: bool, **extra) -> dict:
    rec = {"foreign_cores": foreign, "own_cores": 1.9, "wall_s": 60.0, "loadavg_before": [1.0, 1.0, 1.0],
           "loadavg_after": [2.5, 1.5, 1.0], "disturbed": disturbed}
    return {"image_steps_per_s": speed, "interference": rec, "disturbed": disturbed, "repeated": [], **extra}


def test_measure_repeats_disturbed_pieces(monkeypatch):
    foreign = iter([0.5, 0.3, 0.05, 0.9, 0.9, 0.9, 0.9])

    class FakeMeter:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.record = {"foreign_cores": next(foreign), "own_cores": 2.0, "wall_s": 1.0,
                           "loadavg_before": [1.0], "loadavg_after": [1.0]}

    monkeypatch.setattr(protocol, "Meter", FakeMeter)
    calls = []
    run = lambda: calls.append(1) or {"v": len(calls)}  # noqa: E731
    res = protocol.measure(run, max_foreign=0.1, max_retries=2, log=lambda m: None)
    assert res["v"] == 3 and not res["disturbed"] and [r["foreign_cores"] for r in res["repeated"]] == [0.5, 0.3]
    res = protocol.measure(run, max_foreign=0.1, max_retries=2, log=lambda m: None)  # still busy: kept, flagged
    assert res["disturbed"] and len(res["repeated"]) == 2 and res["v"] == 6
    assert "not measured: machine busy" in protocol.busy_note([res])
    assert protocol.measure(lambda: {"error": "rc 1"}, max_retries=2, log=print)["repeated"] == []


def test_projector_table_refuses_disturbed_rounds(capsys):
    bench = _load_bench()
    common = {"step_s": 1.0, "compile_s": 10.0, "peak_rss_mib": 1000.0, "mib_per_image": 500.0,
              "gflop_per_image_step": 100.0, "gflop_per_s": 80.0, "e2e_image_steps_per_s": 0.7}
    off = [_piece(0.5, 0.0, False, **common), _piece(0.4, 0.8, True, **common), _piece(0.6, 0.0, False, **common)]
    jx = [_piece(1.0, 0.0, False, **common), _piece(1.1, 0.0, False, **common), _piece(0.9, 0.0, False, **common)]
    busy = [_piece(0.3, 1.0, True, **common) for _ in range(3)]
    slow = [_piece(0.5, 0.0, False, **common) for _ in range(3)]
    results = {"cfg": {"official": off, "jaxinv": {"default": {2: jx}, "eigen": {2: busy}, "direct": {2: slow}}}}
    bench.summarise(results)
    ratio = results["cfg"]["summary"]["jaxinv"]["default"][2]["ratio"]
    assert (ratio["median"], ratio["clean"], ratio["rounds"]) == (1.75, 2, 3)  # round 2: the official was busy
    assert math.isclose(ratio["min"], 1.5) and math.isclose(ratio["max"], 2.0)
    bench.print_table(results)
    bench.print_ratios(results, {"cfg": 2.0})
    out = capsys.readouterr().out
    assert "1.75 [1.50..2.00] 2/3" in out and "not measured: machine busy" in out and "DISTURBED" not in out
    assert "off-eq GFLOP/s" in out and "2/3 clean" in out and "cfg batch 2: 0.50x direct/default" in out
    bench.summarise(results, allow_disturbed=True)
    bench.print_table(results, allow_disturbed=True)
    out = capsys.readouterr().out
    assert "DISTURBED" in out and "not measured" not in out


def test_encoders_summary_pairs_rounds():
    enc = _load("bench_encoders", "encoders.py")

    def side(ips: float, disturbed: bool) -> dict:
        return {"batches": {1: {"images_per_s": ips}}, "disturbed": disturbed}

    rounds = [{"torch": side(2.0, False), "jax": side(3.0, False)},
              {"torch": side(1.0, True), "jax": side(3.0, False)},
              {"torch": side(2.0, False), "jax": side(4.0, False)}]
    s = enc.summarise(rounds, [1])
    assert s["ratio"][1]["median"] == 1.75 and s["ratio"][1]["clean"] == 2 and s["torch"][1]["median"] == 2.0
    assert enc.summarise(rounds, [1], allow_disturbed=True)["ratio"][1]["max"] == 3.0


def test_projector_benchmark_jaxinv_side(tmp_path):
    bench, batch = _load_bench(), 2
    init_kwargs = {"z_dim": 16, "c_dim": 0, "w_dim": 16, "img_resolution": 16, "img_channels": 3,
                   "mapping_kwargs": {"num_layers": 2},
                   "synthesis_kwargs": {"channel_base": 256, "channel_max": 16, "num_fp16_res": 0,
                                        "conv_clamp": 256}}
    weights, init_json = bench.numpy_generator_files(init_kwargs, tmp_path)
    target = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)

    res = bench.run_jaxinv(weights, init_json, target, batch=batch, steps=2, w_avg_samples=64, heads=None)
    for key in bench.JAXINV_KEYS:
        assert key in res, f"missing key {key!r} in {sorted(res)}"
    assert res["batch"] == batch and res["steps"] == 2
    assert res["finite"], res
    for key in ("compile_s", "exec_s", "step_s", "image_steps_per_s", "e2e_image_steps_per_s", "peak_rss_mib",
                "gflop_per_image_step", "gflop_per_s"):
        assert math.isfinite(res[key]) and res[key] > 0, f"{key} = {res[key]}"
    # The per-step rate excludes the call's prologue/epilogue: marginal (a second program of 4 steps), or
    # apportioned by FLOPs (a share strictly between 0 and 1) where timer noise hides the difference.
    assert 0 < res["steps_share"] < 1, res
    assert math.isclose(res["e2e_image_steps_per_s"], batch * 2 / res["exec_s"], rel_tol=0.02), res
    apportioned = res["e2e_image_steps_per_s"] / res["steps_share"]
    assert math.isclose(res["flop_apportioned_image_steps_per_s"], apportioned, rel_tol=0.02), res
    assert res["long_steps"] == 4 and res["long_exec_s"] > 0, res
    if res["rate_method"] == "marginal":
        marginal = batch * 2 / (res["long_exec_s"] - res["exec_s"])
        assert math.isclose(res["image_steps_per_s"], marginal, rel_tol=0.02), res
    else:
        assert res["rate_method"] == "flop-apportioned" and res["long_exec_s"] <= res["exec_s"], res
        assert res["image_steps_per_s"] == res["flop_apportioned_image_steps_per_s"], res
    assert math.isclose(res["gflop_per_s"], res["gflop_per_image_step"] * res["image_steps_per_s"], rel_tol=0.02)
    assert math.isclose(res["mib_per_image"], res["peak_rss_mib"] / batch, rel_tol=0.02), res


HLO = """HloModule jit_run

%body.1 (p: (s32[], f32[4])) -> (s32[], f32[4]) {
  %add.1 = f32[4]{0} add(%a, %b), metadata={op_name="jit(run)/while/body/generator/add"}
  %dot.2 = f32[36,8]{1,0} dot(%c, %d), metadata={op_name="jit(run)/while/body/transpose(jvp(lpips))/dot_general"}
}

ENTRY %main.3 (x: f32[4]) -> f32[4] {
  %stack.4 = f32[36,4]{1,0} fusion(%x), kind=kLoop, calls=%fc.5, metadata={op_name="jit(run)/generator/stack"}
  %while.6 = (s32[], f32[4]) while(%t), condition=%cond, body=%body.1
}
"""


def test_profile_reports_hoisted_ops_per_call_apart_from_the_step_loop(tmp_path):
    bench = _load_bench()
    ev = lambda op, us: {"ph": "X", "dur": us, "args": {"hlo_op": op, "hlo_module": "jit_run"}}  # noqa: E731
    with gzip.open(tmp_path / "x.trace.json.gz", "wt") as f:
        json.dump({"traceEvents": [ev("add.1", 4000), ev("dot.2", 6000), ev("stack.4", 10000),
                                   ev("while.6", 30000)]}, f)
    out = bench._summarise_trace(tmp_path, HLO, per=2)  # one traced call of 2 steps
    assert out["traced_ms_per_step"] == 5.0  # (4 + 6) / 2: the loop's ops only, the while itself not counted
    assert out["per_call_ms"] == 10.0  # the hoisted stack, once per call
    assert out["by_part_ms"] == {"lpips bwd dot": 3.0, "generator fwd elem": 2.0}
    rows = {r["op"]: r for r in out["top_ops"]}
    assert rows["stack.4"]["per_call"] and rows["stack.4"]["ms"] == 10.0
    assert not rows["add.1"]["per_call"] and rows["add.1"]["ms"] == 2.0
