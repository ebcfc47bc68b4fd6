"""Run a list of run specs: skip complete runs, resume interrupted ones, share cached generators.

A launcher is a function `(specs, out, jobs, quiet, echo) -> list[Outcome]` registered in
LAUNCHERS; `local` runs in this process (jobs = 1) or in a pool of processes, `ray` runs each spec
as a Ray task (a local Ray instance, or a cluster given `address`) that calls `run_spec` on a worker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

from ..run import is_complete, run_method
from ..errors import ConfigError, RunBusy
from ..hparams import resolve_hparams
from ..paths import cache_home, data_home
from ..recipes import get_method
from .presets import RunSpec


@dataclass
class Outcome:
    spec: RunSpec
    status: str  # skipped (already complete) | done | busy (running in another process) | failed
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
                   data_options=spec.data_options, resume=True, quiet=quiet, log_with=spec.log_with)  # fmt: skip
    except KeyboardInterrupt:
        raise
    except RunBusy as exc:  # another bench process is running it: its outcome is that process's
        return Outcome(spec, "busy", time.perf_counter() - t0, str(exc))
    except Exception as exc:  # one failed run must not stop the grid; it is reported at the end
        return Outcome(spec, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    return Outcome(spec, "done", time.perf_counter() - t0)


def generator_key(spec: RunSpec) -> tuple | None:
    """Runs with the same key share one cached generator (None: the method trains none): the same
    training data (dataset, ratio, options) and generator settings (`gen`)."""
    hp = resolve_hparams(spec.method, spec.dataset, spec.overrides)
    if not get_method(spec.method).trains_generator(hp):
        return None
    return (spec.dataset, spec.ratio, tuple(sorted(spec.data_options.items())), tuple(sorted(hp["gen"].items())))


def _set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def _reporter(specs: list[RunSpec], echo: Callable) -> tuple[list[Outcome], Callable[[Outcome], None]]:
    """The outcomes list and a `report` that appends to it and echoes one progress line."""
    outcomes: list[Outcome] = []

    def report(o: Outcome) -> None:
        outcomes.append(o)
        extra = f" ({o.wall_s:.0f}s)" if o.status == "done" else f"\n{o.error}" if o.status == "failed" else ""
        echo(f"[{len(outcomes)}/{len(specs)}] {o.status:<7} {o.spec.run_dir}{extra}")

    return outcomes, report


def local(specs: list[RunSpec], out: str, jobs: int = 1, quiet: bool = True, echo: Callable = print) -> list[Outcome]:
    """In this process, or in `jobs` processes scheduled as `plan` says: the runs that train a
    distinct generator and the runs that train none are queued at once (in that order), and the
    runs reusing a generator follow when its run has finished, so that they find it cached; no
    worker waits while another trains a generator. In this process, in `sequential` order."""
    outcomes, report = _reporter(specs, echo)
    if jobs <= 1:
        for spec in sequential(*plan(specs, out, report)):
            report(run_spec(spec, out, quiet))
        return outcomes
    threads = max(1, (os.cpu_count() or 1) // jobs)  # the cores shared out, not every worker on all of them
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_set_threads, initargs=(threads,)) as pool:
        schedule(partial(pool.submit, partial(run_spec, out=out, quiet=quiet)), *plan(specs, out, report), report)
    return outcomes


def schedule(submit: Callable[[RunSpec], Future], trainers: list[tuple[RunSpec, tuple]], independent: list[RunSpec],
             waiting: dict[tuple, list[RunSpec]], report: Callable[[Outcome], None]) -> None:  # fmt: skip
    """Start `plan`'s runs with `submit` (a future of the run's Outcome): the generator trainers,
    then the independent runs, and each trainer's waiters once it has finished; report every
    outcome as it comes. Every launcher schedules through here."""
    running = {submit(spec): key for spec, key in trainers}
    running.update({submit(spec): None for spec in independent})
    while running:
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            report(future.result())
            for waiter in waiting.pop(running.pop(future), []):
                running[submit(waiter)] = None


def sequential(trainers: list[tuple[RunSpec, tuple]], independent: list[RunSpec], waiting: dict[tuple, list[RunSpec]]) -> list[RunSpec]:
    """`plan`'s runs one after another: the runs that train no generator, then each generator's
    trainer followed by its reusers. A grid stopped part-way (a session's end, on a machine whose
    cache does not survive) so leaves at most one generator with unfinished reusers to retrain,
    not every generator of the cell."""
    return independent + [s for trainer, key in trainers for s in (trainer, *waiting[key])]


def plan(specs: list[RunSpec], out: str,
         report: Callable[[Outcome], None]) -> tuple[list[tuple[RunSpec, tuple]], list[RunSpec], dict[tuple, list[RunSpec]]]:  # fmt: skip
    """Complete runs reported as skipped; the rest as (runs that train a distinct generator, with its
    key; runs that train none; generator key -> the runs that reuse that generator)."""
    trainers: list[tuple[RunSpec, tuple]] = []
    independent: list[RunSpec] = []
    waiting: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        if is_complete(Path(out) / spec.run_dir):
            report(Outcome(spec, "skipped"))
            continue
        key = generator_key(spec)
        if key is None:
            independent.append(spec)
        elif key in waiting:
            waiting[key].append(spec)
        else:
            waiting[key] = []
            trainers.append((spec, key))
    return trainers, independent, waiting


# Read by the runs; set on every Ray worker as on the driver (paths made absolute, since a
# worker's working directory is not the driver's on a cluster).
WORKER_ENV = ("DIFFDEBIAS_CACHE", "DIFFDEBIAS_DATA", "DIFFDEBIAS_ENERGY", "DIFFDEBIAS_COUNTRY", "OMP_NUM_THREADS")


def _worker_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in WORKER_ENV if k in os.environ}
    env["DIFFDEBIAS_CACHE"] = str(cache_home().resolve())
    env["DIFFDEBIAS_DATA"] = str(data_home().resolve())
    return env


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast with a clear message when a HOST:PORT or ray://HOST:PORT address does not answer
    (ray.init would otherwise wait a long time for an unreachable cluster)."""
    hostport = address.removeprefix("ray://").rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"Ray address '{address}': expected HOST:PORT, ray://HOST:PORT (Ray Client, usually port 10001), auto or local")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach the Ray cluster at '{address}' ({exc}); start it with `ray start --head` "
                          "on the head node, or leave --address out for a local Ray instance") from None  # fmt: skip


