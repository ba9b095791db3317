"""jaxinv: compiled, batched GAN inversion in JAX/Flax."""

from jaxinv.errors import CheckpointError, ConfigError, ImageError, JaxinvError


def load(path):
    """Load a model: a directory written by `python -m weights_convert`, or an official checkpoint file."""
    from jaxinv.checkpoint import load as _load

    return _load(path)


__all__ = ["CheckpointError", "ConfigError", "ImageError", "JaxinvError", "load"]
