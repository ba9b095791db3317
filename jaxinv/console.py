"""The command line's messages to stderr, in one place below every command module (so that `--quiet` holds for
all of them and no command imports `jaxinv.cli` back)."""

from __future__ import annotations

import sys

quiet = False  # --quiet: errors only (set by `jaxinv.cli.main`)


def log(msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)
