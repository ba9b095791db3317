"""The benchmark protocol shared by `projector.py` and `encoders.py`: a record of the machine, and
interference accounting for each measured piece, so that load on a shared machine cannot pass for speed.

A *piece* is one side's measurement in its own subprocess. `Meter` samples, over the piece's whole lifetime
(imports, compilation and timed part alike), the CPU time of the driver's own process tree (`getrusage`:
this process and its waited-for children), the busy and steal time of the CPUs this process may run on
(`/proc/stat`, the `cpuN` lines of `os.sched_getaffinity`) and `/proc/loadavg` before and after. Other
processes' CPU = machine busy - own tree + steal (time a hypervisor gave to other guests); averaged over the
piece's wall time, in cores. A piece over `max_foreign` cores is *disturbed*; `measure` repeats it (up to
`max_retries` times) and keeps every attempt's record. Ratios come from rounds in which both sides were
clean (`summarise`); a configuration without one is "not measured: machine busy" unless disturbed rounds
are allowed, and then they are marked.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import resource
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
MAX_FOREIGN_CPU = 0.10  # cores, average over a piece
MAX_RETRIES = 2


def add_arguments(ap: argparse.ArgumentParser, rounds_help: str) -> None:
    """The protocol's options (--rounds, --max-foreign-cpu, --max-retries, --allow-disturbed)."""
    ap.add_argument("--rounds", type=int, default=3, help=rounds_help)
    ap.add_argument("--max-foreign-cpu", type=float, default=MAX_FOREIGN_CPU,
                    help="cores other processes may use on average during a piece before it counts as disturbed")
    ap.add_argument("--max-retries", type=int, default=MAX_RETRIES, help="times a disturbed piece is repeated")
    ap.add_argument("--allow-disturbed", action="store_true",
                    help="use disturbed rounds too (flagged DISTURBED beside the figures)")


def cpu_info(path: str = "/proc/cpuinfo") -> dict[str, Any]:
    """CPU model name and the ISA flags of `ISA_FLAGS` that the first CPU lists."""
    model, flags = "?", set()
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model == "?":
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {"cpu_model": model, "isa": [f for f in ISA_FLAGS if f in flags]}


def xla_isa_cap(xla_flags: str) -> str | None:
    """The `--xla_cpu_max_isa=` value in an XLA_FLAGS string (the last one wins), or None."""
    caps = re.findall(r"--xla_cpu_max_isa=(\S+)", xla_flags or "")
    return caps[-1] if caps else None


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions (package metadata, nothing imported)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info(env: dict[str, str] | None = None) -> dict[str, Any]:
    """What the figures depend on: CPU model and ISA, CPUs usable, XLA_FLAGS and its ISA cap, versions."""
    env = os.environ if env is None else env
    xla_flags = env.get("XLA_FLAGS", "")
    return {"node": os.uname().nodename, **cpu_info(), "cpus": len(os.sched_getaffinity(0)),
            "xla_flags": xla_flags, "xla_max_isa": xla_isa_cap(xla_flags), **versions("jax", "jaxlib", "torch"),
            "loadavg": read_loadavg()}


def header(info: dict[str, Any]) -> str:
    cap = info.get("xla_max_isa")
    return (f"# CPU: {info['cpu_model']}, {info['cpus']} CPUs usable, ISA {' '.join(info['isa']) or '?'}; "
            f"jax ISA cap: {('--xla_cpu_max_isa=' + cap) if cap else 'none'}; jax {info.get('jax')} "
            f"(jaxlib {info.get('jaxlib')}), torch {info.get('torch')}; load average {info['loadavg']}")


def read_loadavg(path: str = "/proc/loadavg") -> list[float]:
    try:
        with open(path) as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return []


def read_stat(text: str | None = None, cpus: Sequence[int] | None = None) -> dict[str, int]:
    """Busy and steal jiffies of `cpus` (default: this process's affinity) from /proc/stat text.
    busy = user + nice + system + irq + softirq (guest time is inside user); idle and iowait are not busy."""
    if text is None:
        with open("/proc/stat") as f:
            text = f.read()
    cpus = set(os.sched_getaffinity(0) if cpus is None else cpus)
    busy = steal = 0
    for line in text.splitlines():
        m = re.match(r"cpu(\d+)\s+(.*)", line)
        if not m or int(m.group(1)) not in cpus:
            continue
        v = [int(x) for x in m.group(2).split()] + [0] * 8
        busy += v[0] + v[1] + v[2] + v[5] + v[6]
        steal += v[7]
    return {"busy": busy, "steal": steal}


