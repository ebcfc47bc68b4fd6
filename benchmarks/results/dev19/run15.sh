#!/bin/bash
# generator budget on Background FMNIST 1% (data seed 1): the recommended recipe with 1000 and 2000 generator steps (470: s11, 3000: s14)
cd /tmp/wtB
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wtB/src
PY=/work/main/.venv/bin/python
$PY benchmarks/sweep.py --grid /tmp/dev/grid15.json --dataset background_fmnist --out /tmp/dev/s15_bg_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s15_bg_r1.log 2>&1
