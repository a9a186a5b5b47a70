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
# records and per-sample scores). The offline experiment must end CALL_LIMIT seconds into the
# call (465: under the 480 of timeout_s, with time to pack): it shortens pretraining to leave
# time for fine-tuning and scoring, and if it is still too slow it is stopped and returns what
# finished (summary.json is written after each protocol). CARRY, BUDGET, CALL_LIMIT,
# OFFLINE_LIMIT, BENCHMARK_ARGS and OFFLINE_ARGS change the defaults (a CPU dry run: tests/test_gpu_script.py).
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
left=$(( ${CALL_LIMIT:-465} - SECONDS ))
# OFFLINE_LIMIT: the offline experiment's own limit when shorter (a test's budget, which does
# not shrink with how long the benchmark took on a loaded machine)
if [ -n "${OFFLINE_LIMIT:-}" ] && [ "$OFFLINE_LIMIT" -lt "$left" ]; then left=$OFFLINE_LIMIT; fi
if [ "$left" -lt 10 ]; then
  echo "no time left for the offline experiment (${left} s of CALL_LIMIT)" | tee "$OUT/offline.log"
  exit 124
fi
status=0
# shellcheck disable=SC2086
timeout "$left" python scripts/gpu_offline_cifar10.py --data "$carry" --out "$work" \
  --budget "${BUDGET:-200}" --deadline $((left - 10)) ${OFFLINE_ARGS:-} 2>&1 \
  | tee "$OUT/offline.log" || status=$?
if [ "$status" -eq 124 ]; then
  echo "stopped at the call's deadline (${left} s for the offline experiment): what finished is in summary.json" \
    | tee -a "$OUT/offline.log"
fi
exit "$status"
