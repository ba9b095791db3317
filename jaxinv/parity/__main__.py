"""python -m jaxinv.parity PREFIX [PREFIX ...] [--weights FILE]"""

from __future__ import annotations

import argparse
import sys
import time

import jax

from jaxinv.errors import JaxinvError
from jaxinv.parity.core import PARITY_RTOL, CaseError, load_case, run_case


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m jaxinv.parity",
        description="Recompute the reference outputs of golden cases (PREFIX = case path without suffix, "
        f"e.g. ../shared/golden/sg2ada_r64_skip) and compare with max|out-ref| <= {PARITY_RTOL:.0e}*max(1,max|ref|).",
    )
    ap.add_argument("prefixes", nargs="+", metavar="PREFIX")
    ap.add_argument("--weights", help="take the weights from an official checkpoint file (.pkl, .pt, .bin, folder) "
                    "through the converter instead of <case>.weights.npz")
    args = ap.parse_args(argv)
    jax.config.update("jax_default_matmul_precision", "highest")  # no TF32 / bf16 passes on GPU
    passed = failed = 0
    try:
        for prefix in args.prefixes:
            case = load_case(prefix, args.weights)
            t0 = time.perf_counter()
            for check in run_case(case):
                err, tol, ok = check.result()
                passed += ok
                failed += not ok
                print(f"{case.name}/{check.name} {err:.3e} {tol:.3e} {'PASS' if ok else 'FAIL'}", flush=True)
            print(f"# {case.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    except (CaseError, JaxinvError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
