"""Energy and emissions per stage, measured by codecarbon's offline tracker.

One `OfflineEmissionsTracker` per process (in `tracking_mode="process"`, so other users' load on
a shared machine is not counted) measures each stage as a codecarbon task. Where the CPU exposes
no power counters (RAPL unreadable, e.g. in a VM or container), codecarbon estimates CPU power as
a thermal design power (its table, or 4 W per thread for an unknown model) times this process's
CPU load, and RAM power from the memory size (a per-DIMM constant); GPUs are read through NVML.
Emissions = energy x the carbon intensity of the country's electricity mix (`country`, ISO 3166
alpha-3; offline table shipped with codecarbon). `describe()` records which estimate was used.

Stages nest: a stage opened while another is measured counts toward the outer one.
Set `DIFFDEBIAS_ENERGY=0` to switch the tracker off (results then carry no energy figures).
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Iterator

from .distributed import current

COUNTRY_ENV = "DIFFDEBIAS_COUNTRY"
DEFAULT_COUNTRY = "FRA"

_tracker: Any = None
_active: str | None = None
_stages: dict[str, dict[str, float]] = {}


def enabled() -> bool:
    return os.environ.get("DIFFDEBIAS_ENERGY", "1").lower() not in ("0", "false", "no", "off")


def _get_tracker():
    global _tracker
    if _tracker is None:
        from codecarbon import OfflineEmissionsTracker  # heavy: imported when first measured

        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        dist = current()
        # one process per GPU under a multi-process launch: each measures its own GPU only
        own_gpu = {"gpu_ids": [dist.device.index or 0]} if dist.active and dist.device.type == "cuda" else {}
        _tracker = OfflineEmissionsTracker(
            **own_gpu,
            country_iso_code=os.environ.get(COUNTRY_ENV, DEFAULT_COUNTRY),
            save_to_file=False,
            log_level="error",
            tracking_mode="process",
            allow_multiple_runs=True,
        )
    return _tracker


def reset() -> None:
    """Forget the stages measured so far (call at the start of a run)."""
    _stages.clear()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Measure the energy of the enclosed code as stage `name` (summed if measured twice)."""
    global _active
    if not enabled() or _active is not None:
        yield
        return
    tracker = _get_tracker()
    tracker.start_task(name)
    _active = name
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _active = None
        data = tracker.stop_task()
        if data is not None:
            row = _stages.setdefault(name, {"energy_kwh": 0.0, "cpu_kwh": 0.0, "ram_kwh": 0.0, "gpu_kwh": 0.0, "co2_kg": 0.0, "duration_s": 0.0})
            row["energy_kwh"] += float(data.energy_consumed)
            row["cpu_kwh"] += float(data.cpu_energy)
            row["ram_kwh"] += float(data.ram_energy)
            row["gpu_kwh"] += float(data.gpu_energy)
            row["co2_kg"] += float(data.emissions)
            row["duration_s"] += time.perf_counter() - t0


def stages() -> dict[str, dict[str, float]]:
    """Energy (kWh) and emissions (kg CO2eq) of every stage measured since `reset()`."""
    return {k: {m: float(f"{v:.4g}") for m, v in row.items()} for k, row in _stages.items()}


def summed(per_process: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """The stages of several processes of one run (`stages()` of each): energy and emissions added
    up, the duration the longest process's."""
    out: dict[str, dict[str, float]] = {}
    for stages_ in per_process:
        for name, row in stages_.items():
            acc = out.setdefault(name, {})
            for k, v in row.items():
                acc[k] = max(acc.get(k, 0.0), v) if k == "duration_s" else float(f"{acc.get(k, 0.0) + v:.4g}")
    return out


def describe() -> dict[str, Any]:
    """How the figures were estimated on this machine (for results.json and the report)."""
    if not enabled() or _tracker is None:
        return {"tracker": None}
    import codecarbon

    t = _tracker  # codecarbon exposes what it detected only through these attributes
    cpu = next((h for h in getattr(t, "_hardware", []) if type(h).__name__ == "CPU"), None)
    mode = getattr(cpu, "_mode", None)
    conf = getattr(t, "_conf", {})
    return {
        "tracker": f"codecarbon {codecarbon.__version__} OfflineEmissionsTracker (tracking_mode=process)",
        "country": getattr(t, "_country_iso_code", None),
        "cpu_model": conf.get("cpu_model"),
        "cpu_method": "RAPL power counters" if mode == "intel_rapl" else f"{mode}: TDP {getattr(cpu, '_tdp', '?')} W x process CPU load" if mode == "cpu_load" else str(mode),
        "ram_method": "RAM power estimated from memory size (no counter)",
        "gpu_count": conf.get("gpu_count", 0),
    }