def _connect_ray(ray, address: str | None, jobs: int, quiet: bool) -> bool:
    """ray.init a local instance with `jobs` CPUs (address None or 'local') or connect to `address`;
    True when this call ran ray.init, so that ray.shutdown() (which stops a local instance it
    started and only disconnects from a cluster) is ours to call."""
    import logging

    if ray.is_initialized():  # e.g. a notebook that already called ray.init: use it, leave it running
        return False
    opts = dict(include_dashboard=False, log_to_driver=not quiet, logging_level=logging.WARNING,
                runtime_env={"env_vars": _worker_env()})  # fmt: skip
    if address in (None, "", "local"):
        ray.init(address="local", num_cpus=max(1, jobs), **opts)
        return True
    if address.startswith("ray://"):
        if importlib.util.find_spec("grpc") is None:  # Ray Client's transport, in the ray[client] extra
            raise ConfigError(f"Ray address '{address}' uses Ray Client, which needs `pip install 'ray[client]'`; "
                              "or run the bench on the head node with --address auto")  # fmt: skip
        opts.pop("include_dashboard")
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, **opts)
    except ConnectionError as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at '{address}': {exc} (a cluster with token authentication also "
                          "needs RAY_AUTH_MODE=token and its token here: https://docs.ray.io/en/latest/ray-security/token-auth.html)") from None  # fmt: skip
    return True


