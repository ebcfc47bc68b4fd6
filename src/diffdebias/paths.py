"""Where the toolkit keeps data and caches, and confinement of untrusted relative paths."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetError


def data_home() -> Path:
    """Root under which datasets are looked for by default (`$DIFFDEBIAS_DATA`, else ./data)."""
    return Path(os.environ.get("DIFFDEBIAS_DATA", "data")).expanduser()


def cache_home() -> Path:
    """Cache for built datasets, generators and synthetic sets (`$DIFFDEBIAS_CACHE`)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "diffdebias"
    return Path(os.environ.get("DIFFDEBIAS_CACHE", default)).expanduser()


def resolve_inside(root: Path, relative: str, *, source: str, field: str) -> Path:
    """Join `relative` (read from an untrusted metadata file) to `root`, refusing escapes.

    Absolute paths, `..` components that leave the root and symlinks pointing outside it
    are refused with a DatasetError naming `source` (the metadata file) and `field`.
    """
    rel = str(relative).strip()
    fix = "paths in metadata must be relative to the dataset root and stay inside it"
    if not rel:
        raise DatasetError(f"{source}: empty value in field '{field}'; {fix}")
    if os.path.isabs(rel) or rel.startswith(("\\", "/")) or (len(rel) > 1 and rel[1] == ":"):
        raise DatasetError(f"{source}: field '{field}' holds an absolute path {rel!r}; {fix}")
    if "\x00" in rel:
        raise DatasetError(f"{source}: field '{field}' path {rel!r} holds a NUL character; {fix}")
    root_resolved = Path(root).resolve()
    try:
        candidate = (root_resolved / rel).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loops, names too long
        raise DatasetError(f"{source}: field '{field}' path {rel!r} cannot be resolved ({exc}); {fix}") from None
    if not candidate.is_relative_to(root_resolved):
        raise DatasetError(f"{source}: field '{field}' path {rel!r} leaves the dataset root {root}; {fix}")
    return candidate
