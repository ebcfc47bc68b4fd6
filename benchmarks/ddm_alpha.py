"""DDM's alpha sweep on a small fair-generation task (BENCHMARKS.md, section "DDM").

Task: `colored_fmnist_pair` (Trouser / Sneaker, 16 px), attribute = colour; in each class 90% of
the training images have the class's majority colour (opposite majorities), so a class-conditional
generator is unfair per condition (FD) and across conditions (SPD). A cpu-tiny base generator is
trained once (`diffusion train`, cached), then every row fine-tunes it for `--steps` steps with
`ddm train` (`init` = the base; DDM fine-tunes a pretrained model), samples `--per-class` images
per class (DPM-Solver++, 10 steps, w = 0: plain conditional sampling, no guidance that would
sharpen the majority) and evaluates them with `ddm eval`'s code (classifiers trained on the real
data; attribute labels for evaluation only). Rows: the faithful objective for every alpha with
given and with inferred groups (alpha = 0 is the same run for both: with alpha = 0 the groups do
not reach the denoiser), and this project's variants (adversarial sign; group-balanced sampling).
Seed s seeds fine-tuning and sampling. Writes rows.json and table.md under --out.

    nice -n 5 python benchmarks/ddm_alpha.py --out runs/ddm_alpha
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from diffdebias.data import load_dataset
from diffdebias.ddm.evaluate import evaluate_samples, load_samples
from diffdebias.ddm.train import DDMConfig, train_ddm
from diffdebias.audit import Judges, train_judges
from diffdebias.collect import seed_std
from diffdebias.diffusion.synthetic import generate_synthetic
from diffdebias.diffusion.train import DiffusionConfig, train_diffusion
from diffdebias.io import write_json_atomic, write_text_atomic

ALPHAS = (0.0, 0.005, 0.01, 0.05, 0.1)


def configs() -> list[dict]:
    rows = [{"name": "faithful", "groups": "given", "alpha": a} for a in ALPHAS]
    rows += [{"name": "faithful", "groups": "inferred", "alpha": a} for a in ALPHAS[1:]]
    rows += [{"name": "adversarial", "groups": g, "alpha": 0.05, "sign": "adversarial"} for g in ("given", "inferred")]
    rows += [{"name": "balanced", "groups": g, "alpha": 0.0, "balanced": True} for g in ("given", "inferred")]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=None)
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--base-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/ddm_alpha")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset("colored_fmnist_pair", root=args.root, size=args.size)
    t0, c0 = time.perf_counter(), time.process_time()
    base = train_diffusion(data, DiffusionConfig.resolve(data, {"max_steps": args.base_steps, "warmup_steps": 50}), quiet=True)
    judges = train_judges(data)
    setup_s, setup_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    print(f"base generator {base}; set-up {setup_s:.0f} s; judges: attribute {judges.bias.test_acc:.1f}%, class {judges.label.test_acc:.1f}%", flush=True)

    if not (out / "setup.json").exists():  # the first invocation's set-up (a re-run reuses the cache)
        write_json_atomic(out / "setup.json", {"wall_s": round(setup_s, 1), "cpu_s": round(setup_cpu_s, 1)})

    def evaluate(folder: Path) -> dict:
        images, conds = load_samples(folder, data.spec.channels, data.spec.size)
        return evaluate_samples(images, conds, data, judges=judges, n_boot=200)

    rows_path = out / "rows.json"
    rows = json.loads(rows_path.read_text()) if rows_path.exists() else []
    done = {(r["name"], r["groups"], r["alpha"], r["seed"]) for r in rows}
    for seed in [int(s) for s in args.seeds.split(",")]:
        todo = [{"name": "base", "groups": "-", "alpha": None}] + configs()
        for row in todo:
            key = (row["name"], row["groups"], row["alpha"], seed)
            if key in done:
                continue
            t1, c1 = time.perf_counter(), time.process_time()
            if row["name"] == "base":
                run, train_s = base, 0.0
            else:
                overrides = {k: v for k, v in row.items() if k != "name"} | {
                    "init": str(base), "max_steps": args.steps, "warmup_steps": 5, "seed": seed, "checkpoint_every": args.steps}
                run = train_ddm(data, DDMConfig.resolve(data, overrides), quiet=True)
                train_s = time.perf_counter() - t1
            folder = generate_synthetic(run, args.per_class, sampler="dpmpp", steps=10, w=0.0, seed=seed, quiet=True)
            report = evaluate(folder)
            log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()] if row["name"] != "base" else []
            groups = json.loads((run / "groups.json").read_text()) if row["name"] != "base" else {}
            rec = {**row, "seed": seed, "run": str(run), "fd": report["fd_cond_mean"], "spd": report["spd"], "fd_inclf": report["fd_inclf"],
                   "fd_overall": report["overall"]["fd"], "minority_share": float(np.mean([p["proportions"][1 - int(c)] for c, p in report["per_condition"].items()])),
                   "indicator_acc_last": log[-1]["indicator_acc"] if log else None, "ce_last": log[-1]["ce"] if log else None,
                   "group_agreement": groups.get("agreement"), "train_s": round(train_s, 1), "wall_s": round(time.perf_counter() - t1, 1),
                   "cpu_s": round(time.process_time() - c1, 1)}  # fmt: skip
            rows.append(rec)
            write_json_atomic(rows_path, rows)
            print(json.dumps({k: rec[k] for k in ("name", "groups", "alpha", "seed", "fd", "spd", "fd_inclf", "minority_share", "indicator_acc_last", "wall_s")}), flush=True)
    setup = json.loads((out / "setup.json").read_text())
    text = table(rows, judges, setup)
    write_text_atomic(out / "table.md", text)
    print(text)


def table(rows: list[dict], judges: Judges, setup: dict) -> str:
    keys = []
    for r in rows:
        k = (r["name"], r["groups"], r["alpha"])
        if k not in keys:
            keys.append(k)
    lines = [
        f"attribute classifier: real test acc {judges.bias.test_acc:.1f}%; in-domain classifier: real test acc {judges.label.test_acc:.1f}%",
        f"set-up (base generator + classifiers): {setup['wall_s'] / 60:.1f} min wall, {setup['cpu_s'] / 60:.1f} CPU min; rows: "
        f"{sum(r['wall_s'] for r in rows) / 60:.1f} min wall, {sum(r['cpu_s'] for r in rows) / 60:.1f} CPU min",
        "",
        "| variant | groups | alpha | FD (mean over classes) | SPD | minority share | fd_inclf | indicator acc (last batch) | seeds | wall s / run | CPU s / run |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, groups, alpha in keys:
        rs = [r for r in rows if (r["name"], r["groups"], r["alpha"]) == (name, groups, alpha)]

        def ms(field: str, fmt: str = ".3f") -> str:
            vals = [r[field] for r in rs if r[field] is not None]
            return f"{np.mean(vals):{fmt}} +- {seed_std(vals):{fmt}}" if vals else "-"

        lines.append(f"| {name} | {groups} | {'-' if alpha is None else alpha} | {ms('fd')} | {ms('spd')} | {ms('minority_share')} | {ms('fd_inclf', '.2f')} | "
                     f"{ms('indicator_acc_last', '.2f')} | {len(rs)} | {np.mean([r['wall_s'] for r in rs]):.0f} | {np.mean([r['cpu_s'] for r in rs]):.0f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