def own_cpu_s() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def interference(stat0: dict[str, int], stat1: dict[str, int], own_s: float, wall_s: float,
                 tick: float = 1.0 / os.sysconf("SC_CLK_TCK")) -> dict[str, float]:
    """Other processes' CPU over an interval, from two `read_stat` samples and the own tree's CPU seconds.
    Values in cores (CPU seconds / wall second)."""
    busy = (stat1["busy"] - stat0["busy"]) * tick
    steal = (stat1["steal"] - stat0["steal"]) * tick
    wall = max(wall_s, 1e-9)
    return {"wall_s": round(wall_s, 3), "own_cpu_s": round(own_s, 3), "machine_busy_s": round(busy, 3),
            "steal_s": round(steal, 3), "own_cores": round(own_s / wall, 3),
            "foreign_cores": round(max(0.0, busy - own_s + steal) / wall, 3)}


class Meter:
    """Context manager measuring one piece: `with Meter() as m: run(); m.record` (see `interference`)."""

    def __enter__(self) -> Meter:
        self.load0, self.stat0, self.own0 = read_loadavg(), read_stat(), own_cpu_s()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        wall = time.perf_counter() - self.t0
        own, stat1 = own_cpu_s() - self.own0, read_stat()
        self.record = {**interference(self.stat0, stat1, own, wall), "loadavg_before": self.load0,
                       "loadavg_after": read_loadavg()}


def measure(run: Callable[[], dict[str, Any]], max_foreign: float = MAX_FOREIGN_CPU,
            max_retries: int = MAX_RETRIES, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one piece (`run()` returns its result dict) under a `Meter`; repeat it while it is disturbed, at
    most `max_retries` more times. Returns the last attempt's result with `interference`, `disturbed` and
    `repeated` (the earlier attempts: their records and results) added. Failed pieces (an "error" key) are
    not repeated."""
    repeated: list[dict[str, Any]] = []
    while True:
        with Meter() as m:
            res = run()
        rec = {**m.record, "disturbed": m.record["foreign_cores"] > max_foreign}
        if "error" in res or not rec["disturbed"] or len(repeated) >= max_retries:
            return {**res, "interference": rec, "disturbed": rec["disturbed"], "repeated": repeated}
        repeated.append({**rec, "result": res})
        log(f"  disturbed: other processes used {rec['foreign_cores']:.2f} cores on average "
            f"(> {max_foreign:.2f}), load {rec['loadavg_before'][:1]} -> {rec['loadavg_after'][:1]}; "
            f"repeating ({len(repeated)}/{max_retries})")


def busy_note(pieces: Sequence[dict[str, Any]]) -> str:
    """'not measured: machine busy (...)' with the interference figures of the given disturbed pieces."""
    recs = [p["interference"] for p in pieces if p.get("disturbed")]
    if not recs:
        return "not measured"
    foreign = [r["foreign_cores"] for r in recs]
    loads = [r["loadavg_before"][0] for r in recs if r["loadavg_before"]]
    loads += [r["loadavg_after"][0] for r in recs if r["loadavg_after"]]
    load = f", load {min(loads):.1f}..{max(loads):.1f}" if loads else ""
    return (f"not measured: machine busy (other processes {min(foreign):.2f}..{max(foreign):.2f} cores "
            f"in {len(recs)} pieces{load})")


def summarise(values: Sequence[tuple[float, bool]], allow_disturbed: bool = False) -> dict[str, Any]:
    """Median and spread of per-round values [(value, disturbed)]: clean rounds only, unless
    `allow_disturbed` (then all, counted in `disturbed`). `median` is None when no round can be used."""
    use = [v for v, d in values if allow_disturbed or not d]
    out: dict[str, Any] = {"rounds": len(values), "clean": sum(not d for _, d in values),
                           "disturbed": sum(d for _, d in values) if allow_disturbed else 0,
                           "median": None, "min": None, "max": None}
    if use:
        out.update(median=statistics.median(use), min=min(use), max=max(use))
    return out


def fmt_summary(s: dict[str, Any], nd: int = 2, unit: str = "") -> str:
    """'1.23x [1.10..1.31] 3/3 clean' (with ' DISTURBED k' when disturbed rounds were used)."""
    if s["median"] is None:
        return "-"
    flag = f" DISTURBED {s['disturbed']}" if s["disturbed"] else ""
    return (f"{s['median']:.{nd}f}{unit} [{s['min']:.{nd}f}..{s['max']:.{nd}f}] "
            f"{s['clean']}/{s['rounds']} clean{flag}")
