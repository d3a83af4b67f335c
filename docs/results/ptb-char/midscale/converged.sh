#!/usr/bin/env bash
# Run (or resume) the converged mid-scale studies (issue 26), then regenerate their reports and
# trial tables. Run from anywhere; everything lands in converged/ beside this script:
#
#   nohup docs/results/ptb-char/midscale/converged.sh >> docs/results/ptb-char/midscale/converged/run.log 2>&1 &
#
# The three specs promote the 26-epoch studies of midscale.db (same storage: a promoted study
# reads its source there) to an 80-epoch cap with early stopping and 3 seeds. Running it again
# resumes: finished trials are kept, interrupted runs continue from their checkpoints (Ctrl-C or
# SIGTERM stops it cleanly). STAGE=report skips training and only regenerates the outputs.
# STAGE=compare writes Table 1 (`zoneout-study compare`) with each selected configuration's test
# BPC: from its runs' checkpoints where they are on this machine, else by training it again
# (about an hour on 2 cores for the configurations without checkpoints).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../../.." && pwd)"
OUT="$HERE/converged"
mkdir -p "$OUT"
cd "$REPO"

export ZONEOUT_STUDY_STORAGE="${ZONEOUT_STUDY_STORAGE:-sqlite:///$HERE/midscale.db}"
export RAY_USAGE_STATS_ENABLED=0
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ZS="${ZONEOUT_STUDY:-zoneout-study}"
STAGE="${STAGE:-all}"

STUDIES=(ptb-char-converged-zoneout ptb-char-converged-recurrent-dropout ptb-char-converged-dropout)
read -r -a TO_RUN <<< "${STUDIES_TO_RUN:-${STUDIES[*]}}"

if [[ "$STAGE" == "compare" ]]; then
    echo "=== $(date -u +%FT%TZ) compare"
    "$ZS" compare "${STUDIES[@]}" --test auto-or-retrain --out "$OUT"
    exit 0
fi

if [[ "$STAGE" != "report" ]]; then
    for study in "${TO_RUN[@]}"; do
        echo "=== $(date -u +%FT%TZ) run $study"
        "$ZS" run "$HERE/$study.yaml" --no-report
    done
fi

echo "=== $(date -u +%FT%TZ) report and tables"
for study in "${STUDIES[@]}"; do
    "$ZS" status "$study" --csv "$OUT/$study-trials.csv"
    "$ZS" report "$study" --out "$OUT"
done
# The three studies' curves from epoch 10, where they differ (the README's first figure).
python "$OUT/late_curves.py"
echo "=== $(date -u +%FT%TZ) done"
