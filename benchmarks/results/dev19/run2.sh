#!/bin/bash
# DDB development runs (data seed 1): Colored FMNIST at 1%, then its no-bias control
cd /tmp/wt2
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt2/src
PY=/work/main/.venv/bin/python
$PY benchmarks/sweep.py --grid /tmp/dev/grid2.json --out /tmp/dev/s2_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s2_r1.log 2>&1
$PY benchmarks/sweep.py --grid /tmp/dev/grid2.json --out /tmp/dev/s2_ctl --jobs 1 --device cpu --data seed=1 --data bias_mode=independent > /tmp/dev/s2_ctl.log 2>&1
