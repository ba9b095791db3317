"""Named settings of known inversion methods (`jaxinv invert --preset NAME`).

`official`: the stylegan2-ada-pytorch projector (`projector.py`, `project()` defaults and `run_projection`'s
options) in the engine's terms:

    W space, one w broadcast to every layer, with the per-layer noise maps free   space="w", noise=True
    w_avg / w_std from 10000 mapped z ~ RandomState(123)                         w_avg_samples=10000
    start at w_avg, one run                                                      start="center", restarts=1
    loss = LPIPS-VGG16 (the NVlabs vgg16.pt) + 1e5 x noise regulariser           regularize_noise_weight=1e5
    Adam (0.9, 0.999, 1e-8), lr 0.1 with the ramps, latent noise 0.05 x w_std    `optim.Adam()` defaults
    1000 steps, seed 303                                                         --num-steps, --seed
    target: centre square, LANCZOS resize to the model's resolution             crop="none"

The random draws come from jax's PRNG (seed 303 and each image's name), not torch's, so runs match the
official one in distribution, not draw for draw; with the draws injected the engine's pieces reproduce a
recorded official run (`python -m jaxinv.parity ../shared/golden/projector_sg2ada_r64_skip`, and
tests/test_presets.py checks that this preset is what that replay drives).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jaxinv.errors import ConfigError
from jaxinv.optim import Adam
from jaxinv.spaces import Space, make_space


@dataclass(frozen=True)
class Preset:
    name: str
    space: str  # space name (jaxinv.spaces.SPACES)
    space_options: tuple[tuple[str, Any], ...]  # options of that space
    loss: str  # loss spec (jaxinv.invert.make_loss)
    optimizer: Adam
    steps: int
    restarts: int
    seed: int
    start: str  # start of restart 0: "center" | "random"
    crop: str  # the CLI's --crop
    needs: tuple[str, ...] = field(default=())  # resources the loss needs ("lpips", "id")

    def make_space(self) -> Space:
        """The (unprepared) space object."""
        return make_space(self.space, **dict(self.space_options))


OFFICIAL = Preset(
    name="official",
    space="w",
    space_options=(("noise", True), ("num_samples", 10000), ("seed", 123)),
    loss="lpips=1,noise=1e5",
    optimizer=Adam(learning_rate=0.1, schedule="official", lr_rampdown_length=0.25, lr_rampup_length=0.05,
                   initial_noise_factor=0.05, noise_ramp_length=0.75),
    steps=1000,
    restarts=1,
    seed=303,
    start="center",
    crop="none",
    needs=("lpips",),
)

PRESETS: dict[str, Preset] = {p.name: p for p in (OFFICIAL,)}


def get(name: str) -> Preset:
    if name not in PRESETS:
        raise ConfigError(f"preset={name!r}: unknown (choose from {', '.join(PRESETS)})")
    return PRESETS[name]
