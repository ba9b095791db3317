"""Projector throughput: jaxinv's compiled W projection vs the official stylegan2-ada-pytorch `project()` loop.

Both sides run the same maths on the same machine in one invocation: W space with free noise maps, the
official Adam schedule, LPIPS-VGG16 distance plus the noise regulariser (weight 1e5), target features once.
Same generator config and weights (random, manifest shapes), same VGG16 (random torchvision-layout weights
with the real LPIPS v0.1 heads), same uint8 target (an image of the generator).

    python benchmarks/projector.py --official-src /tmp/stylegan2-ada-pytorch              # both configs
    python benchmarks/projector.py --official-src ... --configs paper256 --batches 1,4,16 --rounds 3 --json r.json
    python benchmarks/projector.py --official-src ... --config-batches ffhq1024=1,4      # 1024 x 16 needs ~25 GiB
    python benchmarks/projector.py --official-src /tmp/stylegan2-ada-pytorch --quick      # smoke test
    python benchmarks/projector.py --configs paper256 --batches 1,4,16 --steps 5 --no-official
    python benchmarks/projector.py --profile paper256 --batches 16                        # where time goes
    python benchmarks/projector.py --predict-memory --configs ffhq1024 --batches 4,16     # fits this machine?

The official code is never vendored. Get it at the commit the goldens were made with:

    git clone https://github.com/NVlabs/stylegan2-ada-pytorch
    git -C stylegan2-ada-pytorch checkout d72cc7d

and install what its imports need into the venv: `pip install torch==2.13.0 click requests` (`dnnlib`
imports `requests`, `legacy`/`projector` import `click`; `imageio` is only used by the CLI's video writer and
is replaced by an empty module when absent). The CUDA plugins are never built on CPU (the official ops take
their reference paths); `torch.utils.cpp_extension.load` is stubbed anyway so that nothing compiles.

Protocol (`benchmarks/_protocol.py`), so that load on a shared machine cannot pass for speed: the sides are
interleaved in `--rounds` rounds (default 3), each round per config the official piece, then every jaxinv
(XLA setting, batch) piece, each piece in its own subprocess. Over each piece's whole subprocess (imports,
compilation, timed part) the driver records /proc/loadavg before and after, its own process tree's CPU time
(getrusage) and the busy and steal time of its CPUs (/proc/stat); other processes' CPU = busy - own + steal,
in cores averaged over the piece's wall time. A piece above `--max-foreign-cpu` (default 0.10 cores) is
DISTURBED and run again at once, up to `--max-retries` (default 2) more times; every attempt stays in the
JSON. Each jaxinv piece's ratio is taken to the official piece of its round; the table prints per row the
median over the clean rounds (a ratio's round is clean when both of its pieces are) with the min..max spread
and the count of clean rounds. A row with no clean round prints "not measured: machine busy" with the
interference figures, unless `--allow-disturbed` (then disturbed rounds count, flagged DISTURBED beside the
figures). The header (and the JSON's `info`) records the CPU model, its ISA flags, an XLA_FLAGS ISA cap
(`--xla_cpu_max_isa=`) if any, and the jax/jaxlib/torch versions. Columns: image-steps/s, GFLOP/s (the
side's own FLOPs per second: kernel speed) and off-eq GFLOP/s (the official FLOPs per image-step x
image-steps/s: kernel speed times FLOP cuts), with compile time, peak RSS and MiB/img as before.

What runs, each in its own subprocess (peak RSS = that process's `ru_maxrss`):
* prep: the official `Generator(**init_kwargs)` under `torch.manual_seed(seed)` (weights/const/noise buffers
  the official random init; noise strengths and w_avg made non-zero as golden README section 3 does), its
  state_dict written to an npz + init_kwargs JSON (converted by jaxinv's own reader, `read_golden_npz`), and
  the target `((G.synthesis(w) + 1) * 127.5).clamp(0, 255).to(uint8)`. `num_fp16_res` is set to 0: jaxinv
  always runs float32 and the official fp16 blocks are a CUDA path (on CPU they would be float16 CPU convs).
* official: `projector.project(G, target, num_steps=steps + 2, w_avg_samples=N, verbose=True)` with
  `dnnlib.util.open_url` redirected to a TorchScript LPIPS-VGG16 with the CDN `vgg16.pt` call signature
  `forward(img, resize_images: bool = True, return_lpips: bool = False)`. Per-step times come from the
  projector's own per-step log line (its module-global `print` is replaced by a time-stamper; the code is
  not modified): step 1 is the warm-up, steps 2..steps+1 are timed, the last step is counted with
  `torch.utils.flop_counter.FlopCounterMode` (FLOPs of one full iteration: forward, backward, Adam, noise
  renormalisation). `w_avg_samples` (official default 10000) is setup, not step time; a smaller value
  (`--w-avg-samples`, default 1000) is used on both sides. Batch 1 only, as project() supports.
* jaxinv: `jaxinv.invert(model, images, space=WSpace(noise=True), loss=LPIPS + 1e5 * noise-reg,
  optimizer=Adam(), steps=steps)` with `batch` lanes (images x restarts, vmapped, steps in one lax.scan).
  Compile time (trace + lowering + XLA compile, read from `jax.monitoring` events) is reported separately;
  the rest of `InvertResult.seconds` is execution. One call also pays a prologue/epilogue (target LPIPS
  features, weight transforms hoisted out of the step loop, final loss of every lane); `e2e` image-steps/s
  include it. The headline image-steps/s is the marginal rate, as the official per-step intervals are: the
  same child also runs a program of 2 x steps steps, and one step costs (exec(2 x steps) - exec(steps)) /
  steps (`rate_method: marginal`). `--flop-apportioned` (and programs too small to time that way) instead
  apportion exec(steps) by XLA FLOP counts of the lowered pieces (one lane step, one final evaluation, one
  target's features), which also charges the per-call work that is not FLOPs to the steps (results before
  2026-12-05d were measured so). FLOPs per image-step: XLA cost analysis of one lowered Adam step of one lane (the
  compiled program's count agrees within 0.3%). Every batch size runs under two XLA CPU settings: jax's
  default flags (`JAXINV_XLA_CPU_CONVS=default`), and `--xla_cpu_experimental_ynn_fusion_type=` (YNN fusions
  off, i.e. Eigen convolutions: `JAXINV_XLA_CPU_CONVS=eigen`, see README), and under every `--lane-groups`
  value (invert's `lane_group`: `auto` is the engine's choice, 1 on CPU; `all` vmaps the whole batch in one
  program; rows other than auto show it in the xla column as `default/lg=all`).

Peak RSS covers the whole process (imports, weights, compilation, execution); MiB/img = peak / batch.
Large batches need a lot of memory (jaxinv at 256 x 16 images: ~9 GiB; at 1024 x 16: tens of GiB), and a
process killed by the kernel's OOM killer is reported as an error row (`rc -9`). `--predict-memory` compiles
one step per batch size without running it and prints XLA's memory analysis (resident RSS + temporaries),
so that the batch sizes that fit a machine can be chosen first (on a shared machine, do).

`--device cuda` runs both sides on the GPU (default `cpu`: everything above). Torch: `project(device=cuda)`
moves G, VGG and target there; the official CUDA plugins (bias_act, upfirdn2d) are built first, before any
piece is timed (a build is load), by a child with `torch.utils.cpp_extension` (cached under the work dir's
`torch_extensions`); a build that fails or exceeds `--plugin-timeout` leaves the official side on its
reference ops, and the result records which ran (`plugins`). Interference is measured on the CPUs only, not
on the GPU. Every per-step stamp synchronises the device (the JSON has the median step too, `step_median_s`:
the mean can hold a one-off slow step); `num_fp16_res` stays 0 (float32 on both sides).
Torch's TF32 switches are left at their defaults and recorded (`tf32_matmul`, `tf32_cudnn`). jaxinv runs on
jax's GPU backend (`JAX_PLATFORMS=cuda,cpu`) at jax's default matmul precision (recorded); its timings end
with the results on the host (blocking). Peak memory is the GPU's: `torch.cuda.max_memory_allocated` and
jax's `memory_stats()["peak_bytes_in_use"]` (host RSS is kept in the JSON). FLOP counts are the same as on
CPU (jax side: the XLA cost analysis of the pieces lowered for the CPU backend; the GPU plugin's lowering
has none); `--peak-tflops` adds an MFU column. Only the `default` XLA setting runs there.

    python benchmarks/projector.py --device cuda --official-src ... --steps 10 --peak-tflops 495
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import _protocol as protocol  # benchmarks/_protocol.py (this script's folder is on sys.path)
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("JAXINV_SHARED", ROOT.parent / "shared"))
MANIFESTS = SHARED / "golden" / "manifests"
HEADS = SHARED / "realdata" / "weights" / "lpips_linear_heads" / "vgg_v0.1.npz"
CONFIGS = {"paper256": "sg2ada_256_paper256", "ffhq1024": "sg2ada_ffhq1024_stylegan2cfg"}
XLA_SETTINGS = {"default": "", "eigen": "--xla_cpu_experimental_ynn_fusion_type=",
                "direct": ""}  # direct: default flags, the generator's convs without Winograd (ops.WINOGRAD)
OFFICIAL_COMMIT = "d72cc7d"
NOISE_WEIGHT = 1e5  # official regularize_noise_weight
VGG_SEED = 20240601

# torchvision VGG16 `features` conv indices / channels (jaxinv.losses.vgg16 has the same table; repeated
# here so that the torch side does not import jax).
_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_CONV_CHANNELS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                  (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512))


# ---------------------------------------------------------------------------------------------------------
# Shared inputs (numpy only)


def random_vgg16_state_dict(seed: int = VGG_SEED) -> dict[str, np.ndarray]:
    """torchvision-layout VGG16 `features.*` (OIHW), He-normal weights, small biases: same on both sides."""
    rng = np.random.default_rng(seed)
    sd = {}
    for idx, (cin, cout) in zip(_CONV_INDICES, _CONV_CHANNELS, strict=True):
        sd[f"features.{idx}.weight"] = (rng.standard_normal((cout, cin, 3, 3), np.float32)
                                        * np.float32(np.sqrt(2.0 / (cin * 9))))
        sd[f"features.{idx}.bias"] = (0.01 * rng.standard_normal(cout)).astype(np.float32)
    return sd


def lpips_heads(path: str | os.PathLike | None) -> dict[str, np.ndarray]:
    """LPIPS v0.1 VGG heads {"lin0".. "lin4": [C]}; `None` = random non-negative heads (tests)."""
    chans = (64, 128, 256, 512, 512)
    if path is None:
        rng = np.random.default_rng(1)
        return {f"lin{k}": rng.uniform(0.0, 0.2, c).astype(np.float32) for k, c in enumerate(chans)}
    with np.load(path, allow_pickle=False) as z:
        return {f"lin{k}": np.asarray(z[f"lin{k}.model.1.weight"], np.float32).reshape(c)
                for k, c in enumerate(chans)}


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def numpy_generator_files(init_kwargs: dict, out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Random StyleGAN2 weights in official names/layouts written as `<out>/G.weights.npz` + init JSON,
    without torch (unit-normal weights as the official init; noise strengths / biases non-zero)."""
    from jaxinv.models import stylegan2

    init = {"family": "stylegan2-ada-pytorch", "class_name": "training.networks.Generator", "init_args": [],
            "init_kwargs": init_kwargs}
    cfg = stylegan2.config_from_init(init)
    rng = np.random.default_rng(seed)
    sd = {}
    for name, shape in ((e.name, e.shape) for e in stylegan2.param_table(cfg)):
        if name.endswith("affine.bias"):
            a = np.ones(shape)
        elif name.endswith("noise_strength"):
            a = rng.normal(0.1, 0.2, shape)
        elif name.endswith(".bias") or name == "mapping.w_avg":
            a = rng.normal(0.0, 0.1, shape)
        else:
            a = rng.standard_normal(shape)
        sd[name] = np.asarray(a, np.float32)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, init_json = out_dir / "G.weights.npz", out_dir / "G.init_kwargs.json"
    np.savez(weights, **sd)
    init_json.write_text(json.dumps(init, indent=1))
    return weights, init_json


