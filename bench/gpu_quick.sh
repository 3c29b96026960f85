#!/usr/bin/env bash
# The GPU check for a short GPU loan (issue 19), meant to take under 6 minutes on one H100/H200 once DALI is installed
# (../shared/GPU.md says how to bring DALI to such a machine); its time has not been measured yet, as no GPU has been
# lent since it was written. Each step records its block in BENCHMARKS.md; the end prints one summary against
# issue 19's targets.
#
#   bash bench/gpu_quick.sh                 # PY=python3, logs in $LOGS (default /tmp/wmig-gpu-quick)
#
# Steps, the short ones first so that a loan that ends early still leaves figures: tests/test_gpu.py; the detection
# ops against torchvision's (bench/detection_ops.py: detection.nms runs torchvision's on a GPU); Faster R-CNN and
# R*CNN at the paper's setting (bench/detection.py); AlexNet and ResNet-50 end to end with their decode and compute
# ceilings, on the JPEGs and on the copy data_dali.py prepare makes for each (bench/end_to_end.py --prepared), with
# the float and the uint8 hand-over. A step that fails prints FAILED and the others still run; the exit status says
# whether any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
DATA=${DATA:-/tmp/wmig-bench-jpegs}  # synthetic JPEGs, written once and shared with bench/gpu.sh
LOGS=${LOGS:-/tmp/wmig-gpu-quick}
export PYTHONUNBUFFERED=1
mkdir -p "$LOGS"
failed=0

step() {  # name, command...: its output goes to the screen and to $LOGS/name.log
  echo "==== $1: ${*:2}"
  local t0=$SECONDS
  "${@:2}" 2>&1 | tee "$LOGS/$1.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "FAILED: $1"; failed=1; }
  echo "==== $1 took $((SECONDS - t0)) s"
}

step test "$PY" -m pytest -q tests/test_gpu.py
step detection_ops "$PY" bench/detection_ops.py --device cuda --record
step detection "$PY" bench/detection.py --device cuda --settings paper --models faster-rcnn rstar-cnn --record
# hw_decoder_load 1.0 and 16 threads: the fastest decode setting of the first round (BENCHMARKS.md, "GPU summary").
# AlexNet with both hand-overs (DALI's normalisation against torch's inside the compiled model), then with CUDA graphs
# (torch.compile mode reduce-overhead) on the uint8 hand-over; ResNet-50 as train.py runs it by default.
E2E=(bench/end_to_end.py --device cuda --compile --prepared --hw-decoder-load 1.0 --workers 16 --iters 120 --decode-epochs 2
     --data "$DATA" --record)
step e2e_alexnet "$PY" "${E2E[@]}" --arch alexnet --hand-over float uint8
step e2e_alexnet_graphs "$PY" "${E2E[@]}" --arch alexnet --hand-over uint8 --compile-mode reduce-overhead
step e2e_resnet50 "$PY" "${E2E[@]}" --arch resnet50

"$PY" - "$LOGS" <<'EOF'
"""One table: issue 19's targets beside this run's figures, read from the steps' printed tables."""
import os
import sys

logs = sys.argv[1]


def rows(name):
    path = os.path.join(logs, f'{name}.log')
    lines = open(path).read().splitlines() if os.path.exists(path) else []
    return [[c.strip().strip('*') for c in l.strip('|').split('|')] for l in lines if l.startswith('| ') and '---' not in l]


out = ['| what | target | measured |', '| --- | --- | --- |']
for name in ('e2e_alexnet', 'e2e_alexnet_graphs', 'e2e_resnet50'):
    for r in rows(name):  # arch, JPEGs, hand-over, batch, autocast, compile, prefetch, decode, compute, e2e, wait, ratio
        if r[0] == 'alexnet':
            out.append(f'| AlexNet end to end ({r[1]}, {r[2]}, compile {r[5]}) | >= 0.90 of min(decode, compute) | '
                       f'{r[11]} ({r[9]} images/s; ceilings {r[7]} / {r[8]}) |')
        elif r[0] == 'resnet50':
            out.append(f'| ResNet-50 data wait ({r[1]}, {r[2]}) | < 5% | {r[10]} ({r[9]} images/s) |')
for r in rows('detection'):
    if r[:3] == ['faster-rcnn', 'paper', 'train']:
        out.append(f'| Faster R-CNN, paper setting | >= 19.4 it/s | {r[8]} it/s (proposal layer {r[9]}) |')
print('\n'.join(out))
if len(out) > 2:
    from bench.common import git_sha, gpu_description, record
    import datetime
    record('## GPU quick check: issue 19\'s targets', 'Written by `bash bench/gpu_quick.sh` (the steps\' own blocks are in '
           'their sections).', '`bash bench/gpu_quick.sh`',
           f'### `bash bench/gpu_quick.sh`\n\n{datetime.date.today().isoformat()}; git {git_sha()}; {gpu_description()}.\n\n'
           + '\n'.join(out) + '\n')
EOF
exit $failed
