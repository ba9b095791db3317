"""The one-line user errors of the readers. They sit on the ground floor so that the readers import nothing from
`jaxinv`; `jaxinv.errors` re-exports them, so `jaxinv.CheckpointError` is this very class."""


class JaxinvError(Exception):
    """Base class for user-facing errors (CLI prints `str(err)` and exits non-zero)."""


class CheckpointError(JaxinvError):
    """A checkpoint file is missing, truncated, of an unknown format, or not allow-listed."""
