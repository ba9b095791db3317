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
  trajectory at the meta's free-running tolerances.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinv.generators import Generator
from jaxinv.losses.lpips import load_lpips_heads, lpips_distance, lpips_features, lpips_params
from jaxinv.losses.regularizers import noise_regularization
from jaxinv.losses.vgg16 import vgg16_params_from_torchvision
from jaxinv.models import from_source
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
    num_steps, num_samples = int(io["num_steps"]), int(io["w_avg_samples"])
    call = meta.get("call", "")
    opt = Adam(learning_rate=_call_arg(call, "initial_learning_rate", 0.1),
               initial_noise_factor=_call_arg(call, "initial_noise_factor", 0.05),
               lr_rampdown_length=_call_arg(call, "lr_rampdown_length", 0.25),
               lr_rampup_length=_call_arg(call, "lr_rampup_length", 0.05),
               noise_ramp_length=_call_arg(call, "noise_ramp_length", 0.75))
    reg_weight = _call_arg(call, "regularize_noise_weight", 1e5)

    # Space statistics exactly as project(): w_avg / w_std from RandomState(z_seed) samples.
    w_avg, w_std = w_statistics(gen, num_samples, int(io["z_seed"]))
    yield Check("w_avg", w_avg[None, None], io["w_avg"])
    yield Check("w_std", np.float32(w_std), io["w_std"], tol=1e-5 * float(io["w_std"]))
    space = WSpace(noise=True, num_samples=num_samples, seed=int(io["z_seed"]), w_avg=jnp.asarray(w_avg),
                   w_std=jnp.asarray(w_std))

    target = jnp.asarray(io["target"].transpose(1, 2, 0)[None], jnp.float32)  # uint8 CHW -> [1, H, W, 3]
    target_feat = lpips_features(lp, target, drange=(0.0, 255.0))

    def terms(latent):
        img = gen.render(space.to_input(gen, latent))
        dist = lpips_distance(target_feat, lpips_features(lp, img))[0]
        reg = noise_regularization(latent["noise"])[0]
        return dist, reg, dist + reg * reg_weight

    # The recorded raw draw rides in the solver's key slot; the space scales it by w_std like its own draws.
    objective = Objective(loss=lambda lat: terms(lat)[2],
                          perturb=lambda lat, draw, scale: {**lat, "w": lat["w"] + scale * space.w_std * draw},
                          project=space.project)
    step = jax.jit(lambda state, k, draw: opt.step(state, k, num_steps, draw, objective))
    grad_terms = jax.jit(jax.value_and_grad(lambda lat: terms(lat)[2], has_aux=False))
    fwd_terms = jax.jit(terms)
    draws = io["rand_w_noise"].reshape(num_steps, 1, -1)
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
            return AdamState(latent, opt._tx().init(latent)), True
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
        noisy = {**latent, "w": latent["w"] + w_noise[k]}
        dist, reg, loss = fwd_terms(noisy)
        _, g = grad_terms(noisy)
        tf_dist.append(dist)
        tf_reg.append(reg)
        tf_loss.append(loss)
        tf_grad.append(g["w"][0])
        state, have_noise = state_at(k, latent)
        new, _ = step(state, k, draws[k])
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
    yield Check("teacher_forced.w_opt", np.stack(tf_w), io["w_opt"], tol=1e-5)
    for k, noise in tf_noise:
        for n in layers:
            yield Check(f"teacher_forced.noise.{n}[{k}]", noise[n][0], io[f"noise.{n}{_SUFFIX}"][k], tol=1e-4)

    # Free-running: the whole trajectory inside one compiled scan, draws injected.
    latent0 = latent_at(0)

    def body(state, xs):
        k, draw = xs
        new, info = opt.step(state, k, num_steps, draw, objective)
        return new, (new.latent["w"][0], new.latent["noise"], info.loss)

    run_all = jax.jit(lambda s: jax.lax.scan(body, s, (jnp.arange(num_steps), jnp.asarray(draws))))
    _, (w_traj, noise_traj, loss_traj) = run_all(AdamState(latent0, opt._tx().init(latent0)))
    yield Check("free_running.w_opt", w_traj, io["w_opt"], tol=2e-2)
    yield Check("free_running.w_out", np.repeat(np.asarray(w_traj)[:, None], gen.num_ws, axis=1), io["w_out"],
                tol=2e-2)
    for n in layers:
        yield Check(f"free_running.noise.{n}", noise_traj[n][:, 0], io[f"noise.{n}{_SUFFIX}"], tol=1e-4)
    yield Check("free_running.loss", loss_traj, ref_loss, tol=1e-3 * float(np.abs(ref_loss).max()))


def _chained(opt: Adam) -> bool:
    return not isinstance(opt._tx().init({"w": jnp.zeros(1)}), optax.ScaleByAdamState)


def _call_arg(call: str, name: str, default: float) -> float:
    """A keyword value from the recorded `project(...)` call string (defaults as the official signature)."""
    key = f"{name}="
    if key not in call:
        return default
    value = call.split(key, 1)[1].split(",")[0].split(")")[0]
    return float(value)
