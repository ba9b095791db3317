"""Parity of the engine's official-schedule W projection against a recorded official `project()` run.

Cases `projector_<case>` (golden README section 9): the official stylegan2-ada-pytorch projector ran for S
steps with every random draw recorded. We rebuild the generator (through the user-facing converter) and the
LPIPS-VGG16 network of the recording (procedural backbone from the meta recipe, real v0.1 heads), then
drive the engine's own pieces -- `WSpace` with free noise maps, `lpips_features`, `noise_regularization`
and the `optim.Adam` solver -- with the recorded draws injected:

* teacher-forced: every step k re-run from the recorded state before it (w_opt[k-1], noise[k-1], Adam
  moments) -> dist/reg_loss/loss/grad_w of step k and w_opt[k]; the noise update where the recording holds
  the noise moments (after the `sub_steps`);
* free-running: all S steps from w_avg and the recorded initial noise, compared with the recorded
  trajectory at the meta's free-running tolerances;
* float64: the same pieces in float64 (`float64_engine`) against the official float64 re-run (`f64_w_opt`,
  `f64_dist`, `f64_loss`), free-running and teacher-forced (each step from the official float64 w before it;
  the noise maps and Adam moments, not recorded in float64, from our own float64 run). Agreement far below
  float32 rounding shows the maths is the official one, so float32 differences are rounding (amplified by
  Adam, see `_f32_step_tol`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv import ops
from jaxinv.generators import Generator
from jaxinv.losses import lpips as _lpips_module
from jaxinv.losses.lpips import load_lpips_heads, lpips_distance, lpips_features, lpips_params
from jaxinv.losses.regularizers import noise_regularization
from jaxinv.losses.vgg16 import vgg16_params_from_torchvision
from jaxinv.models import from_source
from jaxinv.models import stylegan2 as _sg2_module
from jaxinv.optim import Adam, AdamState, Objective
from jaxinv.parity.core import Case, CaseError, Check
from jaxinv.procedural import procedural_state_dict, verify_recipe
from jaxinv.spaces import WSpace, w_statistics
from weights_convert.source import read_golden_npz, read_source

_SUFFIX = ".noise_const"


def detect(case: Case) -> bool:
    return "rand_w_noise" in case.io and "w_opt" in case.io and "generator" in case.meta


def _generator(case: Case) -> Generator:
    gmeta = case.meta["generator"]
    if case.weights is not None:
        src = read_source(case.weights)
    else:
        folder = case.prefix.parent
        weights = folder / gmeta["weights"]
        init = folder / gmeta.get("init_kwargs_file", gmeta["weights"].replace(".weights.npz", ".init_kwargs.json"))
        for p in (weights, init):
            if not p.exists():
                raise CaseError(f"{p}: missing generator file of projector case {case.name}")
        src = read_golden_npz(weights, init)
    if src.family != "stylegan2":
        raise CaseError(f"{case.name}: projector parity needs a StyleGAN2 generator, got {src.family}")
    return Generator.from_model(from_source(src))


def _lpips(case: Case) -> dict:
    meta = case.meta["lpips"]
    recipe = meta["procedural_weights"]
    sd = procedural_state_dict(recipe)
    bad = verify_recipe(recipe, sd)
    if bad:
        raise CaseError(f"{case.name}: procedural LPIPS weights disagree with the recipe check sums: {bad[:4]}")
    heads_file = meta["linear_heads"]["file"].split(" ")[0]  # 'shared/realdata/...npz (see ...)'
    shared = case.prefix.parent.parent
    heads_path = shared / Path(heads_file).relative_to("shared") if heads_file.startswith("shared/") \
        else Path(heads_file)
    if not heads_path.exists():
        raise CaseError(f"{heads_path}: missing LPIPS linear heads of projector case {case.name}")
    want = meta["linear_heads"].get("sha256")
    if want and hashlib.sha256(heads_path.read_bytes()).hexdigest() != want:
        raise CaseError(f"{heads_path}: sha256 differs from the recording's heads")
    return lpips_params(vgg16_params_from_torchvision(sd, src="procedural"), load_lpips_heads(heads_path))


def run(case: Case) -> Iterator[Check]:
    io, meta = case.io, case.meta
    gen = _generator(case)
    lp = _lpips(case)
    layers = [name for name, _ in gen.noise_layers]
    recorded = [n.removesuffix(_SUFFIX) for n in meta["noise_buffer_order"]]
    if recorded != layers:
        raise CaseError(f"{case.name}: recorded noise buffers {recorded} differ from the generator's {layers}")
    rec = recorded_settings(case)
    num_steps, num_samples, seed = rec["num_steps"], rec["num_samples"], rec["seed"]
    opt, reg_weight = rec["optimizer"], rec["reg_weight"]

    # Space statistics exactly as project(): w_avg / w_std from RandomState(z_seed) samples.
    w_avg, w_std = w_statistics(gen, num_samples, seed)
    yield Check("w_avg", w_avg[None, None], io["w_avg"])
    yield Check("w_std", np.float32(w_std), io["w_std"], tol=1e-5 * float(io["w_std"]))
    # The schedule: the engine's (float32: a few ulps, more where cos rounds its argument) against project()'s,
    # and project()'s own w-noise formula (reused by the float64 replay) bit for bit.
    ks = jnp.arange(num_steps)
    yield Check("schedule.lr", opt.lr_at(ks, num_steps), io["lr"], tol=1e-6 * float(io["lr"].max()))
    yield Check("schedule.w_noise_scale", opt.noise_at(ks, num_steps) * w_std, io["w_noise_scale"],
                tol=1e-6 * float(io["w_noise_scale"].max()))
    yield Check("schedule.official_w_noise_scale", _official_noise_scales(io["w_std"], opt, num_steps),
                io["w_noise_scale"], tol=0.0)

    space = WSpace(noise=True, num_samples=num_samples, seed=seed, w_avg=jnp.asarray(w_avg),
                   w_std=jnp.asarray(w_std))
    r = _Replay(gen, lp, space, opt, io, reg_weight, jnp.float32)
    w_noise = io["w_noise"].reshape(num_steps, 1, -1)

    def latent_at(k):  # recorded state before step k
        if k == 0:
            noise = {n: io[f"rand_noise_init.{n}{_SUFFIX}"][None] for n in layers}
            return {"w": jnp.asarray(io["w_avg"].reshape(1, -1)), "noise": noise}
        return {"w": jnp.asarray(io["w_opt"][k - 1][None]),
                "noise": {n: io[f"noise.{n}{_SUFFIX}"][k - 1][None] for n in layers}}

    sub = {int(s): j for j, s in enumerate(io["sub_steps"])}

    def state_at(k, latent):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, latent)
        if k == 0:
            return r.init(latent), True
        mu, nu = {"w": io["adam_w_exp_avg"][k - 1][None]}, {"w": io["adam_w_exp_avg_sq"][k - 1][None]}
        have_noise = (k - 1) in sub
        if have_noise:
            j = sub[k - 1]
            mu["noise"] = {n: io[f"adam_noise_exp_avg_sub.{n}{_SUFFIX}"][j][None] for n in layers}
            nu["noise"] = {n: io[f"adam_noise_exp_avg_sq_sub.{n}{_SUFFIX}"][j][None] for n in layers}
        else:  # moments of the buffers not recorded here: the w update does not depend on them
            mu["noise"], nu["noise"] = zeros["noise"], zeros["noise"]
        adam = optax.ScaleByAdamState(count=jnp.asarray(k, jnp.int32), mu=mu, nu=nu)
        return AdamState(latent, (adam, optax.EmptyState()) if _chained(opt) else adam), have_noise

    tf_w, tf_dist, tf_reg, tf_loss, tf_grad = [], [], [], [], []
    tf_noise = []
    for k in range(num_steps):
        latent = latent_at(k)
        noisy = {**latent, "w": latent["w"] + w_noise[k]}  # the recorded w_noise: gradients compared like for like
        dist, reg, loss = r.terms(noisy)
        tf_dist.append(dist[0])
        tf_reg.append(reg[0])
        tf_loss.append(loss[0])
        tf_grad.append(r.grad(noisy)["w"][0])
        state, have_noise = state_at(k, latent)
        new = r.step(state, k)
        tf_w.append(new.latent["w"][0])
        if have_noise:
            tf_noise.append((k, new.latent["noise"]))
    ref_dist, ref_loss = io["dist"], io["loss"]
    yield Check("teacher_forced.dist", np.stack(tf_dist), ref_dist, tol=1e-5 * float(np.abs(ref_dist).max()))
    yield Check("teacher_forced.reg_loss", np.stack(tf_reg), io["reg_loss"],
                tol=1e-5 * float(np.abs(io["reg_loss"]).max()))
    yield Check("teacher_forced.loss", np.stack(tf_loss), ref_loss, tol=1e-5 * float(np.abs(ref_loss).max()))
    # The LPIPS gradient is not smooth at float32 resolution (ReLU / max-pool switches): moving w by one
    # ulp (1e-7 relative) changes grad_w by ~4e-4 of its max at step 0. Gradients are therefore compared
    # per step at 2e-3 of that step's max |grad|, and the Adam-normalised buffer updates at 1e-4 abs.
    for k, (g, ref) in enumerate(zip(tf_grad, io["grad_w"], strict=True)):
        yield Check(f"teacher_forced.grad_w[{k}]", g, ref, tol=2e-3 * float(np.abs(ref).max()))
    yield Check("teacher_forced.w_opt", np.stack(tf_w), io["w_opt"], tol=_f32_step_tol(case))
    for k, noise in tf_noise:
        for n in layers:
            yield Check(f"teacher_forced.noise.{n}[{k}]", noise[n][0], io[f"noise.{n}{_SUFFIX}"][k], tol=1e-4)

    # Free-running: the whole trajectory inside one compiled scan, draws injected.
    states, before = r.free_running(latent_at(0))
    w_traj = np.asarray(states.latent["w"][:, 0])
    _, _, loss_traj = r.terms(r.noisy(before))
    yield Check("free_running.w_opt", w_traj, io["w_opt"], tol=2e-2)
    yield Check("free_running.w_out", np.repeat(w_traj[:, None], gen.num_ws, axis=1), io["w_out"], tol=2e-2)
    for n in layers:
        yield Check(f"free_running.noise.{n}", states.latent["noise"][n][:, 0], io[f"noise.{n}{_SUFFIX}"],
                    tol=1e-4)
    yield Check("free_running.loss", loss_traj, ref_loss, tol=1e-3 * float(np.abs(ref_loss).max()))

    yield from _float64_replay(case, gen, lp, opt, reg_weight)


def recorded_settings(case: Case) -> dict:
    """The recorded `project()` call in the engine's terms, as `run` drives it: {optimizer (`optim.Adam`),
    reg_weight (the noise term's weight), num_steps, num_samples (w_avg_samples), seed (of the w samples)};
    arguments the call leaves out take the official signature's defaults."""
    io, call = case.io, case.meta.get("call", "")
    opt = Adam(learning_rate=_call_arg(call, "initial_learning_rate", 0.1),
               initial_noise_factor=_call_arg(call, "initial_noise_factor", 0.05),
               lr_rampdown_length=_call_arg(call, "lr_rampdown_length", 0.25),
               lr_rampup_length=_call_arg(call, "lr_rampup_length", 0.05),
               noise_ramp_length=_call_arg(call, "noise_ramp_length", 0.75))
    return {"optimizer": opt, "reg_weight": _call_arg(call, "regularize_noise_weight", 1e5),
            "num_steps": int(io["num_steps"]), "num_samples": int(io["w_avg_samples"]), "seed": int(io["z_seed"])}


def _f32_step_tol(case: Case) -> float:
    """Tolerance of w after one float32 step from the recorded state (teacher-forced w_opt).

    The official float32 and float64 runs start from the same w (w_avg, 1.7e-6 apart); after step 1, the
    first step that moves w, they are `w_max_abs_per_step[1]` (1.4e-4) apart: what float32 rounding of one
    step costs on this problem (Adam divides the rounding error of near-zero gradient entries by their small
    RMS). Ours and the official are two float32 evaluations of the same step, each up to that far from the
    exact one: twice that.
    """
    try:
        return 2.0 * float(case.meta["float32_vs_float64"]["w_max_abs_per_step"][1])
    except (KeyError, IndexError, TypeError):
        raise CaseError(f"{case.name}: meta float32_vs_float64.w_max_abs_per_step missing") from None


def _float64_replay(case: Case, gen: Generator, lp: dict, opt: Adam, reg_weight: float) -> Iterator[Check]:
    io = case.io
    if "f64_w_opt" not in io:
        return
    num_steps, num_samples, seed = int(io["num_steps"]), int(io["w_avg_samples"]), int(io["z_seed"])
    f64_w = io["f64_w_opt"]
    with float64_engine():
        gen64, lp64 = dataclasses.replace(gen, params=_float64(gen.params)), _float64(lp)
        # project() of the float64 run: w samples mapped in float64, cast to float32, numpy float32 statistics.
        z = np.random.RandomState(seed).randn(num_samples, gen.z_dim)
        w = np.asarray(jax.jit(gen64.mapping)(jnp.asarray(z)))[:, :1].astype(np.float32)
        w_avg = np.mean(w, axis=0, keepdims=True)
        w_std = (np.sum((w - w_avg) ** 2) / num_samples) ** 0.5
        # The schedule as project() computes it: lr in float64 (recorded), the w-noise scale in numpy float32.
        scales = _official_noise_scales(w_std, opt, num_steps)
        opt64 = _RecordedSchedule(lrs=tuple(map(float, io["lr"])),
                                  noise_factors=tuple(float(s) / float(w_std) for s in scales))
        space = WSpace(noise=True, num_samples=num_samples, seed=seed, w_avg=jnp.asarray(w_avg[0], jnp.float64),
                       w_std=jnp.asarray(w_std, jnp.float64))
        r = _Replay(gen64, lp64, space, opt64, io, reg_weight, jnp.float64)
        latent0 = {"w": jnp.asarray(w_avg[0], jnp.float64),
                   "noise": {n: jnp.asarray(io[f"rand_noise_init.{n}{_SUFFIX}"][None], jnp.float64)
                             for n, _ in gen.noise_layers}}
        states, before = r.free_running(latent0)
        free_w = np.asarray(states.latent["w"][:, 0])
        free_dist, _, free_loss = map(np.asarray, r.terms(r.noisy(before)))
        # Teacher-forced: step k from the official float64 w before it, our noise maps and Adam moments.
        tf_w = []
        for k in range(num_steps):
            state = r.init(latent0) if k == 0 else jax.tree_util.tree_map(lambda a, k=k: a[k - 1], states)
            w_k = latent0["w"] if k == 0 else jnp.asarray(f64_w[k - 1][None])
            state = state._replace(latent={**state.latent, "w": w_k})
            tf_w.append(np.asarray(r.step(state, k).latent["w"][0]))
        before_w = np.concatenate([w_avg[0], f64_w[:-1]])
        tf_dist, _, tf_loss = map(np.asarray, r.terms(r.noisy({**before, "w": jnp.asarray(before_w)})))
    yield Check("float64.w_avg", w_avg[0, 0], f64_w[0], tol=0.0)  # step 0 has lr 0: f64_w_opt[0] is its w_avg
    rel = lambda ref: _F64_RTOL * float(np.abs(ref).max())  # noqa: E731
    for name, out, ref in (("teacher_forced.w_opt", np.stack(tf_w), f64_w),
                           ("teacher_forced.dist", tf_dist, io["f64_dist"]),
                           ("teacher_forced.loss", tf_loss, io["f64_loss"]),
                           ("free_running.w_opt", free_w, f64_w),
                           ("free_running.dist", free_dist, io["f64_dist"]),
                           ("free_running.loss", free_loss, io["f64_loss"])):
        yield Check(f"float64.{name}", out, ref, tol=rel(ref))


# Float64 replay tolerance, relative to max|ref|. Rounding grows ~1e4-fold here: the official float32 run ends
# 4.5e-4 * max|w| from its float64 one (meta) after float32 rounding of ~6e-8. At float64's 1.1e-16 that is
# ~1e-12; measured 2e-15 (w, free-running), 3e-14 (loss). 1e-10 leaves room for other CPUs, while a float32-sized
# difference in the maths (an engine constant rounded to float32: 4e-8 in dist) fails.
_F64_RTOL = 1e-10


class _Replay:
    """The engine's projection pieces for one dtype, jitted here (build it where that dtype is in force)."""

    def __init__(self, gen: Generator, lp: dict, space: WSpace, opt: Adam, io: dict, reg_weight: float, dtype):
        num_steps = int(io["num_steps"])
        self.opt, self.num_steps = opt, num_steps
        self.draws = jnp.asarray(io["rand_w_noise"].reshape(num_steps, 1, -1), dtype)
        target = jnp.asarray(io["target"].transpose(1, 2, 0)[None], dtype)  # uint8 CHW -> [1, H, W, 3]
        target_feat = lpips_features(lp, target, drange=(0.0, 255.0))

        def terms(latent):  # per image: dist, reg_loss, loss
            img = gen.render(space.to_input(gen, latent))
            dist = lpips_distance(target_feat, lpips_features(lp, img))
            reg = noise_regularization(latent["noise"])
            return dist, reg, dist + reg * reg_weight

        # The recorded raw draw rides in the solver's key slot; the space scales it by w_std like its own draws.
        self.objective = Objective(loss=lambda lat: terms(lat)[2][0],
                                   perturb=lambda lat, draw, scale: {**lat, "w": lat["w"] + scale * space.w_std * draw},
                                   project=space.project)

        def step(state, k):  # state after step k
            return opt.step(state, k, num_steps, self.draws[k], self.objective)[0]

        def body(state, k):
            state = step(state, k)
            return state, state

        self.terms = jax.jit(terms)
        self.grad = jax.jit(jax.grad(self.objective.loss))
        self.step = jax.jit(step)
        self.scan = jax.jit(lambda state: jax.lax.scan(body, state, jnp.arange(num_steps))[1])

    def init(self, latent: dict) -> AdamState:
        return AdamState(latent, self.opt._tx().init(latent))

    def free_running(self, latent0: dict) -> tuple[AdamState, dict]:
        """The states after each step (stacked) and the latents before each step ([S, ...])."""
        states = self.scan(self.init(latent0))
        before = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b[:-1, 0]]), latent0, states.latent)
        return states, before

    def noisy(self, latents: dict) -> dict:
        """Latents before each step ([S, ...]) -> what each step's loss sees (w + its w-noise)."""
        scale = self.opt.noise_at(jnp.arange(self.num_steps), self.num_steps)[:, None]
        return self.objective.perturb(latents, self.draws[:, 0], scale)


