"""Golden-parity tool: `python -m jaxinv.parity PREFIX [...] [--weights FILE]`."""