def jaxinv_target(weights: Path, init_json: Path, out: Path, seed: int = 0) -> Path:
    """uint8 [H, W, 3] target rendered by jaxinv's generator (used when the official side is off)."""
    import jax

    from jaxinv.generators import Generator
    from jaxinv.models import from_source
    from weights_convert.source import read_golden_npz

    gen = Generator.from_model(from_source(read_golden_npz(weights, init_json)))
    z = np.random.RandomState(seed).randn(1, gen.z_dim).astype(np.float32)
    img = np.asarray(jax.jit(lambda g, z: g.synthesis(g.mapping(z, truncation_psi=0.7)))(gen, z))[0]
    np.save(out, np.clip((img + 1) * 127.5, 0, 255).astype(np.uint8))
    return out


# ---------------------------------------------------------------------------------------------------------
# jaxinv side


class _CompileClock:
    """Sums jax's compile-phase durations (trace, lowering, XLA compile) reported via jax.monitoring."""

    EVENTS = ("/jax/core/compile/jaxpr_trace_duration", "/jax/core/compile/jaxpr_to_mlir_module_duration",
              "/jax/core/compile/backend_compile_duration")

    def __init__(self) -> None:
        import jax

        self.total = 0.0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, name: str, duration: float, **_: Any) -> None:
        if self.active and name in self.EVENTS:
            self.total += duration

    def __enter__(self) -> _CompileClock:
        self.total, self.active = 0.0, True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.active = False


def run_jaxinv(weights: str | os.PathLike, init_json: str | os.PathLike, target: str | os.PathLike | np.ndarray,
               *, batch: int, steps: int, w_avg_samples: int = 1000, restarts: int = 1,
               heads: str | os.PathLike | None = None, repeat: int = 0, device: str = "cpu",
               lane_group: int | str | None = "auto", marginal: bool = True) -> dict[str, Any]:
    """Time `jaxinv.invert` (W + free noise maps, LPIPS + noise reg, official Adam) on `batch` lanes
    (batch // restarts images x restarts) for `steps` steps, `lane_group` lanes vmapped at a time
    (`invert`'s argument: "auto" = the engine's choice, None = all lanes in one vmapped program).

    One call compiles and runs; its compile phases (trace, lowering, XLA compile; `jax.monitoring` events)
    are subtracted to give the execution time (`repeat` > 0: extra calls, the fastest execution is used).
    The execution covers `steps` optimisation steps plus the per-call prologue/epilogue (target LPIPS
    features, weight transforms XLA hoisted out of the loop, final loss of every lane). The per-step rate
    (`image_steps_per_s`) is the marginal one, as the official side's per-step intervals are: with `marginal`,
    a second program of 2 x `steps` steps runs too, and a step costs (exec(2 steps) - exec(steps)) / steps.
    Without it, or when that difference is not positive (tiny programs: timer noise), the rate apportions
    exec(steps) by XLA FLOP counts of the lowered pieces (one lane step, one lane's final evaluation, one
    target's features), which also charges the non-FLOP per-call work to the steps; `rate_method` says which.
    Keys: `JAXINV_KEYS`. device "cuda": jax's default backend must be the GPU; adds its peak memory."""
    import jax
    import jax.numpy as jnp

    from jaxinv.generators import Generator
    from jaxinv.invert import LPIPS, Loss, NoiseReg, invert, resolve_lane_group
    from jaxinv.losses.lpips import lpips_params
    from jaxinv.losses.vgg16 import vgg16_params_from_torchvision
    from jaxinv.models import from_source
    from jaxinv.optim import Adam
    from jaxinv.spaces import WSpace, w_statistics
    from weights_convert.source import read_golden_npz

    if batch % restarts:
        raise ValueError(f"batch {batch} is not a multiple of restarts {restarts}")
    if device == "cuda" and jax.default_backend() != "gpu":
        raise SystemExit(f"--device cuda: jax's default backend is {jax.default_backend()!r}, not gpu")
    clock = _CompileClock()
    model = from_source(read_golden_npz(weights, init_json))
    gen = Generator.from_model(model)
    lp = lpips_params(vgg16_params_from_torchvision(random_vgg16_state_dict(), src="random"), lpips_heads(heads))
    tgt = np.load(target) if not isinstance(target, np.ndarray) else target
    n_images = batch // restarts
    images = np.repeat((tgt.astype(np.float32) / 127.5 - 1.0)[None], n_images, axis=0)
    loss = Loss((LPIPS(params=lp), NoiseReg()), (1.0, NOISE_WEIGHT))
    space = WSpace(noise=True, num_samples=w_avg_samples)
    opt = Adam()
    w_statistics(gen, w_avg_samples)  # compiles the mapping of the space statistics before the timed call
    rss_before = _rss_mib()

    def call(n_steps: int) -> tuple[Any, float]:
        with clock:
            res = invert(model, images, space=space, loss=loss, optimizer=opt, steps=n_steps, restarts=restarts,
                         seed=0, lane_group=lane_group)
        return res, clock.total

    def execution(n_steps: int) -> tuple[Any, float, float, float, list[float]]:
        """(first result, its compile s, its wall s, execution s: fastest of the calls, repeats' execution s)"""
        res, compile_s = call(n_steps)
        repeats = []
        for _ in range(repeat):
            r, c = call(n_steps)
            repeats.append(r.seconds - c)
        return res, compile_s, res.seconds, min(repeats) if repeats else res.seconds - compile_s, repeats

    res, compile_s, first_s, exec_s, repeats = execution(steps)
    long = execution(2 * steps) if marginal else None
    peak = _peak_rss_mib()
    gpu = {}
    if device == "cuda":
        stats = jax.devices()[0].memory_stats() or {}
        gpu = {"gpu_peak_mib": round(stats.get("peak_bytes_in_use", float("nan")) / 2**20, 1),
               "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
               "matmul_precision": str(getattr(jax.config, "jax_default_matmul_precision", "?"))}

    # FLOPs of the pieces, from lowered (not compiled) programs: tracing only. Lowered for the CPU backend
    # (same HLO; the GPU plugin's lowering has no cost analysis).
    cpu = jax.devices("cpu")[0]
    sp = space.prepare(gen)
    one = jnp.asarray(images[:1])
    prep = tuple(t.prepare(one) for t in loss.terms)

    latent = sp.init(jax.random.PRNGKey(0), gen, 1, center=True)
    opt_state = opt.init(latent, None).opt_state
    ctx = (gen, sp, loss, prep)  # pytrees: params are arguments of the programs, as in invert()
    ctx, latent, opt_state, one, loss_c = jax.device_put((ctx, latent, opt_state, one, loss), cpu)
    f_step = _flops(jax.jit(partial(_lane_step, opt, steps)).lower(ctx, latent, opt_state,
                                                                   jax.device_put(jax.random.PRNGKey(1), cpu)))
    f_final = _flops(jax.jit(_lane_value).lower(ctx, latent))
    f_prep = _flops(jax.jit(lambda loss, x: tuple(t.prepare(x) for t in loss.terms)).lower(loss_c, one))
    f_steps = steps * batch * f_step
    f_call = f_steps + batch * f_final + n_images * f_prep
    apportioned_step_s = exec_s * f_steps / f_call / steps  # one step of all lanes
    step_s, method, extra = apportioned_step_s, "flop-apportioned", {}
    if long is not None:
        _, long_compile_s, _, long_exec_s, long_repeats = long
        extra = {"long_steps": 2 * steps, "long_compile_s": round(long_compile_s, 2),
                 "long_exec_s": round(long_exec_s, 3), "long_exec_repeats_s": [round(x, 3) for x in long_repeats]}
        if long_exec_s > exec_s:
            step_s, method = (long_exec_s - exec_s) / steps, "marginal"
    return {
        "side": "jaxinv", "batch": batch, "images": n_images, "restarts": restarts, "steps": steps,
        "lane_group": resolve_lane_group(lane_group, gen),
        "w_avg_samples": w_avg_samples, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "compile_s": round(compile_s, 2), "first_call_s": round(first_s, 2), "exec_s": round(exec_s, 3),
        "exec_repeats_s": [round(x, 3) for x in repeats], **extra,
        "steps_share": round(f_steps / f_call, 4), "rate_method": method,
        "step_s": round(step_s, 4), "image_steps_per_s": round(batch / step_s, 4),
        "flop_apportioned_image_steps_per_s": round(batch / apportioned_step_s, 4),
        "e2e_image_steps_per_s": round(batch * steps / exec_s, 4),
        "gflop_per_image_step": round(f_step / 1e9, 2), "gflop_per_s": round(f_step * batch / step_s / 1e9, 1),
        "call_gflop_per_s": round(f_call / exec_s / 1e9, 1),
        "finite": bool(np.isfinite(res.losses).all()), "final_loss": float(np.min(res.losses)),
        "rss_before_mib": round(rss_before, 1), "peak_rss_mib": round(peak, 1),
        "mib_per_image": round(gpu.get("gpu_peak_mib", peak) / batch, 1), **gpu,
    }


