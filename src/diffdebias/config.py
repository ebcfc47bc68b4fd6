"""Reading configuration values, one way for every configuration (hyperparameters, generator and
DDM settings): a command-line string becomes the type of the setting's default."""

from __future__ import annotations

from typing import Any

from .errors import ConfigError


def coerce(value: Any, default: Any, key: str) -> Any:
    """Read a command-line string as the type of the default; a bad value names the key."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    try:
        if isinstance(default, bool):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ConfigError(f"setting '{key}': cannot read {value!r} as {type(default).__name__}") from None
    return value
