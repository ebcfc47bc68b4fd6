"""Benchmark grids (presets) and the launchers that run them."""

from .launch import LAUNCHERS, Outcome, launch, run_spec
from .presets import PRESETS, RunSpec, expand, get_preset

__all__ = ["LAUNCHERS", "PRESETS", "Outcome", "RunSpec", "expand", "get_preset", "launch", "run_spec"]