@dataclasses.dataclass(frozen=True)
class _RecordedSchedule(Adam):
    """`Adam` with project()'s schedule values: lr[k] (float64) and w-noise scale[k] / w_std (numpy float32).
    The engine's own schedule computes both in float32 (checked against project()'s as schedule.*)."""

    lrs: tuple[float, ...] = ()
    noise_factors: tuple[float, ...] = ()

    def lr_at(self, step, num_steps):
        return jnp.asarray(self.lrs)[step]

    def noise_at(self, step, num_steps):
        return jnp.asarray(self.noise_factors)[step]


def _official_noise_scales(w_std: np.float32, opt: Adam, num_steps: int) -> np.ndarray:
    """project(): w_noise_scale = w_std * initial_noise_factor * max(0, 1 - t / noise_ramp_length)**2, numpy
    float32 w_std times Python floats (float32 results)."""
    w_std = np.float32(w_std)
    return np.array([w_std * opt.initial_noise_factor * max(0.0, 1.0 - k / num_steps / opt.noise_ramp_length) ** 2
                     for k in range(num_steps)], np.float32)


# Engine modules that write float32 explicitly (casts; constants such as the lrelu slope 0.2 and gain sqrt(2)
# rounded to float32): exact for float32, ~1e-8 relative off in float64.
_FLOAT32_MODULES = (ops, _lpips_module, _sg2_module)


