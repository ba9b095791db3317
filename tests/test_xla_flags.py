"""jaxinv's XLA:CPU convolution setting (jaxinv/_xla.py), checked in fresh interpreters.

By default importing jaxinv leaves XLA_FLAGS alone (jax's own convolutions); JAXINV_XLA_CPU_CONVS=eigen appends
`--xla_cpu_experimental_ynn_fusion_type=` (Eigen convolutions) unless XLA_FLAGS already sets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jaxinv import _xla

FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", _xla.ENV)}
    env.update(extra)
    return env


def _run(code: str, **extra: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code], env=_clean_env(**extra), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


IMPORT = ("import json, os, warnings\nwarnings.simplefilter('always')\n"
          "with warnings.catch_warnings(record=True) as caught:\n    import jaxinv\n"
          "print(json.dumps({'flags': os.environ.get('XLA_FLAGS'), 'warnings': [str(w.message) for w in caught]}))")


def test_default_leaves_flags_alone():
    assert _run(IMPORT) == {"flags": None, "warnings": []}
    out = _run(IMPORT, JAXINV_XLA_CPU_CONVS="default", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert out["flags"] == "--xla_force_host_platform_device_count=2", out


def test_eigen_adds_the_flag_and_xla_accepts_it():
    # A conv runs under the resulting XLA_FLAGS: XLA aborts the process on a flag it does not know.
    code = IMPORT.replace("print(", "import jax, jax.numpy as jnp\n"
                                    "y = jax.lax.conv(jnp.ones((1, 2, 8, 8)), jnp.ones((3, 2, 3, 3)), (1, 1), 'SAME')\n"
                                    "assert float(y[0, 0, 4, 4]) == 18.0\nprint(")
    assert _run(code, JAXINV_XLA_CPU_CONVS="eigen") == {"flags": FLAG, "warnings": []}
    out = _run(IMPORT, JAXINV_XLA_CPU_CONVS="eigen", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert out["flags"] == f"--xla_force_host_platform_device_count=2 {FLAG}", out


@pytest.mark.parametrize("user", [FLAG, FLAG + "x"])
def test_user_value_is_kept(user):
    out = _run(IMPORT, JAXINV_XLA_CPU_CONVS="eigen", XLA_FLAGS=user)
    assert out["flags"] == user, out


def test_warns_once_when_jax_was_initialised_first():
    code = "import jax.numpy as jnp\njnp.ones(1).block_until_ready()\n" + IMPORT
    out = _run(code, JAXINV_XLA_CPU_CONVS="eigen")
    assert out["flags"] is None, out
    assert len(out["warnings"]) == 1 and "XLA_FLAGS=" + FLAG in out["warnings"][0], out
    assert _run(code)["warnings"] == []  # nothing asked, nothing to warn about


def test_bad_setting_is_a_config_error():
    r = subprocess.run([sys.executable, "-c", "import jaxinv"], env=_clean_env(JAXINV_XLA_CPU_CONVS="fast"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "ConfigError: JAXINV_XLA_CPU_CONVS='fast'" in r.stderr, r.stderr[-2000:]
