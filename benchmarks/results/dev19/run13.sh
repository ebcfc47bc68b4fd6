#!/bin/bash
# after run11: DFR (oracle and on the CNN BA's pseudo-groups), data seed 1
while pgrep -f run11.sh > /dev/null; do sleep 20; done
cd /tmp/wt13
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt13/src
PY=/work/main/.venv/bin/python
for ds in colored_fmnist corrupted_fmnist background_fmnist; do
$PY benchmarks/sweep.py --grid /tmp/dev/grid13.json --dataset $ds --out /tmp/dev/s13_${ds}_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s13_${ds}_r1.log 2>&1
done
