#!/usr/bin/env bash
# The GPU benchmarks of BENCHMARKS.md, in the order that answers issue 7's questions, each recording its block.
#
#   bash bench/gpu.sh                      # everything (~15 min on one H100)
#   bash bench/gpu.sh test e2e loader      # some steps: test e2e loader step compile overhead detection e2e-compile
#
# Needs CUDA and DALI (see README, "GPU"). PY picks the interpreter (default python3). A step that fails prints
# FAILED and the others still run; the exit status says whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DATA=${DATA:-/tmp/wmig-bench-jpegs}  # synthetic JPEGs, written once, shared by the steps
export PYTHONUNBUFFERED=1
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(test e2e loader step compile overhead detection e2e-compile)
failed=0

step() {  # name, command...
  echo "==== $1: ${*:2}"
  local t0=$SECONDS
  "${@:2}" || { echo "FAILED: $1"; failed=1; }
  echo "==== $1 took $((SECONDS - t0)) s"
}

for s in "${steps[@]}"; do
  case $s in
    test) step test "$PY" -m pytest -q -s tests/test_gpu.py ;;
    e2e) step e2e "$PY" bench/end_to_end.py --device cuda --sweep --data "$DATA" --record ;;
    loader) step loader "$PY" bench/loader.py --device gpu --images 8192 --batch-size 256 --rounds 1 --data "$DATA" --record ;;
    step) step step "$PY" bench/train_step.py --device cuda --compile off --record ;;
    compile) step compile "$PY" bench/train_step.py --device cuda --dtypes bf16 --channels-last on --compile on --record ;;
    overhead) step overhead "$PY" bench/train_overhead.py --device cuda --record ;;
    detection) step detection "$PY" bench/detection.py --device cuda --settings paper --record
               step detection_ops "$PY" bench/detection_ops.py --device cuda --record ;;
    e2e-compile) step e2e-compile "$PY" bench/end_to_end.py --device cuda --compile --sweep --sweep-threads 3 4 8 \
                   --sweep-hw 1.0 --sweep-fancy on off --prefetch 2 4 --data "$DATA" --record ;;
    *) echo "unknown step $s"; failed=1 ;;
  esac
done
exit $failed
