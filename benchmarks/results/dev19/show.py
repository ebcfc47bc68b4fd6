import json, sys, glob
for f in sorted(glob.glob(sys.argv[1] + "/**/results.json", recursive=True)):
    r = json.load(open(f))
    bp = r["by_policy"]
    def g(p, split="test", k="unbiased_acc"):
        x = bp.get(p)
        return "-" if x is None or x[split].get(k) is None else f"{x[split][k]:.2f}"
    ev = r["notes"].get("bias_evidence")
    diag = r["notes"].get("ba_diagnostics", {}).get("synthetic", {})
    evs = f" ev agree {ev['agreement']} chance {ev['chance_agreement']} conf {ev['confident_errors']} baerr {ev['ba_val_error']} probeerr {ev['probe_val_error']}" if ev else ""
    print(f"{f.split(sys.argv[1])[1][:60]:60s} sel={r['selection']:20s} test={r['test']['unbiased_acc']:.2f} last={g('last')} vpu={g('val_pseudo_unbiased')} vu={g('val_unbiased')} | vpu_val={g('val_pseudo_unbiased','val','pseudo_unbiased_acc')} auroc={diag.get('auroc','-')} flagged={diag.get('num_flagged','-')}{evs}")
