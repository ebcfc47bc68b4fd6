"""The local launcher's schedule: generator trainers and independent runs at once, reusers after their generator."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from diffdebias.bench import expand, get_preset
from diffdebias.bench.launch import Outcome, generator_key, local, plan, schedule
from diffdebias.bench.presets import RunSpec


def _cell(name: str = "background_fmnist_r1") -> list[RunSpec]:
    return [s for s in expand(get_preset("cpu")) if s.run_dir.startswith(name + "/")]


def test_plan_puts_one_trainer_per_generator_and_reports_complete_runs(tmp_path):
    specs = _cell()
    done = next(s for s in specs if s.method == "erm")
    (tmp_path / done.run_dir).mkdir(parents=True)
    (tmp_path / done.run_dir / "COMPLETE").write_text("")
    (tmp_path / done.run_dir / "results.json").write_text("{}")
    reported: list[Outcome] = []
    trainers, independent, waiting = plan(specs, str(tmp_path), reported.append)
    assert [o.spec for o in reported] == [done] and reported[0].status == "skipped"
    keys = {generator_key(s) for s in specs} - {None}
    assert len(trainers) == len(keys) == len({s.seed for s in specs})  # one generator per seed (seed_scope="all")
    assert {key for _, key in trainers} == set(waiting) == keys
    assert all(generator_key(s) is None for s in independent) and done not in independent
    reusers = [s for group in waiting.values() for s in group]
    assert sorted(map(id, [s for s, _ in trainers] + independent + reusers)) == sorted(id(s) for s in specs if s is not done)
    assert all(generator_key(s) == key for key, group in waiting.items() for s in group)


def test_schedule_keeps_every_worker_busy_and_reusers_wait_for_their_generator(tmp_path):
    """Two workers, three generator trainers: while the third trains, the other worker runs the
    independent runs (it used to wait for the last trainer). The third trainer blocks until an
    independent run has started, so the old schedule fails here instead of running slowly."""
    trainers, independent, waiting = plan(_cell(), str(tmp_path), lambda o: None)
    assert len(trainers) == 3 and independent
    lock, events, started = threading.Lock(), [], threading.Event()
    third, independent_ids = trainers[2][0], {id(s) for s in independent}
    reusers = {key: list(group) for key, group in waiting.items()}  # schedule pops them
    every = [s for s, _ in trainers] + independent + [s for group in reusers.values() for s in group]

    def run(spec: RunSpec) -> Outcome:
        with lock:
            events.append(("start", spec))
        if id(spec) in independent_ids:
            started.set()
        if spec is third and not started.wait(timeout=30):
            raise AssertionError("no independent run started while the last generator trained")
        with lock:
            events.append(("end", spec))
        return Outcome(spec, "done")

    reported: list[Outcome] = []
    with ThreadPoolExecutor(2) as pool:
        schedule(partial(pool.submit, run), trainers, independent, waiting, reported.append)
    order = {(kind, id(spec)): i for i, (kind, spec) in enumerate(events)}
    assert sorted(id(o.spec) for o in reported) == sorted(map(id, every))
    for spec, key in trainers:
        for reuser in reusers[key]:
            assert order[("start", id(reuser))] > order[("end", id(spec))]


def test_one_job_runs_each_generators_reusers_right_after_it(tmp_path, monkeypatch):
    """With one job, the runs that train no generator come first, then generator by generator its
    trainer and reusers, so a grid stopped part-way leaves at most one generator to retrain."""
    specs = _cell()
    ran: list[RunSpec] = []
    monkeypatch.setattr(sys.modules["diffdebias.bench.launch"], "run_spec", lambda spec, out, quiet: ran.append(spec) or Outcome(spec, "done"))
    outcomes = local(specs, str(tmp_path), jobs=1, echo=lambda line: None)
    assert sorted(map(id, ran)) == sorted(map(id, specs)) and len(outcomes) == len(specs)
    keys = [generator_key(s) for s in ran]
    first = keys.index(next(k for k in keys if k is not None))
    assert all(k is None for k in keys[:first]) and all(k is not None for k in keys[first:])
    blocks = [k for i, k in enumerate(keys[first:]) if i == 0 or k != keys[first + i - 1]]
    assert len(blocks) == len(set(blocks)) == 3  # each generator's runs contiguous, the trainer first
