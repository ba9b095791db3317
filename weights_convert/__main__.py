"""python -m weights_convert SRC OUT_DIR: the old spelling of `jaxinv convert SRC OUT_DIR`.

The readers import nothing from jaxinv, and neither does this entry point: it hands the command line to the
`jaxinv convert` command in a child process (same interpreter, environment and working directory)."""

import subprocess
import sys

if __name__ == "__main__":
    sys.exit(subprocess.call([sys.executable, "-m", "jaxinv", "convert", *sys.argv[1:]]))