class _Float64Names:
    """A module's `np` / `jnp` whose `float32` is float64."""

    def __init__(self, module):
        self._module, self.float32 = module, module.float64

    def __getattr__(self, name):
        return getattr(self._module, name)


@contextlib.contextmanager
def float64_engine() -> Iterator[None]:
    """For the block only: jax_enable_x64, and `float32` read as float64 in `_FLOAT32_MODULES` -- as the
    recording's float64 run treated the official code (a module-global `torch` whose float32 is float64).

    jit caches are keyed on the x64 flag, so nothing traced here is reused outside; build jitted functions
    inside the block and take numpy arrays out.
    """
    saved = [(m, m.np, m.jnp) for m in _FLOAT32_MODULES]
    try:
        for m in _FLOAT32_MODULES:
            m.np, m.jnp = _Float64Names(np), _Float64Names(jnp)
        with jax.enable_x64(True):
            yield
    finally:
        for m, np_, jnp_ in saved:
            m.np, m.jnp = np_, jnp_


def _float64(tree):
    return jax.tree_util.tree_map(
        lambda a: jnp.asarray(a, jnp.float64) if np.issubdtype(np.asarray(a).dtype, np.floating) else a, tree)


def _chained(opt: Adam) -> bool:
    return not isinstance(opt._tx().init({"w": jnp.zeros(1)}), optax.ScaleByAdamState)


def _call_arg(call: str, name: str, default: float) -> float:
    """A keyword value from the recorded `project(...)` call string (defaults as the official signature)."""
    key = f"{name}="
    if key not in call:
        return default
    value = call.split(key, 1)[1].split(",")[0].split(")")[0]
    return float(value)
