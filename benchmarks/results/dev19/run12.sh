#!/bin/bash
# after run10: the CNN-BA variant on the three no-bias controls (data seed 1)
while pgrep -f run10.sh > /dev/null; do sleep 20; done
cd /tmp/wt11
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt11/src
PY=/work/main/.venv/bin/python
for ds in background_fmnist corrupted_fmnist colored_fmnist; do
$PY benchmarks/sweep.py --grid /tmp/dev/grid11.json --dataset $ds --out /tmp/dev/s12_${ds}_ctl --jobs 1 --device cpu --data seed=1 --data bias_mode=independent > /tmp/dev/s12_${ds}_ctl.log 2>&1
done
