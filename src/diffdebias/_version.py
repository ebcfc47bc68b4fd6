"""The installed package's version and the source commit (a module of its own, so that any layer may read it)."""

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

try:
    __version__ = version("diffdebias")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"


def source_commit() -> str | None:
    """The git commit of the source tree this package runs from, with "+dirty" when its tracked
    files differ from it; None when it is not a git checkout (e.g. installed from a wheel)."""
    src = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no", "--", "."], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None
