"""The `jaxinv` command's huge-page setting (jaxinv/_hugepages.py): when it re-executes, with what, and when not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxinv import _hugepages as hp
from jaxinv.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def host_ok(monkeypatch):
    monkeypatch.setattr(hp, "available", lambda: True)


def test_env_adds_the_tunable(host_ok):
    assert hp.env_with_hugepages({"A": "1"}) == {"A": "1", "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
    # Other tunables are kept; the user's own hugetlb value wins.
    out = hp.env_with_hugepages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
    assert out["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    assert hp.env_with_hugepages({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None


def test_opt_out_and_bad_value(host_ok):
    assert hp.env_with_hugepages({"JAXINV_HUGEPAGES": "0"}) is None
    with pytest.raises(ConfigError, match="JAXINV_HUGEPAGES='maybe'"):
        hp.env_with_hugepages({"JAXINV_HUGEPAGES": "maybe"})


def test_unsupported_host_does_nothing(monkeypatch):
    monkeypatch.setattr(hp, "available", lambda: False)
    assert hp.env_with_hugepages({}) is None


def test_reexec_runs_python_m_jaxinv_with_the_tunable(host_ok, monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, args, env: calls.append((path, args, env)))
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("JAXINV_HUGEPAGES", raising=False)
    hp.reexec_with_hugepages(["invert", "--images", "x"])
    (path, args, env), = calls
    assert path == sys.executable and args == [sys.executable, "-m", "jaxinv", "invert", "--images", "x"]
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    calls.clear()
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")  # the re-executed process: no loop
    hp.reexec_with_hugepages(["invert"])
    assert calls == []


def test_command_line_runs_under_both_settings():
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    for choice in ("1", "0"):
        r = subprocess.run([sys.executable, "-m", "jaxinv", "--help"], cwd=ROOT, capture_output=True, text=True,
                           env={**env, "JAXINV_HUGEPAGES": choice}, timeout=120)
        assert r.returncode == 0 and "invert" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "jaxinv", "--help"], cwd=ROOT, capture_output=True, text=True,
                       env={**env, "JAXINV_HUGEPAGES": "maybe"}, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().startswith("jaxinv: error: JAXINV_HUGEPAGES='maybe'")


@pytest.mark.skipif(not hp.available(), reason="this host has no glibc >= 2.35 with transparent huge pages")
def test_reexecuted_process_has_the_tunable(tmp_path):
    # A stand-in `jaxinv` package whose cli is the real one: `python -m jaxinv` re-executes, and the new
    # process reports its GLIBC_TUNABLES through an output file.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "if os.environ.get('GLIBC_TUNABLES'):\n"
        f"    open({str(tmp_path / 'seen')!r}, 'w').write(os.environ['GLIBC_TUNABLES'])\n"
        "    raise SystemExit(0)\n"
        "import jaxinv._hugepages as hp\n"
        "os.execve = (lambda real: lambda p, a, e: real(p, [p, __file__], e))(os.execve)\n"
        "hp.reexec_with_hugepages([])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "JAXINV_HUGEPAGES")}
    subprocess.run([sys.executable, str(probe)], check=True, env=env, timeout=60)
    assert (tmp_path / "seen").read_text() == "glibc.malloc.hugetlb=1"
