#!/bin/bash
cd /tmp/wt11
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt11/src
PY=/work/main/.venv/bin/python
$PY benchmarks/sweep.py --grid /tmp/dev/grid11.json --dataset corrupted_fmnist --out /tmp/dev/s11_cor_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s11_cor_r1.log 2>&1
$PY benchmarks/sweep.py --grid /tmp/dev/grid11.json --dataset colored_fmnist --out /tmp/dev/s11_col_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s11_col_r1.log 2>&1
$PY benchmarks/sweep.py --grid /tmp/dev/grid11.json --dataset background_fmnist --out /tmp/dev/s11_bg_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s11_bg_r1.log 2>&1
