#!/usr/bin/env bash
# The README's "Search small, then promote" example, as it ran for this directory: the
# quickstart (4 epochs), then its top 4 configurations (and the unregularized point) promoted to
# 12 epochs with early stopping (patience 2), 3 seeds each, then the promoted study's report.
# Everything lands in this directory (checkpoints under runs/, not committed):
#
#   docs/results/ptb-char/ladder/run.sh > docs/results/ptb-char/ladder/run.log 2>&1
#
# STAGE=report only regenerates the report and tables from ladder.db.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../../.." && pwd)"
cd "$HERE"
export ZONEOUT_STUDY_STORAGE="sqlite:///$HERE/ladder.db" RAY_USAGE_STATS_ENABLED=0
ZS="${ZONEOUT_STUDY:-$REPO/.venv/bin/zoneout-study}"
if [[ "${STAGE:-all}" != "report" ]]; then
    "$ZS" run "$HERE/quickstart.yaml" --no-report
    "$ZS" promote quickstart --top 4 --point zoneout_cell=0,zoneout_hidden=0 \
        --set epochs=12 --set patience=2 --repeats 3 --out quickstart-big.yaml
    "$ZS" run quickstart-big.yaml --no-report
fi
"$ZS" report quickstart-promoted --out "$HERE"
"$ZS" status quickstart-promoted --csv "$HERE/quickstart-promoted-trials.csv"
"$ZS" status quickstart --csv "$HERE/quickstart-trials.csv"