def _lane_value(ctx: tuple, lat: Any) -> Any:
    """The engine's per-lane loss: generator from the space's input, weighted loss terms."""
    gen, sp, loss, prep = ctx
    img = gen.render(sp.to_input(gen, lat))
    return sum(w * t(img, p, lat, sp)[0] for t, p, w in zip(loss.terms, prep, loss.weights, strict=True))


def _lane_step(opt: Any, steps: int, ctx: tuple, latent: Any, opt_state: Any, key: Any) -> Any:
    """One Adam step of one lane, as the engine's scan body runs it."""
    import jax.numpy as jnp

    from jaxinv.optim import AdamState, Objective

    sp = ctx[1]
    objective = Objective(partial(_lane_value, ctx), sp.perturb, sp.project)
    return opt.step(AdamState(latent, opt_state), jnp.asarray(1), steps, key, objective)


def predict_jaxinv_memory(weights: str | os.PathLike, init_json: str | os.PathLike,
                          target: str | os.PathLike | np.ndarray, *, batch: int, w_avg_samples: int = 1000,
                          heads: str | os.PathLike | None = None) -> dict[str, Any]:
    """Compile (never run) one Adam step of `batch` vmapped lanes, as the engine's scan body runs it, and
    predict the process peak from XLA's memory analysis: resident RSS (params, runtime) + temporaries +
    outputs. For deciding which batch sizes fit a machine before paying for (or OOM-ing on) a run."""
    import jax
    import jax.numpy as jnp

    from jaxinv.generators import Generator
    from jaxinv.invert import LPIPS, Loss, NoiseReg
    from jaxinv.losses.lpips import lpips_params
    from jaxinv.losses.vgg16 import vgg16_params_from_torchvision
    from jaxinv.models import from_source
    from jaxinv.optim import Adam
    from jaxinv.spaces import WSpace
    from weights_convert.source import read_golden_npz

    gen = Generator.from_model(from_source(read_golden_npz(weights, init_json)))
    lp = lpips_params(vgg16_params_from_torchvision(random_vgg16_state_dict(), src="random"), lpips_heads(heads))
    tgt = np.load(target) if not isinstance(target, np.ndarray) else target
    loss = Loss((LPIPS(params=lp), NoiseReg()), (1.0, NOISE_WEIGHT))
    sp = WSpace(noise=True, num_samples=w_avg_samples).prepare(gen)
    opt = Adam()
    prep = tuple(t.prepare(jnp.asarray(tgt[None].astype(np.float32) / 127.5 - 1.0)) for t in loss.terms)

    latent = sp.init(jax.random.PRNGKey(0), gen, batch, center=True)
    latent = jax.tree_util.tree_map(lambda a: a[:, None], latent)  # [lanes, 1, ...] as invert's lanes
    opt_state = jax.vmap(lambda lat: opt.init(lat, None).opt_state)(latent)
    keys = jax.random.split(jax.random.PRNGKey(1), batch)
    step = jax.vmap(partial(_lane_step, opt, 100), in_axes=(None, 0, 0, 0))
    t0 = time.perf_counter()
    compiled = jax.jit(step).lower((gen, sp, loss, prep), latent, opt_state, keys).compile()
    mem = compiled.memory_analysis()
    rss = _rss_mib()
    temp = mem.temp_size_in_bytes / 2**20
    outs = mem.output_size_in_bytes / 2**20
    return {"side": "jaxinv-memory", "batch": batch, "compile_s": round(time.perf_counter() - t0, 1),
            "rss_mib": round(rss, 1), "xla_temp_mib": round(temp, 1), "xla_output_mib": round(outs, 1),
            "xla_argument_mib": round(mem.argument_size_in_bytes / 2**20, 1),
            "predicted_peak_mib": round(rss + temp + outs, 1),
            "predicted_mib_per_image": round((rss + temp + outs) / batch, 1)}


def _flops(lowered: Any) -> float:
    cost = lowered.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost["flops"])


JAXINV_KEYS = ("batch", "steps", "compile_s", "exec_s", "step_s", "image_steps_per_s", "e2e_image_steps_per_s",
               "gflop_per_image_step", "gflop_per_s", "peak_rss_mib", "mib_per_image", "finite")


# ---------------------------------------------------------------------------------------------------------
# Official side (torch; only in subprocesses)


def _official_imports(src: Path, plugins: bool = False) -> None:
    """Make the official checkout importable; unless `plugins`, without building anything."""
    import types

    import torch.utils.cpp_extension

    if not plugins:
        torch.utils.cpp_extension.load = lambda *a, **k: None  # never JIT-build the CUDA plugins
    else:
        load = torch.utils.cpp_extension.load

        def load_registered(*args: Any, **kwargs: Any) -> Any:
            # Older torch put the built module in sys.modules, where the official code imports it by name;
            # current torch only returns it.
            module = load(*args, **kwargs)
            sys.modules[kwargs["name"] if "name" in kwargs else args[0]] = module
            return module

        torch.utils.cpp_extension.load = load_registered
    try:
        import imageio  # noqa: F401
    except ImportError:
        sys.modules["imageio"] = types.ModuleType("imageio")  # only the CLI's video writer uses it
    sys.path.insert(0, str(src))


