"""jaxinv: compiled, batched GAN inversion in JAX/Flax."""

# First, before anything imports jax: the XLA:CPU convolution setting (JAXINV_XLA_CPU_CONVS; see jaxinv/_xla.py).
from jaxinv._xla import configure_cpu_convs as _configure_cpu_convs

_configure_cpu_convs()

from jaxinv.errors import CheckpointError, ConfigError, ImageError, JaxinvError  # noqa: E402


def load(path):
    """Load a model: a directory written by `python -m weights_convert`, or an official checkpoint file."""
    from jaxinv.checkpoint import load as _load

    return _load(path)


__all__ = ["CheckpointError", "ConfigError", "ImageError", "JaxinvError", "load"]