def _ray_resources(spec: RunSpec, cluster_gpus: float) -> dict:
    """One CPU per run; one GPU for a run on `auto`/`cuda` when the cluster has GPUs (so that runs
    do not pile up on one GPU). A run pinned to `cuda:N` keeps its device and asks for none."""
    device = str(resolve_hparams(spec.method, spec.dataset, spec.overrides).get("device", "cpu"))
    return {"num_cpus": 1, "num_gpus": 1 if cluster_gpus > 0 and device in ("auto", "cuda") else 0}


def ray_launcher(specs: list[RunSpec], out: str, jobs: int = 1, quiet: bool = True, echo: Callable = print,
                 address: str | None = None) -> list[Outcome]:  # fmt: skip
    """Each run is a Ray task calling `run_spec` on a worker: on a local Ray instance with `jobs`
    CPUs, or on the cluster at `address` (else $RAY_ADDRESS; `auto` = the cluster this node belongs
    to, ray://HOST:10001 = Ray Client). Runs already complete are reported as skipped without
    starting Ray. One run per distinct generator is submitted first; the runs sharing its generator
    follow once it has finished, so that they find the generator cached, and the runs that train no
    generator are queued at once. Ctrl-C cancels the outstanding tasks (interrupted runs resume on rerun)."""
    outcomes, report = _reporter(specs, echo)
    trainers, independent, waiting = plan(specs, out, report)
    if not (trainers or independent):
        return outcomes
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray launcher needs Ray: pip install 'diffdebias[ray]' (or pip install ray)") from None
    out = str(Path(out).resolve())  # the workers' working directory may differ from ours
    started = _connect_ray(ray, address or os.environ.get("RAY_ADDRESS"), jobs, quiet)
    refs: list = []  # every task submitted, cancelled on Ctrl-C
    try:
        task, gpus = ray.remote(max_retries=1)(run_spec), ray.cluster_resources().get("GPU", 0)

        def submit(spec: RunSpec) -> Future:
            """The task's Outcome as a Future; a task that returns none (the worker crashed, could not
            import diffdebias, was cancelled, ...) is a failed outcome, so that `schedule` never hangs."""
            t0, outcome = time.perf_counter(), Future()
            ref = task.options(**_ray_resources(spec, gpus)).remote(spec, out, quiet)
            refs.append(ref)

            def settle(ref_future: Future) -> None:
                try:
                    outcome.set_result(ref_future.result())
                except Exception as exc:  # run_spec itself never raises: the task did not run to its end
                    outcome.set_result(Outcome(spec, "failed", time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))

            ref.future().add_done_callback(settle)
            return outcome

        schedule(submit, trainers, independent, waiting, report)
    except KeyboardInterrupt:
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()
    return outcomes


LAUNCHERS: dict[str, Callable[..., list[Outcome]]] = {"local": local, "ray": ray_launcher}


def check_launcher(launcher: str, address: str | None = None) -> None:
    """Refuse an unknown launcher, or an `address` given to a launcher that takes none."""
    import inspect

    if launcher not in LAUNCHERS:
        raise ConfigError(f"unknown launcher '{launcher}'; valid: {', '.join(LAUNCHERS)}")
    if address and "address" not in inspect.signature(LAUNCHERS[launcher]).parameters:
        takes = [n for n, f in LAUNCHERS.items() if "address" in inspect.signature(f).parameters]
        raise ConfigError(f"launcher '{launcher}' takes no address (--address is for: {', '.join(takes)})")


def launch(specs: list[RunSpec], out: str | Path, launcher: str = "local", jobs: int = 1, quiet: bool = True, echo: Callable = print,
           address: str | None = None) -> list[Outcome]:  # fmt: skip
    """Dispatch `specs` to a registered launcher; `address` (a cluster) is for launchers that take one."""
    check_launcher(launcher, address)
    extra = {"address": address} if address else {}
    return LAUNCHERS[launcher](specs, str(out), jobs=jobs, quiet=quiet, echo=echo, **extra)
