#!/bin/bash
cd /tmp/wt10
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt10/src
PY=/work/main/.venv/bin/python
$PY benchmarks/sweep.py --grid /tmp/dev/grid10.json --dataset background_fmnist --out /tmp/dev/s10_bg_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s10_bg_r1.log 2>&1
$PY benchmarks/sweep.py --grid /tmp/dev/grid10.json --dataset background_fmnist --out /tmp/dev/s10_bg_ctl --jobs 1 --device cpu --data seed=1 --data bias_mode=independent > /tmp/dev/s10_bg_ctl.log 2>&1
$PY benchmarks/sweep.py --grid /tmp/dev/grid10c.json --dataset corrupted_fmnist --out /tmp/dev/s10_cor_ctl --jobs 1 --device cpu --data seed=1 --data bias_mode=independent > /tmp/dev/s10_cor_ctl.log 2>&1
