"""Run a list of run specs: skip complete runs, resume interrupted ones, share cached generators.

A launcher is a function `(specs, out, jobs, quiet, echo) -> list[Outcome]` registered in
LAUNCHERS; `local` runs in this process (jobs = 1) or in a pool of processes. Another backend
(e.g. Ray) is one more function here: it receives the same specs and calls `run_spec` on a worker.
"""

from __future__ import annotations

import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from ..engine.run import is_complete, run_method
from ..hparams import resolve_hparams
from .presets import RunSpec


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # skipped (already complete) | done | failed
    wall_s: float = 0.0
    error: str = ""


def run_spec(spec: RunSpec, out: str, quiet: bool = True) -> Outcome:
    """Run one spec under `out` (resuming it if it was interrupted); never raises for a failed run."""
    run_dir = Path(out) / spec.run_dir
    if is_complete(run_dir):
        return Outcome(spec, "skipped")
    t0 = time.perf_counter()
    try:
        run_method(spec.method, spec.dataset, ratio=spec.ratio, seed=spec.seed, out=run_dir, overrides=spec.overrides,
                   data_options=spec.data_options, resume=True, quiet=quiet)  # fmt: skip
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one failed run must not stop the grid; it is reported at the end
        return Outcome(spec, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    return Outcome(spec, "done", time.perf_counter() - t0)


def generator_key(spec: RunSpec) -> tuple | None:
    """Runs with the same key share one cached generator (None: the method trains none)."""
    hp = resolve_hparams(spec.method, spec.dataset, spec.overrides)
    if "gen_steps" not in hp or hp.get("ba_source") == "real":
        return None
    gen = tuple((k, hp[k]) for k in ("gen_steps", "gen_seed", "syn_per_class", "sampler", "sampler_steps", "w"))
    return (spec.dataset, spec.ratio, tuple(sorted(spec.data_options.items())), gen)


def _run_spec_star(args: tuple) -> Outcome:
    return run_spec(*args)


def local(specs: list[RunSpec], out: str, jobs: int = 1, quiet: bool = True, echo: Callable = print) -> list[Outcome]:
    """In this process, or in `jobs` processes; with jobs > 1 one run per distinct generator goes
    first, alone, so that parallel runs find the generator cached instead of training it twice."""
    outcomes: list[Outcome] = []

    def report(o: Outcome) -> None:
        outcomes.append(o)
        extra = f" ({o.wall_s:.0f}s)" if o.status == "done" else f"\n{o.error}" if o.status == "failed" else ""
        echo(f"[{len(outcomes)}/{len(specs)}] {o.status:<7} {o.spec.run_dir}{extra}")

    if jobs <= 1:
        for spec in specs:
            report(run_spec(spec, out, quiet))
        return outcomes
    first, rest, seen = [], [], set()
    for spec in specs:
        key = generator_key(spec)
        if key is not None and key not in seen and not is_complete(Path(out) / spec.run_dir):
            seen.add(key)
            first.append(spec)
        else:
            rest.append(spec)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        for o in pool.map(_run_spec_star, [(s, out, quiet) for s in first]):
            report(o)
        for o in pool.map(_run_spec_star, [(s, out, quiet) for s in rest]):
            report(o)
    return outcomes


LAUNCHERS: dict[str, Callable[..., list[Outcome]]] = {"local": local}


def launch(specs: list[RunSpec], out: str | Path, launcher: str = "local", jobs: int = 1, quiet: bool = True, echo: Callable = print) -> list[Outcome]:
    """Dispatch `specs` to a registered launcher."""
    from ..errors import ConfigError

    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher '{launcher}'; valid: {', '.join(LAUNCHERS)}")
    return LAUNCHERS[launcher](specs, str(out), jobs=jobs, quiet=quiet, echo=echo)
