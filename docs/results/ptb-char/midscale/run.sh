#!/usr/bin/env bash
# Run (or resume) the mid-scale PTB-char studies, then regenerate their report, trial tables
# and Table 1. Run from anywhere; everything lands in this directory:
#
#   nohup docs/results/ptb-char/midscale/run.sh > docs/results/ptb-char/midscale/run.log 2>&1 &
#
# Running it again resumes: the service continues a study when the same spec is run on the
# same database (finished trials are kept, interrupted ones continue from their checkpoints),
# and a finished study is only re-reported. Set STAGE=report to skip training and only
# regenerate the outputs from midscale.db (compare then needs the checkpoints in checkpoints/,
# or falls back to "not computed"; COMPARE_TEST=retrain retrains the selected configurations).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../../.." && pwd)"
cd "$REPO"

# The specs give relative checkpoint paths: they resolve against the repository root.
export ZONEOUT_STUDY_STORAGE="${ZONEOUT_STUDY_STORAGE:-sqlite:///$HERE/midscale.db}"
export RAY_USAGE_STATS_ENABLED=0
# One thread per trial, two trials at a time: the 2-core budget the README's arithmetic assumes.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ZS="${ZONEOUT_STUDY:-zoneout-study}"
STAGE="${STAGE:-all}"
COMPARE_TEST="${COMPARE_TEST:-auto}"

STUDIES=(ptb-char-midscale-figure3 ptb-char-midscale-recurrent-dropout ptb-char-midscale-dropout)

if [[ "$STAGE" != "report" ]]; then
    for study in "${STUDIES[@]}"; do
        echo "=== $(date -u +%FT%TZ) run $study"
        "$ZS" run "$HERE/$study.yaml" --no-report
    done
fi

echo "=== $(date -u +%FT%TZ) report and tables"
for study in "${STUDIES[@]}"; do
    "$ZS" status "$study" --csv "$HERE/$study-trials.csv"
    "$ZS" report "$study" --out "$HERE"
done
"$ZS" compare "${STUDIES[@]}" --test "$COMPARE_TEST" --out "$HERE"
echo "=== $(date -u +%FT%TZ) done"
