"""Error types. Every message is one line naming the file (or option) and the problem."""


class JaxinvError(Exception):
    """Base class for user-facing errors (CLI prints `str(err)` and exits non-zero)."""


class CheckpointError(JaxinvError):
    """A checkpoint file is missing, truncated, of an unknown format, or not allow-listed."""


class ImageError(JaxinvError):
    """An input image cannot be read or is unusable (corrupt, empty, too small)."""


class ConfigError(JaxinvError):
    """Impossible or inconsistent options."""
