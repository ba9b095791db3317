"""Error types. Every message is one line naming the file (or option) and the problem.

`JaxinvError` and `CheckpointError` are defined beside the readers (`weights_convert.errors`), which must not
import jaxinv; they are the same classes here."""

from weights_convert.errors import CheckpointError, JaxinvError

__all__ = ["CheckpointError", "ConfigError", "ImageError", "JaxinvError"]


class ImageError(JaxinvError):
    """An input image cannot be read or is unusable (corrupt, empty, too small)."""


class ConfigError(JaxinvError):
    """Impossible or inconsistent options."""
