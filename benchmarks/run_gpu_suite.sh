#!/usr/bin/env bash
# On a GPU machine: install slade_ext for the local GPU, run the CUDA tests, then the benchmark suites on CUDA.
# Everything lands in $OUT (default ./gpu_out): build.log, cuda_tests.log, bench.json, bench.log, RESULTS_cuda.md.
#   bash benchmarks/run_gpu_suite.sh
# Knobs: PYTHON (python3), TEST_TIMEOUT / BENCH_TIMEOUT (s), TEST_K / BENCH_K (pytest -k expressions; the CUDA tests are the `cuda`-marked cases of tests/ext).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${OUT:-gpu_out}" && cd "${OUT:-gpu_out}" && pwd)
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

start=$(date +%s)
(cd "$repo" && $py -m pip install --no-build-isolation --no-deps . >"$out/build.log" 2>&1) || {
  tail -40 "$out/build.log"
  exit 1
}
echo "build: $(($(date +%s) - start)) s"
# Run from $out so that the installed package, not the source tree, is imported.
cd "$out"
$py -c "import slade_ext, json; print(json.dumps(slade_ext.build_info()))" | tee build_info.json

timeout "${TEST_TIMEOUT:-240}" $py -m pytest "$repo/tests/ext" -m cuda ${TEST_K:+-k "$TEST_K"} \
  -q -p no:cacheprovider --junitxml=cuda_tests.xml >cuda_tests.log 2>&1
echo "cuda tests exit $?: $(tail -1 cuda_tests.log)"

SLADE_BENCH_DEVICE=cuda SLADE_BENCH_MEMORY="$out/memory.json" timeout "${BENCH_TIMEOUT:-240}" \
  $py -m pytest "$repo/benchmarks" --benchmark-only --benchmark-json="$out/bench.json" -q -p no:cacheprovider \
  --timeout 60 -rfE ${BENCH_K:+-k "$BENCH_K"} >bench.log 2>&1
echo "benchmarks exit $?: $(tail -1 bench.log)"
[ -s bench.json ] && $py "$repo/benchmarks/make_results.py" bench.json:memory.json --out RESULTS_cuda.md
echo "total: $(($(date +%s) - start)) s"
