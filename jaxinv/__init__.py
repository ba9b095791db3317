"""jaxinv: compiled, batched GAN inversion in JAX/Flax."""

# First, before anything imports jax: the XLA:CPU convolution setting (JAXINV_XLA_CPU_CONVS; see jaxinv/_xla.py).
from jaxinv._xla import configure_cpu_convs as _configure_cpu_convs

_configure_cpu_convs()

from jaxinv.errors import CheckpointError, ConfigError, ImageError, JaxinvError  # noqa: E402


def load(path_or_name):
    """Load a model: "default" (the embedded DCGAN), a directory written by `jaxinv convert` /
    `python -m weights_convert`, or an official checkpoint file. The one way in; see `jaxinv.checkpoint`."""
    from jaxinv.checkpoint import load as _load  # on first use: `import jaxinv` stays free of jax

    return _load(path_or_name)


# Submodules reached as attributes on first use (`jaxinv.invert(...)`, `jaxinv.images.load_images`), so that
# `import jaxinv` itself stays free of jax.
_LAZY = ("invert", "images", "edit", "encode", "pti", "cma", "degrade", "generators", "models")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"jaxinv.{name}")
    raise AttributeError(f"module 'jaxinv' has no attribute {name!r}")


__all__ = ["CheckpointError", "ConfigError", "ImageError", "JaxinvError", "load", *_LAZY]
