#!/usr/bin/env bash
# The GPU checks, as one prepared run on a lent CUDA machine (docs/benchmarks.md, GPU section):
#   bash scripts/gpu_check.sh [suite] [bench] [sysid]      (default: all three)
# suite: the whole test suite with CuPy visible (xdist), then the failures again one process;
# bench: scripts/bench_timing.py --backend cupy (uncaptured and CUDA-graph passes);
# sysid: Bouc-Wen epochs of `r2dn sysid --backend cupy`, with and without CUDA graphs.
# Logs and CSVs go to $OUT (or runs/gpu). Wheels for packages the machine lacks may sit in .whl/.
# Section time limits come from SUITE_S, BENCH_S, SYSID_S (seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-runs/gpu}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 R2DN_HYPOTHESIS=ci
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PATH="/tmp/site/bin:$PATH"
sections="${*:-suite bench sysid}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import sys, numpy, cupy, array_api_compat; print(sys.version.split()[0], 'numpy', numpy.__version__,
'cupy', cupy.__version__, 'array_api_compat', array_api_compat.__version__, 'CUDA runtime',
cupy.cuda.runtime.runtimeGetVersion())"
} 2>&1 | tee "$out/machine.txt"

for s in $sections; do
    start=$(date +%s)
    case "$s" in
    suite)
        # The CuPy cases first (ids with "cupy", and test_graph.py), then the rest: the part only a GPU
        # can run is done even if the time limit cuts the second run. -v names every test as it
        # finishes, so a run cut short still says which failed.
        for part in gpu rest; do
            if [ "$part" = gpu ]; then sel=(-k "cupy or test_graph"); else sel=(-k "not cupy and not test_graph"); fi
            timeout "${SUITE_S:-420}" python3 -m pytest -v -p no:randomly -p no:benchmark -n "${WORKERS:-14}" -rfE \
                --tb=short --junitxml="$out/suite_$part.xml" "${sel[@]}" > "$out/suite_$part.log" 2>&1
            echo "== suite, $part: $(grep -cE ' PASSED ' "$out/suite_$part.log") passed, $(grep -cE ' SKIPPED ' \
                "$out/suite_$part.log") skipped, $(grep -cE ' (FAILED|ERROR) ' "$out/suite_$part.log") failed or errors"
            tail -2 "$out/suite_$part.log"
        done
        cat "$out"/suite_gpu.log "$out"/suite_rest.log > "$out/suite.log"
        failed=$(grep -oE '(FAILED|ERROR) tests/[^ ]+' "$out/suite.log" | awk '{print $2}' | sort -u | head -40)
        echo "$failed"
        if [ -n "$failed" ]; then
            echo "== again in one process: $(echo "$failed" | wc -l) tests"
            # shellcheck disable=SC2086
            timeout 120 python3 -m pytest -q -p no:benchmark -rfE --tb=long $failed 2>&1 | tee "$out/suite_again.log" | tail -60
        fi
        ;;
    bench)
        timeout "${BENCH_S:-200}" python3 scripts/bench_timing.py --backend cupy --quick --repeats "${REPEATS:-5}" \
            --ren-widths "${REN_WIDTHS:-20,60,200}" --out "$out/timing_gpu" 2>&1 | tee "$out/bench.log"
        ;;
    sysid)
        for g in 1 0; do
            R2DN_CUDA_GRAPHS=$g timeout "${SYSID_S:-120}" python3 -m r2dn_np sysid --dataset boucwen --preset quick \
                --epochs "${EPOCHS:-3}" --backend cupy --out "/tmp/sysid_g$g" --overwrite 2>&1 | tee "$out/sysid_graphs$g.log" | grep -E "epoch|RMSE|error" | head -8
        done
        ;;
    esac
    echo "== $s: $(( $(date +%s) - start )) s"
done
