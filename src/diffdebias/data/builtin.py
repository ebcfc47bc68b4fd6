"""Imports every built-in dataset module so that each registers itself."""

from . import colored  # noqa: F401
from . import folders, imagenet9, metadata  # noqa: F401
from . import corrupted  # noqa: F401
from . import synthetic  # noqa: F401
from . import colored_pair  # noqa: F401
from . import background  # noqa: F401
