"""The project's own exceptions: each message names the file, the field and the fix."""


class DiffDebiasError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class DatasetError(DiffDebiasError):
    """A dataset's files are missing, malformed or unsafe."""


class ConfigError(DiffDebiasError):
    """A configuration key or value is invalid."""


class RunError(DiffDebiasError):
    """A run cannot start or continue (bad output directory, NaN loss, ...)."""


class RunBusy(RunError):
    """Another process is running in the same run directory."""
