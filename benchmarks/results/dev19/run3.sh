#!/bin/bash
# after run2: corrupted and background FMNIST at 1% and their controls (data seed 1)
while pgrep -f run2.sh > /dev/null; do sleep 20; done
cd /tmp/wt3
export OMP_NUM_THREADS=1 PYTHONPATH=/tmp/wt3/src
PY=/work/main/.venv/bin/python
for ds in corrupted_fmnist background_fmnist; do
  $PY benchmarks/sweep.py --grid /tmp/dev/grid3.json --dataset $ds --out /tmp/dev/s3_${ds}_r1 --jobs 1 --device cpu --data seed=1 > /tmp/dev/s3_${ds}_r1.log 2>&1
  $PY benchmarks/sweep.py --grid /tmp/dev/grid3.json --dataset $ds --out /tmp/dev/s3_${ds}_ctl --jobs 1 --device cpu --data seed=1 --data bias_mode=independent > /tmp/dev/s3_${ds}_ctl.log 2>&1
done
