#!/usr/bin/env bash
# The GPU measurements of the CIFAR-10 study in one command, for a machine with a CUDA GPU:
#
#   bash benchmarks/gpu_study.sh [OUT]            # OUT defaults to reference/study-full
#
# 1. benchmarks/airbench_speed.py: one airbench-style Nesterov run, course_lib's SGD and
#    torch.optim.SGD side by side: training time and test accuracy (target: >= 93% in <= 15 s
#    on an H100). Written to OUT/speed.txt; skipped when that file exists. SPEED_ARGS passes
#    options, e.g. SPEED_ARGS="--lr 0.2 0.4 0.8" for a learning-rate sweep.
# 2. The full study (python -m course_lib.study run --mode full): 7 optimizers x learning-rate
#    grid, then 3 seeds of each chosen rate. Every finished run is saved at once: after an
#    interruption (a job time limit, say) run this script again and it resumes.
# 3. Its summary table and figures (summary.md, summary.csv, curves.png, lr_sensitivity.png).
#
# Needs Python with torch (CUDA), numpy, matplotlib and tqdm (pooch only to download the
# official archive), and CIFAR-10 in the data directory (COURSE_DATA_DIR, default data/).
# The committed reference results in reference/study-full/ were made with this script.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reference/study-full}
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 COURSE_FAST=0

"$python" -c 'import torch, sys; torch.cuda.is_available() or sys.exit("no CUDA GPU here: this script measures the GPU study")'
mkdir -p "$out"
start=$(date +%s)
if [ ! -f "$out/speed.txt" ]; then
    # shellcheck disable=SC2086  # SPEED_ARGS is a list of options
    "$python" benchmarks/airbench_speed.py ${SPEED_ARGS:-} | tee "$out/speed.txt.partial"
    mv "$out/speed.txt.partial" "$out/speed.txt"
fi
study_start=$(date +%s)
"$python" -m course_lib.study run --mode full --out "$out" --no-progress
"$python" -m course_lib.study summary --out "$out"
end=$(date +%s)
echo "speed benchmark $((study_start - start)) s; study (this invocation) $((end - study_start)) s"
