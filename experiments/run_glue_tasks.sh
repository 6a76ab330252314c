#!/usr/bin/env bash
# The committed results' runs: every phase of run_glue.py on the embedded MiniLM for
# the five GLUE tasks with shared data, one after another, resumable (re-run it after
# an interruption; finished phases are skipped). Logs: checkpoints/glue/<task>.log.
#   bash experiments/run_glue_tasks.sh [TASK ...]
# STS-B ran with the default 3 search epochs; the others with 5 (the top of the
# paper's 3-5 range), since r moves about LR_SOFT_EXTRACT per step.
set -u
cd "$(dirname "$0")/.."
mkdir -p checkpoints/glue
for task in "${@:-CoLA MRPC RTE SST-2}"; do
  for t in $task; do
    start=$(date +%s)
    PYTHONUNBUFFERED=1 .venv/bin/python run_glue.py --task="$t" --phase=all --search_epochs=5 \
      --output_dir=checkpoints/glue --resume >> "checkpoints/glue/$t.log" 2>&1
    echo "$t rc=$? seconds=$(( $(date +%s) - start ))" >> checkpoints/glue/progress.txt
  done
done
