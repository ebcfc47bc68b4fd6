"""The registry of datasets: one entry per name, with its layout, how to obtain it and its options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, DatasetError
from ..paths import data_home
from .base import BiasedDataset


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    build: Callable[..., BiasedDataset]
    description: str
    layout: str
    obtain: str
    default_root: Callable[[], Path]
    required: tuple[str, ...]
    ratios: tuple[float, ...] | None = None
    default_ratio: float | None = None
    any_ratio: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def missing_files(self, root: Path) -> list[str]:
        """Required relative paths (glob patterns allowed) not present under `root`."""
        if not root.is_dir():
            return [str(root)]
        return [pat for pat in self.required if not any(root.glob(pat))]


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(
    name: str,
    *,
    description: str,
    layout: str,
    obtain: str,
    required: tuple[str, ...],
    default_root: Callable[[], Path] | str | None = None,
    ratios: tuple[float, ...] | None = None,
    default_ratio: float | None = None,
    any_ratio: bool = False,
    options: dict[str, Any] | None = None,
):
    """Decorator registering `build(root, ratio, **options) -> BiasedDataset` under `name`."""

    if default_root is None or isinstance(default_root, str):
        sub = default_root or name
        root_fn: Callable[[], Path] = lambda: data_home() / sub  # noqa: E731
    else:
        root_fn = default_root

    def wrap(fn: Callable[..., BiasedDataset]) -> Callable[..., BiasedDataset]:
        if name in DATASETS:
            raise ValueError(f"dataset '{name}' registered twice")
        DATASETS[name] = DatasetEntry(
            name, fn, description, layout, obtain, root_fn, required, ratios, default_ratio, any_ratio, dict(options or {})
        )
        return fn

    return wrap


def get_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset '{name}'; registered datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def resolve_root(entry: DatasetEntry, root: str | Path | None) -> Path:
    return Path(root).expanduser() if root is not None else entry.default_root()


def resolve_ratio(entry: DatasetEntry, ratio: float | None) -> float | None:
    """Check `ratio` (percent of bias-conflicting training samples) against the entry."""
    if entry.ratios is None:
        if ratio is not None:
            raise ConfigError(f"dataset '{entry.name}' has no ratios; drop --ratio")
        return None
    if ratio is None:
        return entry.default_ratio
    ratio = float(ratio)
    if entry.any_ratio:
        if not 0.0 <= ratio < 100.0:
            raise ConfigError(f"dataset '{entry.name}': --ratio is a percentage in [0, 100), got {ratio}")
        return ratio
    if ratio not in entry.ratios:
        raise ConfigError(f"dataset '{entry.name}': --ratio {ratio:g} is not available; choose one of {', '.join(f'{r:g}' for r in entry.ratios)}")
    return ratio


def resolve_options(entry: DatasetEntry, options: dict[str, Any] | None) -> dict[str, Any]:
    options = dict(options or {})
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        valid = ", ".join(sorted(entry.options)) or "(none)"
        raise ConfigError(f"dataset '{entry.name}': unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    resolved = dict(entry.options)
    for key, value in options.items():
        default = entry.options[key]
        resolved[key] = _coerce(value, default, f"dataset '{entry.name}' option '{key}'")
    return resolved


def _coerce(value: Any, default: Any, what: str) -> Any:
    if default is None or not isinstance(value, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError(value)
        return type(default)(value)
    except ValueError:
        raise ConfigError(f"{what}: cannot read {value!r} as {type(default).__name__}") from None


def load_dataset(name: str, root: str | Path | None = None, ratio: float | None = None, **options: Any) -> BiasedDataset:
    """Build dataset `name` from its files under `root` (default: the entry's default root)."""
    entry = get_entry(name)
    path = resolve_root(entry, root)
    ratio = resolve_ratio(entry, ratio)
    opts = resolve_options(entry, options)
    missing = entry.missing_files(path)
    if missing:
        raise DatasetError(
            f"dataset '{name}': files not found under {path} (missing: {', '.join(missing[:4])}).\n"
            f"  expected layout: {entry.layout}\n  how to obtain it: {entry.obtain}\n"
            f"  pass the folder with --root DIR (or set DIFFDEBIAS_DATA to the folder holding it)"
        )
    ds = entry.build(path, ratio, **opts)
    ds.info.setdefault("root", str(path))
    ds.info.setdefault("ratio", ratio)
    ds.info.setdefault("options", opts)
    return ds


def dataset_names() -> list[str]:
    return sorted(DATASETS)
