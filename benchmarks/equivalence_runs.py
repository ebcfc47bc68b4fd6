"""Tiny runs of every method, to compare two commits result for result (BENCHMARKS.md).

    git worktree add /tmp/old OLD_COMMIT
    DIFFDEBIAS_CACHE=/tmp/c_old PYTHONPATH=/tmp/old/src python benchmarks/equivalence_runs.py old /tmp/eq/old erm,lff,jtt,groupdro,ddb1,ddb1_errset,ddb2,diffubias
    DIFFDEBIAS_CACHE=/tmp/c_new python benchmarks/equivalence_runs.py new /tmp/eq/new erm,lff,jtt,groupdro,ddb1,ddb1_errset,ddb2,diffubias

Each writes `summary.json` (val / test metrics, selected epoch, BA facts, the saved weights' sha256
per method); compare the two.
`old` speaks the API before 2026-12-01 (`diffdebias.engine.run`, `gen_steps`). A fourth argument
names the dataset (default colored_fmnist), e.g. background_fmnist for the recommended `ddb` with
its safeguard's evidence.
"""

import hashlib
import json
import sys
from pathlib import Path

old = sys.argv[1] == "old"
out = Path(sys.argv[2])
if old:
    from diffdebias.engine.run import run_method
else:
    from diffdebias.run import run_method
dataset = sys.argv[4] if len(sys.argv) > 4 else "colored_fmnist"
gen = {"gen_steps": 30} if old else {"gen.max_steps": 30}
res = {}
for m in sys.argv[3].split(","):
    ov: dict = {"epochs": 2, "batch_size": 512}
    if m.startswith("ddb"):
        ov |= {"syn_per_class": 8, "sampler_steps": 3, "ba_epochs": 2, **gen}
    if m == "diffubias":
        ov |= {"bias_epochs": 2, "num_candidates": 4, "audit": False, **gen}
    if m in ("jtt", "jtt_weighted"):
        ov["lambda_up"] = 5
    r = run_method(m, dataset, ratio=1.0, seed=0, out=out / m, overrides=ov, quiet=True)
    r = r if isinstance(r, dict) else r.to_dict()  # a RunResult since 2026-12-01
    keep = ("ba_diagnostics", "pseudo_conflicting", "jtt_error_set_size", "ba_augment", "bias_evidence", "dfr")
    res[m] = {"test": r["test"], "val": r["val"], "epoch": r["selected_epoch"], "notes": {k: v for k, v in r["notes"].items() if k in keep}}
    weights = out / m / "main.model.safetensors"
    if weights.exists():  # the layout since 2026-12-01
        res[m]["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    print(m, r["test"]["unbiased_acc"], flush=True)
(out / "summary.json").write_text(json.dumps(res, indent=1, sort_keys=True))
