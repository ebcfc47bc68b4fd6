"""The installed package's version (a module of its own, so that any layer may read it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("diffdebias")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+src"
