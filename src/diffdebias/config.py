"""Configuration, one style everywhere: classifier hyperparameters (hparams.py) and the settings
dataclasses (DiffusionConfig, DDMConfig, LoraDDMConfig) take `--set KEY=VALUE` overrides the same
way: an unknown key is refused with the valid ones, a command-line string becomes the type of the
setting's default, and out-of-range values are refused naming the setting."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from .errors import ConfigError


class Settings:
    """Base of the settings dataclasses: `from_overrides`, `check`, `to_dict`."""

    what: ClassVar[str] = "setting"  # how error messages name one of them, e.g. "diffusion setting"

    @classmethod
    def from_overrides(cls, overrides: dict[str, Any] | None, prefix: str = "") -> Self:
        """The defaults with `overrides`, each read as its field's type, then checked; `prefix` is
        how the caller spells the keys (e.g. `gen.` in a run's hyperparameters)."""
        cfg = cls()
        valid = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        for key, value in (overrides or {}).items():
            if key not in valid:
                raise ConfigError(f"unknown {cls.what} '{prefix}{key}'; valid keys: {', '.join(prefix + k for k in valid)}")
            default = getattr(cfg, key)
            if isinstance(default, list):
                value = [int(v) for v in str(value).replace(",", " ").split()] if isinstance(value, str) else list(value)
            else:
                value = coerce(value, default, prefix + key)
            setattr(cfg, key, value)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Refuse out-of-range values with a ConfigError naming the setting (default: nothing to check)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


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
