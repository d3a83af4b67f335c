#!/usr/bin/env bash
# Run (or resume) the mid-scale PTB-char studies, then regenerate their report, trial tables
# and Table 1. Run from anywhere; everything lands in this directory:
#
#   nohup docs/results/ptb-char/midscale/run.sh > docs/results/ptb-char/midscale/run.log 2>&1 &
#
# Running it again resumes: the service continues a study when the same spec is run on the
# same database (finished trials are kept, interrupted ones continue from their checkpoints),
# and a finished study is only re-reported. Set STAGE=report to skip training and only
# regenerate the outputs from midscale.db. `compare` reads each selected configuration's test
# metric from its best checkpoints in checkpoints/ (not committed) and retrains the seeds of
# a configuration whose checkpoints are not on this machine (COMPARE_TEST=auto-or-retrain, the
# default; =auto leaves those "not computed"; =retrain retrains every one).
# STUDIES_TO_RUN="a b" trains only those studies, in that order (the report covers all three).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../../.." && pwd)"
cd "$REPO"

# The specs' relative checkpoint paths resolve against their own directory (this one).
export ZONEOUT_STUDY_STORAGE="${ZONEOUT_STUDY_STORAGE:-sqlite:///$HERE/midscale.db}"
export RAY_USAGE_STATS_ENABLED=0
# One thread per trial, two trials at a time: the 2-core budget the README's arithmetic assumes.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ZS="${ZONEOUT_STUDY:-zoneout-study}"
STAGE="${STAGE:-all}"
COMPARE_TEST="${COMPARE_TEST:-auto-or-retrain}"

STUDIES=(ptb-char-midscale-figure3 ptb-char-midscale-recurrent-dropout ptb-char-midscale-dropout)
read -r -a TO_RUN <<< "${STUDIES_TO_RUN:-${STUDIES[*]}}"

if [[ "$STAGE" != "report" ]]; then
    for study in "${TO_RUN[@]}"; do
        echo "=== $(date -u +%FT%TZ) run $study"
        "$ZS" run "$HERE/$study.yaml" --no-report
    done
fi

echo "=== $(date -u +%FT%TZ) report and tables"
for study in "${STUDIES[@]}"; do
    "$ZS" status "$study" --csv "$HERE/$study-trials.csv"
    # Against the best configuration first (which neighbours can be told apart from it), then
    # the default report (against the unregularized point), whose figures optuna-dashboard keeps.
    "$ZS" report "$study" --out "$HERE/vs-best" --baseline best
    "$ZS" report "$study" --out "$HERE"
done
"$ZS" compare "${STUDIES[@]}" --test "$COMPARE_TEST" --out "$HERE"
echo "=== $(date -u +%FT%TZ) done"
