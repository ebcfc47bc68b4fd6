#!/bin/bash
# Diagnostic: do the true-group trainers lose on the no-bias controls because of balancing or of weight decay?
cd "$(dirname "$0")/../../.."  # the repository root
for cell in colored_fmnist_control corrupted_fmnist_control; do
 for seed in 2 3 4; do
  A=benchmarks/results/cpu_grid/$cell
  OMP_NUM_THREADS=1 .venv/bin/diffdebias run --config $A/resample_oracle/seed$seed/config.yaml --set weight_decay=0 --out runs/diag/$cell/resample_oracle_wd0/seed$seed -q
  OMP_NUM_THREADS=1 .venv/bin/diffdebias run --config $A/erm/seed$seed/config.yaml --set weight_decay=0.01 --out runs/diag/$cell/erm_wd1e-2/seed$seed -q
 done
done
echo ALLDONE