def lpips_torchscript(heads: dict[str, np.ndarray], vgg_sd: dict[str, np.ndarray]):
    """TorchScript LPIPS-VGG16 with the CDN `vgg16.pt` call: `forward(img, resize_images=True,
    return_lpips=False)`; img in [0, 255]; with return_lpips the per-image flat features whose squared
    distance is LPIPS v0.1 (golden README section 9); otherwise the relu5_3 features flattened."""
    import torch
    import torch.nn.functional as F

    class LpipsVgg16(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            cuts = (3, 8, 15, 22, 29)  # ReLU indices of relu1_2 .. relu5_3
            convs = dict(zip(_CONV_INDICES, _CONV_CHANNELS, strict=True))
            layers: list[torch.nn.Module] = []
            for i in range(30):
                if i in convs:
                    conv = torch.nn.Conv2d(*convs[i], 3, padding=1)
                    conv.weight.data[:] = torch.from_numpy(vgg_sd[f"features.{i}.weight"])
                    conv.bias.data[:] = torch.from_numpy(vgg_sd[f"features.{i}.bias"])
                    layers.append(conv)
                elif i in (4, 9, 16, 23):
                    layers.append(torch.nn.MaxPool2d(2, 2))
                else:
                    layers.append(torch.nn.ReLU())
            bounds = (0,) + tuple(c + 1 for c in cuts)
            self.slice1 = torch.nn.Sequential(*layers[bounds[0]:bounds[1]])
            self.slice2 = torch.nn.Sequential(*layers[bounds[1]:bounds[2]])
            self.slice3 = torch.nn.Sequential(*layers[bounds[2]:bounds[3]])
            self.slice4 = torch.nn.Sequential(*layers[bounds[3]:bounds[4]])
            self.slice5 = torch.nn.Sequential(*layers[bounds[4]:bounds[5]])
            self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).reshape(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).reshape(1, 3, 1, 1))
            for k in range(5):
                self.register_buffer(f"lpips{k}", torch.from_numpy(heads[f"lin{k}"]).reshape(1, -1, 1, 1))
            self.requires_grad_(False)

        def _tap(self, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            # clamp_min keeps the gradient finite on all-zero ReLU columns (forward unchanged: f is 0 there)
            norm = f.square().sum(dim=1, keepdim=True).clamp_min(1e-30).sqrt()
            f = f / (norm + 1e-10) * w.sqrt() / float(f.shape[2] * f.shape[3]) ** 0.5
            return f.flatten(1)

        def forward(self, img: torch.Tensor, resize_images: bool = True, return_lpips: bool = False):
            x = img / 127.5 - 1
            if resize_images:
                x = F.interpolate(x, size=(224, 224), mode="area")
            x = (x - self.shift) / self.scale
            f1 = self.slice1(x)
            f2 = self.slice2(f1)
            f3 = self.slice3(f2)
            f4 = self.slice4(f3)
            f5 = self.slice5(f4)
            if not return_lpips:
                return f5.flatten(1)
            return torch.cat([self._tap(f1, self.lpips0), self._tap(f2, self.lpips1), self._tap(f3, self.lpips2),
                              self._tap(f4, self.lpips3), self._tap(f5, self.lpips4)], dim=1)

    return torch.jit.script(LpipsVgg16().eval())


def official_prep(src: Path, manifest: dict, out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Build the official Generator with random weights, export npz + init JSON + uint8 target."""
    _official_imports(src)
    import torch
    from training.networks import Generator

    init_kwargs = json.loads(json.dumps(manifest["init_kwargs"]))
    init_kwargs["synthesis_kwargs"]["num_fp16_res"] = 0  # float32 on CPU (see module docstring)
    torch.manual_seed(seed)
    G = Generator(**init_kwargs).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name, t in list(G.named_parameters()) + list(G.named_buffers()):
            if name.endswith("noise_strength"):
                t.copy_(0.1 + 0.2 * torch.randn(t.shape, generator=g))
            elif name == "mapping.w_avg":
                t.copy_(0.5 * torch.randn(t.shape, generator=g))
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in G.state_dict().items()}
    want = {e["name"]: tuple(e["shape"]) for e in manifest["state_dict"]}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if want != got:
        bad = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise SystemExit(f"official Generator state_dict differs from the manifest: {bad[:8]}")
    out_dir.mkdir(parents=True, exist_ok=True)
    weights, init_json, target = out_dir / "G.weights.npz", out_dir / "G.init_kwargs.json", out_dir / "target.npy"
    np.savez(weights, **sd)
    init_json.write_text(json.dumps({"family": "stylegan2-ada-pytorch", "class_name": "training.networks.Generator",
                                     "init_args": [], "init_kwargs": init_kwargs}, indent=1))
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim))
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, None, truncation_psi=0.7), noise_mode="const")
    img = ((img + 1) * (255 / 2)).permute(0, 2, 3, 1).clamp(0, 255).to(torch.uint8)[0].numpy()
    np.save(target, img)
    return {"weights": str(weights), "init_json": str(init_json), "target": str(target),
            "param_count": int(sum(v.size for k, v in sd.items()
                                   if not k.endswith(("noise_const", "resample_filter", "w_avg"))))}


def build_official_plugins(src: Path) -> dict[str, Any]:
    """Build (or load from TORCH_EXTENSIONS_DIR) the official CUDA plugins, as their first use would."""
    _official_imports(src, plugins=True)
    from torch_utils.ops import bias_act, upfirdn2d

    t0 = time.perf_counter()
    ok = {"bias_act": bool(bias_act._init()), "upfirdn2d": bool(upfirdn2d._init())}  # False: build failed
    return {"plugins": ok, "build_s": round(time.perf_counter() - t0, 1)}


def run_official(src: Path, weights: Path, init_json: Path, target: Path, *, steps: int, w_avg_samples: int,
                 heads: str | os.PathLike | None, seed: int = 303, device: str = "cpu",
                 plugins: bool = False) -> dict[str, Any]:
    """Time the official project() loop (batch 1): step 1 warm-up, `steps` timed, one more FLOP-counted.
    device "cuda": `plugins` lets the official CUDA plugins load (built beforehand), else reference ops."""
    _official_imports(src, plugins=plugins)
    import io

    import dnnlib
    import projector
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from training.networks import Generator

    init = json.loads(Path(init_json).read_text())
    G = Generator(**init["init_kwargs"]).eval().requires_grad_(False)
    with np.load(weights, allow_pickle=False) as z:
        G.load_state_dict({k: torch.from_numpy(z[k]) for k in z.files}, strict=True)
    buf = io.BytesIO()
    torch.jit.save(lpips_torchscript(lpips_heads(heads), random_vgg16_state_dict()), buf)
    urls = []

    def open_url(url, *args, **kwargs):
        urls.append(url)
        return io.BytesIO(buf.getvalue())

    dnnlib.util.open_url = open_url
    stamps: list[float] = []
    counter = FlopCounterMode(display=False)
    total_steps = steps + 2
    losses = []

    def stamp(*args: Any, **kwargs: Any) -> None:
        msg = " ".join(str(a) for a in args)
        if not msg.startswith("step "):
            return
        if device == "cuda":
            torch.cuda.synchronize()  # the whole step (its `float(loss)` already waited for the loss)
        stamps.append(time.perf_counter())
        losses.append(float(msg.split("loss")[1]))
        if len(stamps) == total_steps - 1:
            counter.__enter__()
        elif len(stamps) == total_steps:
            counter.__exit__(None, None, None)

    projector.print = stamp  # project()'s logprint resolves `print` in the module globals first
    target_t = torch.tensor(np.load(target).transpose(2, 0, 1))
    np.random.seed(seed)
    torch.manual_seed(seed)
    rss_before = _rss_mib()
    t0 = time.perf_counter()
    projector.project(G, target_t, num_steps=total_steps, w_avg_samples=w_avg_samples, verbose=True,
                      device=torch.device(device))
    total = time.perf_counter() - t0
    step_times = np.diff(stamps[: steps + 1])
    flops = counter.get_total_flops()
    step_s = float(np.mean(step_times))
    peak = _peak_rss_mib()
    gpu = {}
    if device == "cuda":
        from torch_utils.ops import bias_act, upfirdn2d

        gpu = {"gpu_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
               "gpu_peak_reserved_mib": round(torch.cuda.max_memory_reserved() / 2**20, 1),
               "device_name": torch.cuda.get_device_name(), "cuda": torch.version.cuda,
               "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
               "cudnn_benchmark": torch.backends.cudnn.benchmark,
               # which ops ran: the plugins (official fast path) or the reference ops
               "plugins": {"bias_act": bias_act._plugin is not None, "upfirdn2d": upfirdn2d._plugin is not None}}
    return {"side": "official", "batch": 1, "steps": steps, "w_avg_samples": w_avg_samples,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "urls": urls,
            "setup_and_first_step_s": round(stamps[0] - t0, 2), "total_s": round(total, 2),
            "step_times_s": [round(float(x), 3) for x in step_times], "step_s": round(step_s, 4),
            "image_steps_per_s": round(1.0 / step_s, 4), "step_median_s": round(float(np.median(step_times)), 4),
            "finite": bool(np.isfinite(losses).all()),
            "gflop_per_image_step": round(flops / 1e9, 2), "gflop_per_s": round(flops / 1e9 / step_s, 1),
            "rss_before_mib": round(rss_before, 1), "peak_rss_mib": round(peak, 1),
            "mib_per_image": round(gpu.get("gpu_peak_mib", peak), 1), **gpu}


# ---------------------------------------------------------------------------------------------------------
# Profile: where one jaxinv step spends its time


def run_profile(weights: Path, init_json: Path, target: Path, *, batch: int, heads: str | os.PathLike | None,
                reps: int = 1, iters: int = 2, trace_dir: Path | None = None, pieces: bool = True) -> dict[str, Any]:
    """Where one projection step on `batch` images spends its time.

    Times the generator forward / forward+backward, LPIPS-VGG16 forward / forward+backward, the noise
    regulariser and the whole Adam step (the engine's step with the generator, LPIPS and noise terms under
    `jax.named_scope`s). Each piece runs `iters` times inside one `lax.scan` (the engine's steps run in a
    scan, and XLA:CPU compiles loop bodies differently), compiled ahead, best of `reps`, per iteration.
    With `trace_dir`, a `jax.profiler` trace of the whole-step scan is summarised per XLA op (component,
    forward/backward, conv or not, output shape), per step. `pieces=False`: the whole step only.
    """
    import jax
    import jax.numpy as jnp

    from jaxinv.generators import Generator
    from jaxinv.losses.lpips import lpips_distance_to, lpips_features, lpips_params
    from jaxinv.losses.regularizers import noise_regularization
    from jaxinv.losses.vgg16 import vgg16_params_from_torchvision
    from jaxinv.models import from_source
    from jaxinv.optim import Adam, AdamState, Objective
    from jaxinv.spaces import WSpace
    from weights_convert.source import read_golden_npz

    gen = Generator.from_model(from_source(read_golden_npz(weights, init_json)))
    lp = lpips_params(vgg16_params_from_torchvision(random_vgg16_state_dict(), src="random"), lpips_heads(heads))
    tgt = jnp.asarray(np.repeat((np.load(target).astype(np.float32) / 127.5 - 1)[None], batch, axis=0))
    sp = WSpace(noise=True, num_samples=1000).prepare(gen)
    latent = sp.init(jax.random.PRNGKey(0), gen, batch, center=True)
    tfeat = jax.jit(lpips_features)(lp, tgt)

    # Every piece takes the params as arguments (ctx), as invert() does: closed-over params would be
    # compile-time constants that XLA may partly fold.
    ctx = (gen, sp, lp, tfeat)

    def render(lat, ctx):
        gen, sp = ctx[0], ctx[1]
        with jax.named_scope("generator"):
            return gen.render(sp.to_input(gen, lat))

    def lpips_to_target(x, ctx):
        with jax.named_scope("lpips"):
            return lpips_distance_to(ctx[2], x, ctx[3])  # as invert's LPIPS term

    def noise_reg(noise):
        with jax.named_scope("noise_reg"):
            return NOISE_WEIGHT * noise_regularization(noise)

    img = jax.jit(render)(latent, ctx)

    def generator_forward_backward(lat, ctx, ct):
        _, vjp = jax.vjp(lambda lat: render(lat, ctx), lat)
        return vjp(ct)

    def lpips_forward_backward(x, ctx):
        return jax.grad(lambda x: jnp.sum(lpips_to_target(x, ctx)))(x)

    def noise_reg_forward_backward(noise, ctx):
        return jax.grad(lambda n: jnp.sum(noise_reg(n)))(noise)

    opt = Adam()

    def projector_step(state, ctx, t):
        sp = ctx[1]
        objective = Objective(lambda lat: jnp.sum(lpips_to_target(render(lat, ctx), ctx) + noise_reg(lat["noise"])),
                              sp.perturb, sp.project)
        new, _ = opt.step(AdamState(*state), t, 100, jax.random.fold_in(jax.random.PRNGKey(2), t), objective)
        return tuple(new)

    state = tuple(opt.init(latent, None))

    def in_scan(fn):
        """`iters` calls of fn(x, ctx, *rest) in one lax.scan; x is nudged by the outputs so that no iteration
        is loop-invariant (XLA would hoist it); the Adam step carries its state."""
        def run(x, ctx, *rest):
            def body(carry, t):
                if fn is projector_step:
                    return fn(carry, ctx, t), None
                y = fn(carry, ctx, *rest)
                tiny = 1e-30 * sum(jnp.sum(v) for v in jax.tree_util.tree_leaves(y))
                return jax.tree_util.tree_map(lambda a: a + tiny.astype(a.dtype), carry), None
            return jax.lax.scan(body, x, jnp.arange(1, iters + 1))[0]
        return run

    parts = {
        "generator_forward": (render, (latent, ctx)),
        "generator_forward_backward": (generator_forward_backward, (latent, ctx, img)),
        "lpips_vgg16_forward": (lpips_to_target, (img, ctx)),
        "lpips_vgg16_forward_backward": (lpips_forward_backward, (img, ctx)),
        "noise_reg_forward_backward": (noise_reg_forward_backward, (latent["noise"], ctx)),
        "adam_step_total": (projector_step, (state, ctx)),
    }
    out: dict[str, Any] = {"batch": batch, "iters_per_scan": iters, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                           "seconds_per_step": {}, "gflop_per_step": {}, "compile_s": {}}
    if not pieces:
        parts = {"adam_step_total": parts["adam_step_total"]}
    for name, (fn, args) in parts.items():
        t0 = time.perf_counter()
        lowered = jax.jit(in_scan(fn)).lower(*args)
        compiled = lowered.compile()
        out["compile_s"][name] = round(time.perf_counter() - t0, 1)
        jax.block_until_ready(compiled(*args))
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            ts.append(time.perf_counter() - t0)
        out["seconds_per_step"][name] = round(min(ts) / iters, 3)
        out["gflop_per_step"][name] = round(_flops(lowered) / 1e9, 1)  # a scan body is counted once
        if name == "adam_step_total" and trace_dir is not None:
            jax.profiler.start_trace(str(trace_dir))
            jax.block_until_ready(compiled(*args))
            jax.profiler.stop_trace()
            out.update(_summarise_trace(trace_dir, compiled.as_text(), per=iters))
            # Ops that run asynchronously (Eigen convs) are traced at dispatch only: coverage << 1 then.
            loop_s = out["seconds_per_step"][name] - out.get("per_call_ms", 0.0) / 1000 / iters
            out["trace_coverage"] = round(out["traced_ms_per_step"] / 1000 / loop_s, 2)
    return out


def _hlo_index(hlo_text: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Instruction name -> {shape, opcode, op_name, calls, computation, per_call}, and computation -> "conv" /
    "dot" for the computations that contain a convolution / a dot (Winograd's GEMMs are dots). `per_call`: the
    instruction is in the entry computation, outside the step loop (e.g. weight transforms that XLA hoisted)."""
    import re

    comps: dict[str, list[str]] = {}
    cur = entry = None
    for line in hlo_text.splitlines():
        m = re.match(r"^(ENTRY )?%([\w.\-]+) .*\{$", line)
        if m:
            cur = m.group(2)
            comps[cur] = []
            entry = cur if m.group(1) else entry
        elif line.startswith("}"):
            cur = None
        elif cur is not None:
            comps[cur].append(line)
    instr: dict[str, dict[str, Any]] = {}
    for comp, lines in comps.items():
        for line in lines:
            m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (.+?) ([a-z][\w\-]*)\(", line)
            if not m:
                continue
            op_name = re.search(r'op_name="([^"]*)"', line)
            calls = re.search(r"calls=%([\w.\-]+)", line)
            instr[m.group(1)] = {"shape": m.group(2).split("{")[0], "opcode": m.group(3),
                                 "op_name": op_name.group(1) if op_name else "",
                                 "calls": calls.group(1) if calls else None, "computation": comp,
                                 "per_call": comp == entry}
    kinds = {}
    for c, lines in comps.items():
        if any(" convolution(" in ln for ln in lines):
            kinds[c] = "conv"
        elif any(" dot(" in ln for ln in lines):
            kinds[c] = "dot"
    return instr, kinds


def _summarise_trace(trace_dir: Path, hlo_text: str, top: int = 400, per: int = 1) -> dict[str, Any]:
    """Per-XLA-op self times of one traced call of `per` steps, labelled from the compiled HLO: component (named
    scope), fwd/bwd (`transpose(` in the name stack), conv (a convolution in the op or its fused computation).
    Ops in the step loop are reported per step; ops outside it (weight transforms XLA hoisted, which a run of
    many steps pays once) per call, apart (`per_call_ms`), so that they do not pass for step time."""
    import gzip

    files = sorted(trace_dir.rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {"top_ops": [], "by_part": {}}
    with gzip.open(files[-1], "rt") as f:
        events = json.load(f)
    events = events.get("traceEvents", []) if isinstance(events, dict) else events
    instr, kinds = _hlo_index(hlo_text)
    per_op: dict[str, float] = {}
    for e in events:
        args = e.get("args") or {}
        if e.get("ph") == "X" and "hlo_op" in args and "run" in str(args.get("hlo_module", "")):
            per_op[args["hlo_op"]] = per_op.get(args["hlo_op"], 0.0) + float(e.get("dur", 0.0)) / 1000.0

    def label(op: str) -> dict[str, Any]:
        info = instr.get(op, {})
        stack = info.get("op_name", "")
        part = next((p for p in ("generator", "lpips", "noise_reg") if p in stack), "optimizer/other")
        kind = {"convolution": "conv", "dot": "dot"}.get(info.get("opcode"), kinds.get(info.get("calls"), "elem"))
        return {"part": part, "dir": "bwd" if "transpose(" in stack else "fwd", "kind": kind,
                "computation": info.get("computation", "?"), "per_call": info.get("per_call", False),
                "shape": info.get("shape", "?"), "op_name": stack.split("/", 1)[-1][:90]}

    by_part: dict[str, float] = {}
    rows, loop_ms, call_ms = [], [], []
    for op in [op for op in per_op if instr.get(op, {}).get("opcode") in ("while", "call", "conditional")]:
        per_op.pop(op)  # containers: their bodies' ops are traced themselves
    for op, ms in per_op.items():
        lab = label(op)
        if lab["per_call"]:
            call_ms.append(ms)
        else:
            ms /= per
            loop_ms.append(ms)
            key = f"{lab['part']} {lab['dir']} {lab['kind']}"
            by_part[key] = by_part.get(key, 0.0) + ms
        rows.append({"op": op, "ms": round(ms, 1), **lab})
    rows.sort(key=lambda r: -r["ms"])
    return {"traced_ms_per_step": round(sum(loop_ms), 1), "per_call_ms": round(sum(call_ms), 1),
            "by_part_ms": {k: round(v, 1) for k, v in sorted(by_part.items(), key=lambda kv: -kv[1])},
            "top_ops": rows[:top]}


# ---------------------------------------------------------------------------------------------------------
# Driver


def _child(role: str, payload: dict[str, Any], env_extra: dict[str, str] | None = None,
           fatal: bool = True) -> dict[str, Any]:
    """Run one role in a fresh interpreter; its last stdout line is the JSON result. A failing
    measurement (fatal=False) comes back as {"error": ...} so that the other measurements still run."""
    cmd, env = _child_cmd(role, payload, env_extra)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout)[-3000:]
        if fatal:
            raise SystemExit(f"{role} subprocess failed (rc {p.returncode}):\n{tail}")
        return {"error": f"rc {p.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}",
                "tail": tail[-1500:]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _child_cmd(role: str, payload: dict[str, Any],
               env_extra: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if env_extra is not None:
        for k, v in env_extra.items():
            env[k] = v
    return [sys.executable, __file__, "--_role", role, "--_payload", json.dumps(payload)], env


def _start_child(role: str, payload: dict[str, Any], env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    """`_child` in the background, in its own session (a timeout then stops its compilers too)."""
    cmd, env = _child_cmd(role, payload, env_extra)
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_child(p: subprocess.Popen, deadline: float) -> dict[str, Any]:
    """Result of a `_start_child` child, or {"error": ...} if it failed or is still running at `deadline`
    (time.monotonic(); then it is killed)."""
    try:
        out, err = p.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return {"error": "timeout"}
    if p.returncode != 0:
        return {"error": f"rc {p.returncode}", "tail": (err or out)[-3000:]}
    res = json.loads(out.strip().splitlines()[-1])
    if not all(res.get("plugins", {}).values()):
        res["tail"] = err[-3000:]  # the official code's build-failure warning
    return res


def _xla_env(setting: str) -> dict[str, str]:
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "ynn_fusion_type" not in f]
    if XLA_SETTINGS[setting]:
        flags.append(XLA_SETTINGS[setting])
    # The flag is set here; JAXINV_XLA_CPU_CONVS tells jaxinv's import the same.
    return {"XLA_FLAGS": " ".join(flags), "JAXINV_XLA_CPU_CONVS": "eigen" if setting == "eigen" else "default",
            "BENCH_GENERATOR_WINOGRAD": "0" if setting == "direct" else "1"}


def _role_main(role: str, payload: dict[str, Any]) -> None:
    if role == "prep-official":
        manifest = json.loads(Path(payload["manifest"]).read_text())
        res = official_prep(Path(payload["src"]), manifest, Path(payload["out"]), payload.get("seed", 0))
    elif role == "prep-jaxinv":
        manifest = json.loads(Path(payload["manifest"]).read_text())
        kwargs = json.loads(json.dumps(manifest["init_kwargs"]))
        kwargs["synthesis_kwargs"]["num_fp16_res"] = 0
        w, i = numpy_generator_files(kwargs, Path(payload["out"]))
        t = jaxinv_target(w, i, Path(payload["out"]) / "target.npy")
        res = {"weights": str(w), "init_json": str(i), "target": str(t)}
    elif role == "plugins":
        res = build_official_plugins(Path(payload["src"]))
    elif role == "official":
        res = run_official(Path(payload["src"]), Path(payload["weights"]), Path(payload["init_json"]),
                           Path(payload["target"]), steps=payload["steps"], w_avg_samples=payload["w_avg_samples"],
                           heads=payload["heads"], device=payload.get("device", "cpu"),
                           plugins=payload.get("plugins", False))
    elif role == "jaxinv":
        if os.environ.get("BENCH_GENERATOR_WINOGRAD") == "0":
            from jaxinv import ops

            ops.WINOGRAD = False
        res = run_jaxinv(payload["weights"], payload["init_json"], payload["target"], batch=payload["batch"],
                         steps=payload["steps"], w_avg_samples=payload["w_avg_samples"],
                         restarts=payload["restarts"], heads=payload["heads"], repeat=payload["repeat"],
                         device=payload.get("device", "cpu"), lane_group=payload.get("lane_group", "auto"),
                         marginal=payload.get("marginal", True))
    elif role == "memory":
        res = predict_jaxinv_memory(payload["weights"], payload["init_json"], payload["target"],
                                    batch=payload["batch"], w_avg_samples=payload["w_avg_samples"],
                                    heads=payload["heads"])
    elif role == "profile":
        trace = Path(payload["trace_dir"]) if payload.get("trace_dir") else None
        res = run_profile(Path(payload["weights"]), Path(payload["init_json"]), Path(payload["target"]),
                          batch=payload["batch"], heads=payload["heads"], trace_dir=trace,
                          pieces=payload.get("pieces", True))
    else:
        raise SystemExit(f"unknown role {role}")
    print(json.dumps(res), flush=True)


def _fmt(x: Any, nd: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _usable(pieces: list[dict[str, Any]], allow_disturbed: bool) -> list[dict[str, Any]]:
    return [p for p in pieces if "error" not in p and (allow_disturbed or not p.get("disturbed"))]


def _median(pieces: list[dict[str, Any]], key: str) -> float | None:
    vals = [p[key] for p in pieces if p.get(key) is not None]
    return float(np.median(vals)) if vals else None


def summarise(results: dict[str, dict[str, Any]], allow_disturbed: bool = False) -> None:
    """Add `summary` to every measured config: the official and each jaxinv (setting, batch) image-steps/s,
    and each jaxinv piece's ratio to the official piece of the same round, as `_protocol.summarise` gives
    them (median, min, max over the rounds in which both pieces were clean, or all with `allow_disturbed`)."""
    for r in results.values():
        if "jaxinv" not in r:
            continue  # --profile / --predict-memory
        off = r["official"]
        speed = lambda ps: [(p["image_steps_per_s"], p["disturbed"]) for p in ps if "error" not in p]  # noqa: E731
        s: dict[str, Any] = {"official": protocol.summarise(speed(off), allow_disturbed), "jaxinv": {}}
        for setting, by_batch in r["jaxinv"].items():
            for b, pieces in by_batch.items():
                ratio = [(j["image_steps_per_s"] / o["image_steps_per_s"], j["disturbed"] or o["disturbed"])
                         for o, j in zip(off, pieces, strict=False) if "error" not in o and "error" not in j]
                s["jaxinv"].setdefault(setting, {})[b] = {
                    "image_steps_per_s": protocol.summarise(speed(pieces), allow_disturbed),
                    "ratio": protocol.summarise(ratio, allow_disturbed)}
        r["summary"] = s


def _rounds_cell(sm: dict[str, Any]) -> str:
    return f"{sm['clean']}/{sm['rounds']} clean" + (f", {sm['disturbed']} DISTURBED used" if sm["disturbed"] else "")


def print_table(results: dict[str, dict[str, Any]], peak_tflops: float | None = None,
                allow_disturbed: bool = False) -> None:
    """One row per config, side, XLA setting and batch: medians over the usable rounds (clean; all with
    `allow_disturbed`); "x official": median [min..max] of the per-round ratios and the clean rounds among
    those measured. A row without a usable round prints why ("not measured: machine busy" with the
    interference figures, or the error)."""
    head = ("config", "side", "xla", "batch", "img-steps/s", "e2e", "s/step", "compile s", "peak MiB", "MiB/img",
            "GFLOP/img-step", "GFLOP/s", "off-eq GFLOP/s", "x official [min..max] clean", "rounds")
    rows, notes = [], {}
    for cfg, r in results.items():
        if "jaxinv" not in r:
            continue
        if "summary" not in r:
            summarise({cfg: r}, allow_disturbed)
        sm, off = r["summary"], r["official"]
        off_gflop = _median([p for p in off if "error" not in p], "gflop_per_image_step")  # a count: load-free
        pieces = [("official", "-", 1, off, sm["official"], None)] if off else []
        pieces += [("jaxinv", s, b, ps, sm["jaxinv"][s][b]["image_steps_per_s"], sm["jaxinv"][s][b]["ratio"])
                   for s, by_batch in r["jaxinv"].items() for b, ps in by_batch.items()]
        for side, setting, b, ps, speed, ratio in pieces:
            key = (cfg, side, setting, str(b))
            use = _usable(ps, allow_disturbed)
            if not use:
                errors = [p for p in ps if "error" in p]
                notes[len(rows)] = f"error: {errors[-1]['error']}" if len(errors) == len(ps) else protocol.busy_note(ps)
                rows.append(key + ("",) * (len(head) - len(key)))
                continue
            med = partial(_median, use)
            gpu = any("gpu_peak_mib" in p for p in use)
            if ratio is None:
                x = "1.00"
            elif ratio["median"] is None:
                x = "not measured" if off else "-"
            else:
                x = f"{ratio['median']:.2f} [{ratio['min']:.2f}..{ratio['max']:.2f}] {ratio['clean']}/{ratio['rounds']}"
                x += " DISTURBED" if ratio["disturbed"] else ""
            off_eq = off_gflop * speed["median"] if off_gflop else None
            rows.append(key + (_fmt(speed["median"], 3), _fmt(med("e2e_image_steps_per_s"), 3), _fmt(med("step_s")),
                               _fmt(med("compile_s"), 1), _fmt(med("gpu_peak_mib" if gpu else "peak_rss_mib"), 0),
                               _fmt(med("mib_per_image"), 0), _fmt(med("gflop_per_image_step"), 1),
                               _fmt(med("gflop_per_s"), 1), _fmt(off_eq, 1), x, _rounds_cell(speed)))
    if peak_tflops:  # model FLOP utilisation: achieved GFLOP/s over the given peak
        head += ("MFU %",)
        rows = [row + (_fmt(float(row[11]) / (10 * peak_tflops), 1) if row[11] not in ("", "-") else "",)
                for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=False))  # noqa: E731
    print(line(head))
    for i, row in enumerate(rows):
        print(line(row[:4]) + "  " + notes[i] if i in notes else line(row))
    print("GFLOP/s: the side's own FLOPs per second; off-eq GFLOP/s: the official FLOPs per image-step x "
          "image-steps/s (FLOP cuts count there, kernel speed in GFLOP/s)")
    methods = [p.get("rate_method", "flop-apportioned") for r in results.values() if "jaxinv" in r
               for by_batch in r["jaxinv"].values() for ps in by_batch.values() for p in ps if "error" not in p]
    if methods:
        print(f"jaxinv img-steps/s: marginal ((exec(2 x steps) - exec(steps)) / steps) in "
              f"{methods.count('marginal')} of {len(methods)} pieces, apportioned by FLOPs in the others")
    if "gpu_peak_mib" in json.dumps(results):
        print("peak MiB: GPU memory (torch.cuda.max_memory_allocated; jax memory_stats()['peak_bytes_in_use'])")


def print_profile(cfg: str, setting: str, prof: dict[str, Any]) -> None:
    print(f"\n{cfg} profile, XLA {setting}, batch {prof['batch']} (seconds per step, GFLOP per step):")
    for name, sec in prof["seconds_per_step"].items():
        print(f"  {name:30s} {sec:8.3f} s  {prof['gflop_per_step'][name]:8.1f} GFLOP")
    if prof.get("by_part_ms"):
        print(f"  traced op time per step {prof['traced_ms_per_step']:.0f} ms in the step loop (coverage "
              f"{prof['trace_coverage']}), and {prof.get('per_call_ms', 0):.0f} ms per call outside it (hoisted "
              f"weight transforms; in seconds_per_step above as 1/{prof['iters_per_scan']} each):")
        for k, v in prof["by_part_ms"].items():
            print(f"    {k:32s} {v:9.1f} ms")
        print("  top ops (ms per step; per call: outside the loop):")
        for r in prof["top_ops"][:40]:
            where = "per call" if r.get("per_call") else ""
            print(f"    {r['ms']:8.1f} ms  {where:8s} {r['part']:9s} {r['dir']} {r['kind']:4s} {r['shape']:24s} "
                  f"{r['op']:22s} {r['op_name'][-60:]}")


def print_ratios(results: dict[str, dict[str, Any]], targets: dict[str, float],
                 allow_disturbed: bool = False) -> None:
    for cfg, r in results.items():
        if "jaxinv" not in r:
            continue
        if "summary" not in r:
            summarise({cfg: r}, allow_disturbed)
        sm = r["summary"]["jaxinv"]
        speeds = {s: {b: v["image_steps_per_s"]["median"] for b, v in by.items()} for s, by in sm.items()}
        for b in sorted({b for by in speeds.values() for b in by}):
            have = {s: v[b] for s, v in speeds.items() if v.get(b) is not None}
            for other in sorted(set(have) - {"default"}):
                if "default" in have:
                    print(f"{cfg} batch {b}: {have[other] / have['default']:.2f}x {other}/default (medians)")
        ratios = {(s, b): v["ratio"] for s, by in sm.items() for b, v in by.items() if v["ratio"]["median"]}
        if not ratios:
            if r["official"]:
                pieces = r["official"] + [p for by in r["jaxinv"].values() for ps in by.values() for p in ps]
                print(f"{cfg}: jaxinv / official {protocol.busy_note(pieces)}")
            continue
        big = max(b for _, b in ratios)
        best_setting = max((s for s, b in ratios if b == big), key=lambda s: ratios[s, big]["median"])
        rs = ratios[best_setting, big]
        tgt = targets.get(cfg)
        verdict = ""
        if tgt is not None and big == 16:
            verdict = f" (target >= {tgt:.0f}x: {'MET' if rs['median'] >= tgt else 'NOT met'})"
        flag = f" DISTURBED rounds used: {rs['disturbed']};" if rs["disturbed"] else ""
        mem_j = _median(_usable(r["jaxinv"][best_setting][big], allow_disturbed), "mib_per_image")
        mem_o = _median(_usable(r["official"], allow_disturbed), "mib_per_image")
        below = "below" if mem_j < mem_o else "NOT below"
        print(f"{cfg}: jaxinv batch {big} ({best_setting}) / official = {rs['median']:.2f}x "
              f"[{rs['min']:.2f}..{rs['max']:.2f}] image-steps/s, {rs['clean']}/{rs['rounds']} rounds clean"
              f"{verdict};{flag} memory per image {mem_j:.0f} vs {mem_o:.0f} MiB ({below} the official's)")


def _progress(cfg: str, rnd: int, label: str, res: dict[str, Any]) -> None:
    """One line per measured piece: its speed and what the rest of the machine did meanwhile."""
    i = res["interference"]
    what = res["error"] if "error" in res else f"{res['image_steps_per_s']:.3f} image-steps/s"
    print(f"[{cfg}] round {rnd} {label}: {what}; own {i['own_cores']:.2f} cores, other processes "
          f"{i['foreign_cores']:.2f} cores over {i['wall_s']:.0f} s, load {i['loadavg_before'][:1]} -> "
          f"{i['loadavg_after'][:1]}" + (" DISTURBED" if res["disturbed"] else "")
          + (f" (attempt {len(res['repeated']) + 1})" if res["repeated"] else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official-src", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch at d72cc7d")
    ap.add_argument("--no-official", action="store_true", help="jaxinv side only (weights made with numpy)")
    ap.add_argument("--configs", default="paper256,ffhq1024", help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--batches", default="1,4,16", help="jaxinv lanes (images x restarts) per compiled call")
    ap.add_argument("--config-batches", action="append", default=[], metavar="CONFIG=B1,B2",
                    help="per-config batch sizes overriding --batches (e.g. ffhq1024=1,4 where 16 does not fit)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps (official runs steps + 2)")
    ap.add_argument("--restarts", type=int, default=1, help="restarts per image (batch = images x restarts)")
    ap.add_argument("--repeat", type=int, default=0, help="extra timed invert() calls after the compiling one")
    ap.add_argument("--flop-apportioned", action="store_true",
                    help="jaxinv's per-step rate from one program, its execution apportioned by FLOPs (no second "
                         "program of 2 x --steps steps for the marginal rate)")
    ap.add_argument("--w-avg-samples", type=int, default=1000, help="w_avg samples, both sides (setup only)")
    ap.add_argument("--xla", default="default,eigen",
                    help="XLA settings to run: default (jax's own), eigen (JAXINV_XLA_CPU_CONVS=eigen), direct "
                         "(default, the generator's 3x3 convs direct instead of Winograd)")
    ap.add_argument("--lane-groups", default="auto",
                    help="jaxinv lane groups to run, each under every --xla setting: auto (the engine's choice), "
                    "all (every lane of the batch in one vmapped program), or K (lanes vmapped at a time)")
    protocol.add_arguments(ap, rounds_help="interleaved rounds (official, then every jaxinv piece)")
    ap.add_argument("--quick", action="store_true", help="smoke test: paper256, batches 1,4, 2 steps")
    ap.add_argument("--profile", metavar="CONFIG", help="only profile one jaxinv step of CONFIG (--batches[-1])")
    ap.add_argument("--predict-memory", action="store_true",
                    help="only compile one jaxinv step per batch size and predict its peak memory (no runs)")
    ap.add_argument("--step-only", action="store_true", help="--profile: skip timing the pieces on their own")
    ap.add_argument("--heads", type=Path, default=HEADS, help="LPIPS v0.1 VGG heads (.npz, lpips names)")
    ap.add_argument("--workdir", type=Path, help="keep weights / targets here and reuse them on later runs "
                    "(default: a temp dir)")
    ap.add_argument("--json", type=Path, help="write all results to this JSON file")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where both sides run (cuda: torch on the GPU, jax's GPU backend; see the docstring)")
    ap.add_argument("--plugin-timeout", type=float, default=180.0,
                    help="cuda: seconds the official CUDA plugins may take to build (else reference ops)")
    ap.add_argument("--peak-tflops", type=float, help="peak TFLOP/s of the device: adds an MFU column")
    ap.add_argument("--_role", help=argparse.SUPPRESS)
    ap.add_argument("--_payload", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._role:
        _role_main(args._role, json.loads(args._payload))
        return
    if args.quick:
        args.configs, args.batches, args.steps = "paper256", "1,4", 2
    if args.device == "cuda" and args.xla == ap.get_default("xla"):
        args.xla = "default"  # the other setting is an XLA:CPU flag
    if args.rounds < 1:
        ap.error("--rounds: at least 1")
    configs = [c.strip() for c in args.configs.split(",") if c.strip()] if args.profile is None else [args.profile]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    settings = [s.strip() for s in args.xla.split(",") if s.strip()]
    per_config = {}
    for item in args.config_batches:
        name, _, bs = item.partition("=")
        if name not in CONFIGS or not bs:
            ap.error(f"--config-batches {item!r}: expected CONFIG=B1,B2 with CONFIG in {', '.join(CONFIGS)}")
        per_config[name] = [int(b) for b in bs.split(",") if b.strip()]
    for c in configs:
        if c not in CONFIGS:
            ap.error(f"--configs: unknown config {c!r} (choose from {', '.join(CONFIGS)})")
    for s in settings:
        if s not in XLA_SETTINGS:
            ap.error(f"--xla: unknown setting {s!r} (choose from {', '.join(XLA_SETTINGS)})")
    lane_groups: list[int | str | None] = []
    for g in (g.strip() for g in args.lane_groups.split(",") if g.strip()):
        if g not in ("auto", "all") and not (g.isdigit() and int(g) >= 1):
            ap.error(f"--lane-groups: {g!r} is not auto, all or an integer >= 1")
        lane_groups.append(None if g == "all" else g if g == "auto" else int(g))
    official = not args.no_official and args.profile is None and not args.predict_memory
    if official:
        if args.official_src is None or not (args.official_src / "projector.py").is_file():
            ap.error("--official-src: path of a stylegan2-ada-pytorch checkout (with projector.py) is required "
                     "(or --no-official)")
    heads = str(args.heads) if args.heads else None
    if heads and not Path(heads).is_file():
        ap.error(f"--heads {heads}: file not found (set JAXINV_SHARED or pass --heads)")

    tmp = tempfile.TemporaryDirectory(prefix="jaxinv-projbench-") if args.workdir is None else None
    work = Path(tmp.name) if tmp else args.workdir
    results: dict[str, dict[str, Any]] = {}
    info = {**protocol.machine_info(), "steps": args.steps, "w_avg_samples": args.w_avg_samples,
            "official_commit": OFFICIAL_COMMIT if official else None, "device": args.device, "rounds": args.rounds,
            "max_foreign_cpu": args.max_foreign_cpu, "max_retries": args.max_retries,
            "allow_disturbed": args.allow_disturbed}
    print(protocol.header(info))
    print(json.dumps(info), flush=True)
    cuda = args.device == "cuda"
    jax_env = {"JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cuda,cpu")} if cuda else {}
    torch_env = {"TORCH_EXTENSIONS_DIR": str(work / "torch_extensions")} if cuda else None
    builder = None
    if official and cuda:
        builder = _start_child("plugins", {"src": str(args.official_src)}, torch_env)
        build_deadline = time.monotonic() + args.plugin_timeout
    measure = partial(protocol.measure, max_foreign=args.max_foreign_cpu, max_retries=args.max_retries,
                      log=partial(print, flush=True))

    def save() -> None:  # after every measurement, so that an interrupted run keeps what it measured
        if args.json:
            args.json.write_text(json.dumps({"info": info, "results": results}, indent=1))

    try:
        if builder is not None:  # built before anything is timed (a build is load on the machine)
            info["plugin_build"] = _wait_child(builder, build_deadline)
            print(json.dumps({"plugin_build": info["plugin_build"]}), flush=True)
        built = (info.get("plugin_build") or {}).get("plugins")
        for cfg in configs:
            manifest = MANIFESTS / f"{CONFIGS[cfg]}.json"
            out = work / cfg
            t0 = time.perf_counter()
            files = {"weights": out / "G.weights.npz", "init_json": out / "G.init_kwargs.json",
                     "target": out / "target.npy"}
            if args.workdir is not None and all(p.is_file() for p in files.values()):
                prep = {k: str(p) for k, p in files.items()}  # reuse what an earlier run left in --workdir
            elif official:
                prep = _child("prep-official", {"src": str(args.official_src), "manifest": str(manifest),
                                                "out": str(out)})
            else:
                prep = _child("prep-jaxinv", {"manifest": str(manifest), "out": str(out)})
            print(f"[{cfg}] weights + target ready ({time.perf_counter() - t0:.1f} s)", flush=True)
            common = {"weights": prep["weights"], "init_json": prep["init_json"], "target": prep["target"],
                      "heads": heads}
            if args.profile is not None:
                for s in settings:
                    payload = {**common, "batch": batches[-1], "trace_dir": str(work / f"trace-{cfg}-{s}"),
                               "pieces": not args.step_only}
                    prof = _child("profile", payload, _xla_env(s))
                    print_profile(cfg, s, prof)
                    results.setdefault(cfg, {}).setdefault("profile", {})[s] = prof
                continue
            if args.predict_memory:
                for s in settings:
                    for b in batches:
                        m = _child("memory", {**common, "batch": b, "w_avg_samples": args.w_avg_samples},
                                   _xla_env(s), fatal=False)
                        print(json.dumps({"config": cfg, "xla": s, **m}), flush=True)
                        results.setdefault(cfg, {}).setdefault("memory", {}).setdefault(s, {})[b] = m
                        save()
                continue
            r: dict[str, Any] = {"official": [], "jaxinv": {}}  # per round, in order
            results[cfg] = r
            off_payload = {**common, "src": str(args.official_src), "steps": args.steps,
                           "w_avg_samples": args.w_avg_samples, "device": args.device,
                           "plugins": bool(built) and all(built.values())}
            for rnd in range(1, args.rounds + 1):
                if official:
                    off = measure(partial(_child, "official", off_payload, torch_env, fatal=False))
                    _progress(cfg, rnd, "official", off)
                    r["official"].append(off)
                    save()
                for s, g in ((s, g) for s in settings for g in lane_groups):
                    label = s if g == "auto" else f"{s}/lg={'all' if g is None else g}"  # the table's xla column
                    for b in per_config.get(cfg, batches):
                        payload = {**common, "batch": b, "steps": args.steps, "w_avg_samples": args.w_avg_samples,
                                   "restarts": args.restarts, "repeat": args.repeat, "device": args.device,
                                   "marginal": not args.flop_apportioned,
                                   "lane_group": g}
                        j = measure(partial(_child, "jaxinv", payload, {**_xla_env(s), **jax_env}, fatal=False))
                        _progress(cfg, rnd, f"jaxinv {label} batch {b}", j)
                        r["jaxinv"].setdefault(label, {}).setdefault(b, []).append(j)
                        save()
            summarise({cfg: r}, args.allow_disturbed)
            save()
    finally:
        if builder is not None and builder.poll() is None:
            os.killpg(builder.pid, signal.SIGKILL)
        if tmp is not None:
            tmp.cleanup()
    save()
    if args.profile is None and not args.predict_memory:
        print()
        print(protocol.header(info))
        print_table(results, args.peak_tflops, args.allow_disturbed)
        print()
        print_ratios(results, {"paper256": 2.0, "ffhq1024": 3.0}, args.allow_disturbed)


if __name__ == "__main__":
    main()
