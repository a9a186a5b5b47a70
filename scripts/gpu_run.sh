#!/usr/bin/env bash
# One call of the device tool (at most 8 minutes on one GPU): the speed benchmark, then the
# offline CIFAR-10 experiment. Prepare the carried folder first, on the development machine:
#
#   mkdir -p carry/wheels && cp ../shared/data/*.tar.xz carry/ \
#     && pip download pytorch-ood==0.4.0 --no-deps -d carry/wheels
#
# then: run(command="bash scripts/gpu_run.sh", carry=["carry"], timeout_s=480)
#
# The device returns at most 8 files from $OUT (none deeper than two folders), so this leaves
# seven there, also when a step fails: gpu.txt, benchmark.json, benchmark.log, offline.log,
# summary.json, the checkpoint (<arch>_cifar10_jpeg.pt) and store.tar.gz (the results store:
# records and per-sample scores). CARRY, BUDGET, BENCHMARK_ARGS and OFFLINE_ARGS change the
# defaults (a CPU dry run: tests/test_gpu_script.py).
set -euo pipefail
: "${OUT:?the device tool sets OUT}"
carry="${CARRY:-carry}"
work="$(mktemp -d)"

pack() {
  cp "$work"/summary.json "$work"/*.pt "$OUT"/ 2>/dev/null || true
  # scores and records (a few MB for 10k images a set); weights only as the pretrained checkpoint
  if [ -d "$work/store" ]; then tar --exclude=model.pt -czf "$OUT/store.tar.gz" -C "$work" store; fi
}
trap pack EXIT

if compgen -G "$carry/wheels/*.whl" >/dev/null; then
  python -m pip install --quiet --no-deps --no-index --target .pydeps "$carry"/wheels/*.whl
fi
export PYTHONPATH="$PWD:$PWD/.pydeps${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1 || true
# shellcheck disable=SC2086  # the argument strings are meant to split into words
timeout 150 python -m benchmarks.run --out "$OUT/benchmark.json" ${BENCHMARK_ARGS:-} 2>&1 \
  | tee "$OUT/benchmark.log" || echo "benchmark stopped early (see benchmark.log)"
# shellcheck disable=SC2086
python scripts/gpu_offline_cifar10.py --data "$carry" --out "$work" --budget "${BUDGET:-200}" \
  ${OFFLINE_ARGS:-} 2>&1 | tee "$OUT/offline.log"
