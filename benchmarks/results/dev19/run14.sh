#!/bin/bash
# generator budget on Background FMNIST 1% (data seed 1): 3000 steps instead of cpu-tiny's 470
cd /tmp/wt11
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt11/src
PY=/work/main/.venv/bin/python
$PY benchmarks/sweep.py --grid /tmp/dev/grid14.json --dataset background_fmnist --out /tmp/dev/s14_bg_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s14_bg_r1.log 2>&1
