"""Run many (method, overrides, seed) configurations in parallel processes and summarise them.

Used to choose hyperparameters on validation: every configuration's results.json holds what each
selection policy picks (`by_policy`), so the table shows the val score a choice is based on next to
the test score it gives. A grid is a JSON list of {"method", "set": {...}, "seeds": [...]}.

    python benchmarks/sweep.py --grid grid.json --out runs/sweep --jobs 4 [--device cuda] [--data seed=1 ...]

`--data KEY=VALUE` sets a dataset option, e.g. `seed=1`: a development data seed other than the final grid's.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


def _one(job: tuple) -> dict:
    from diffdebias.run import run_method

    method, overrides, seed, dataset, ratio, out, data_options = job
    r = run_method(method, dataset, ratio=ratio, seed=seed, out=out, overrides=overrides, data_options=data_options, quiet=True)
    return {"method": method, "set": overrides, "seed": seed, "by_policy": r.by_policy, "wall": r.total_wall_time_s, "notes": r.notes.to_dict()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=Path, required=True)
    ap.add_argument("--dataset", default="colored_fmnist")
    ap.add_argument("--ratio", type=float, default=1.0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", action="append", default=[], metavar="KEY=VALUE", help="dataset option (repeatable)")
    args = ap.parse_args()
    data_options = dict(kv.split("=", 1) for kv in args.data)
    jobs = []
    for entry in json.loads(args.grid.read_text()):
        overrides = {**entry.get("set", {}), "device": args.device}
        tag = "_".join(f"{k}{v}" for k, v in sorted(entry.get("set", {}).items())) or "default"
        for seed in entry.get("seeds", [0]):
            jobs.append((entry["method"], overrides, seed, args.dataset, args.ratio, str(args.out / entry["method"] / tag / f"seed{seed}"), data_options))
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(_one, jobs))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(results, indent=1))
    print("| method | settings | seed | policy | val avg | val unbiased | test unbiased | test conflicting |\n|---|---|---|---|---|---|---|---|")
    for r in results:
        for pol in ("last", "val_avg", "val_worst_class", "val_pseudo_unbiased", "val_unbiased"):
            p = r["by_policy"].get(pol)
            if p:
                print(f"| {r['method']} | {json.dumps({k: v for k, v in r['set'].items() if k != 'device'})} | {r['seed']} | {pol} | "
                      f"{p['val']['avg_acc']} | {p['val']['unbiased_acc']} | {p['test']['unbiased_acc']} | {p['test']['conflicting_acc']} |")  # fmt: skip


if __name__ == "__main__":
    main()
