#!/usr/bin/env bash
# One call of the device tool (at most 8 minutes on one GPU): the speed benchmark, then the
# offline CIFAR-10 experiment. Prepare the carried folder first, on the development machine:
#
#   mkdir -p carry/wheels && cp ../shared/data/*.tar.xz carry/ \
#     && pip download pytorch-ood==0.4.0 --no-deps -d carry/wheels
#
# then: run(command="bash scripts/gpu_run.sh", carry=["carry"], timeout_s=480)
set -euo pipefail
: "${OUT:?the device tool sets OUT}"
python -m pip install --quiet --no-deps --no-index --target .pydeps carry/wheels/*.whl
export PYTHONPATH="$PWD:$PWD/.pydeps"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" || true
timeout 150 python -m benchmarks.run --out "$OUT/benchmark.json" 2>&1 | tee "$OUT/benchmark.log" \
  || echo "benchmark stopped early (see benchmark.log)"
python scripts/gpu_offline_cifar10.py --data carry --out "$OUT" --budget "${BUDGET:-200}" \
  2>&1 | tee "$OUT/offline.log"
