"""`python -m jaxinv ...` runs the `jaxinv` command line."""

from jaxinv.cli import main

raise SystemExit(main())
