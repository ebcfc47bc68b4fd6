"""Run the `cpu` preset (the final grid) cell by cell, resumable across sessions and machines.

Before anything runs, every run archived in `--archive` (results.json, config.json, config.yaml,
COMPLETE) is copied back into `--out`, so `bench` skips it; after each cell, every finished run of
that cell is archived. Cells go in ORDER (rho = 1% of each dataset first, then the no-bias controls,
then the other ratios), each cell as one `diffdebias bench --preset cpu --only 'CELL/*'` call (with
`--jobs N` its three generators, one per seed, train side by side before their reusers; with one job
one after another, each followed by its reusers). With `--workers W`, W such calls run at once, each
taking the next cell in order when its last one ends (W workers of `--jobs 1` keep W cores busy; one
call with `--jobs W` idles cores while a cell's last run ends).

    OMP_NUM_THREADS=1 python benchmarks/cpu_grid.py --out runs/bench/cpu --archive benchmarks/results/cpu_grid --workers 2 --jobs 1

Run it from a frozen checkout (a `git worktree` with PYTHONPATH=WORKTREE/src): a bench process must
never import code that is being edited.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from diffdebias.bench.presets import CPU_CELLS, RATIOS
from diffdebias.run import copy_records

ORDER = [c.tag for r in (1.0, None, *(r for r in RATIOS if r != 1.0)) for c in CPU_CELLS if c.ratio == r]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/cpu"))
    ap.add_argument("--archive", type=Path, default=Path("benchmarks/results/cpu_grid"))
    ap.add_argument("--jobs", type=int, default=2, help="runs at once within one cell (bench --jobs)")
    ap.add_argument("--workers", type=int, default=1, help="cells at once, each worker taking the next cell in order")
    ap.add_argument("--cells", nargs="*", default=ORDER, help="cell tags to run, in order (default: all, in ORDER)")
    args = ap.parse_args()
    unknown = sorted(set(args.cells) - set(ORDER))
    if unknown:
        sys.exit(f"unknown cell(s) {unknown}; valid: {', '.join(ORDER)}")
    print(f"restored {copy_records(args.archive, args.out) if args.archive.exists() else 0} archived runs into {args.out}", flush=True)

    def run_cell(cell: str) -> None:
        cmd = [sys.executable, "-m", "diffdebias.cli", "bench", "--preset", "cpu", "--out", str(args.out), "--jobs", str(args.jobs), "--only", f"{cell}/*"]
        code = subprocess.call(cmd)
        print(f"{cell}: bench exited {code}; archived {copy_records(args.out / cell, args.archive / cell)} new runs", flush=True)

    with ThreadPoolExecutor(max(1, args.workers)) as pool:  # a free worker takes the next cell, in order
        list(pool.map(run_cell, args.cells))


if __name__ == "__main__":
    main()
