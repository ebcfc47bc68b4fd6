"""How long a generator's training will take, measured before it starts.

A few optimiser steps of a throw-away copy of the model (same batch size, device and loss; its own
random generator, inside `fork_rng`) are timed after one untimed step that pays for allocation
and kernel selection, so the real run's random streams and results are unchanged. The estimate
(seconds per step x steps left; checkpoints, and the compilation of `compile=true`, not included)
is printed, written to `estimate.json` in the run directory and copied into `train_summary.json`
at the end. On a CPU an estimate over `max_cpu_hours` stops the run unless `allow_long` is set.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ConfigError
from ..io import write_json_atomic

FILE = "estimate.json"
TIMED_STEPS = 3
TIME_BUDGET_S = 10.0  # slow steps: stop timing after the first one that ends past this


def seconds_per_step(step: Callable[[], None], device: torch.device) -> tuple[float, int]:
    """Mean wall time of `step` over up to TIMED_STEPS calls after one untimed call, and how many
    were timed; the global random generators are restored afterwards."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        step()
        _sync(device)
        t0, n = time.perf_counter(), 0
        while n < TIMED_STEPS and (n == 0 or time.perf_counter() - t0 < TIME_BUDGET_S):
            step()
            n += 1
        _sync(device)
        return (time.perf_counter() - t0) / n, n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_estimate(s_per_step: float, timed: int, steps: int, device: torch.device, preset: str, image_size: int, batch_size: int) -> dict[str, Any]:
    return {"estimate_s": round(s_per_step * steps, 1), "steps": steps, "s_per_step": round(s_per_step, 4), "timed_steps": timed,
            "device": str(device), "preset": preset, "image_size": image_size, "batch_size": batch_size}  # fmt: skip


def describe(est: dict[str, Any], kind: str) -> str:
    """One line: '<kind> training: about 2.4 min for 470 steps (0.31 s/step measured on cpu; ...)'."""
    return (f"{kind} training: about {duration(est['estimate_s'])} for {est['steps']} steps ({est['s_per_step']:.3g} s/step measured "
            f"on {est['device']}; preset {est['preset']} at {est['image_size']} px, batch {est['batch_size']})")  # fmt: skip


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def check_budget(est: dict[str, Any], max_cpu_hours: float, allow_long: bool, kind: str) -> None:
    """Refuse a CPU run estimated over `max_cpu_hours`, naming what to change (or `allow_long`)."""
    if allow_long or not est["device"].startswith("cpu") or est["estimate_s"] <= max_cpu_hours * 3600:
        return
    raise ConfigError(
        f"{kind} training would take about {duration(est['estimate_s'])} on this CPU ({est['steps']} steps x {est['s_per_step']:.3g} s measured), "
        f"over max_cpu_hours={max_cpu_hours:g}. Shorten it with the settings preset=cpu-tiny (now {est['preset']}), a smaller image_size (now {est['image_size']}), "
        f"fewer max_steps or a smaller batch_size (now {est['batch_size']}); or go ahead anyway with allow_long=true (or a larger max_cpu_hours)"
    )


def write_estimate(run_dir: Path, est: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / FILE, est)


def read_estimate(run_dir: Path) -> dict[str, Any] | None:
    """The duration estimate recorded in a generator's run directory (None when there is none)."""
    try:
        est = json.loads((Path(run_dir) / FILE).read_text())
    except (OSError, ValueError):
        return None
    return est if isinstance(est, dict) else None
