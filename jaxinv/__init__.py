"""jaxinv: compiled, batched GAN inversion in JAX/Flax."""

from jaxinv.errors import CheckpointError, ConfigError, ImageError, JaxinvError

__all__ = ["CheckpointError", "ConfigError", "ImageError", "JaxinvError"]
