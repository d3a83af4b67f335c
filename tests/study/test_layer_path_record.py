"""Which recurrent layer path each run took, recorded per trial (issue 21): the searcher takes it
from the trainable's reports into Optuna's user attributes and the store's ``zs_runs``;
``status`` and the report's summary say it below the table, once; a study without it (a
database from before) prints what it printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from dashboards import Col, layer_path_lines, layer_paths
from dashboards._summary import layer_path_line
from study import keys
from study.cli import app
from study.optuna_study import open_study
from study.searcher import OptunaSearcher
from study.space import build_sampler
from study.spec import validate_spec
from study.store import RunRecord, Store
from trials.trainable import LAYER_FALLBACK_KEY, LAYER_PATH_KEY, report_keys

OFF = "the CPU extension is turned off (ZONEOUT_CPU_EXTENSION=0)"


def _spec() -> Any:
    return validate_spec(
        {
            "name": "paths",
            "base": {"task": "digits", "hidden_size": 8, "epochs": 2, "seed": 10},
            "search": {"zoneout_cell": {"type": "float", "low": 0.1, "high": 0.5}},
            "n_trials": 1,
            "repeats": 2,
            "sampler": {"name": "random", "seed": 0},
        }
    )


def test_every_report_names_the_layer_path() -> None:
    assert {LAYER_PATH_KEY, LAYER_FALLBACK_KEY} <= set(report_keys())


def test_the_searcher_records_each_seeds_path_and_fallback(tmp_path: Path) -> None:
    spec = _spec()
    study = open_study(f"sqlite:///{tmp_path / 's.db'}", spec.name, build_sampler(spec))
    searcher = OptunaSearcher(study, spec, driver_id="test:1:1")
    assert searcher.suggest("ray-0") is not None and searcher.suggest("ray-1") is not None
    reports = {
        "ray-0": {LAYER_PATH_KEY: "cpu_extension", LAYER_FALLBACK_KEY: None},
        "ray-1": {LAYER_PATH_KEY: "fused", LAYER_FALLBACK_KEY: OFF},
    }
    for trial_id, paths in reports.items():
        result: dict[str, Any] = {}
        for epoch, value in enumerate([0.9, 0.8], start=1):
            result = {"epoch": epoch, "valid_metric": value, "node": "n", **paths}
            searcher.on_trial_result(trial_id, result)
        searcher.on_trial_complete(trial_id, result=result)
    outcome = searcher.outcome(0)
    assert outcome is not None
    assert [(r.layer_path, r.layer_fallback) for r in outcome.runs] == [
        ("cpu_extension", None),
        ("fused", OFF),
    ]
    # The store keeps the paths (zs_runs); Optuna's rows, read by every driver's start-up, not.
    assert keys.LAYER_PATHS not in study.get_trials()[0].user_attrs


def _runs(paths: list[str | None], fallbacks: list[str | None] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            Col.NUMBER: range(len(paths)),
            Col.SEED: 0,
            Col.ENDED: "budget",
            Col.LAYER_PATH: paths,
            Col.LAYER_FALLBACK: fallbacks or [None] * len(paths),
        }
    )


@pytest.mark.parametrize(
    ("paths", "fallbacks", "status"),
    [
        (["cpu_extension"] * 3, None, ["every run used the cpu_extension layer path"]),
        (["fused", "fused"], [OFF, OFF],
         ["every run used the fused layer path", f"layer path fallback (every run): {OFF}"]),
        (["cpu_extension", "cpu_extension", "fused"], [None, None, OFF],
         ["warning: runs used different layer paths: 2 cpu_extension, 1 fused",
          f"layer path fallback (1 run): {OFF}"]),
        (["cpu_extension", "nn_lstm", "cpu_extension (eval nn_lstm)"], None,
         ["runs used the layer paths 1 cpu_extension, 1 nn_lstm, 1 cpu_extension (eval nn_lstm) "
          "(nn_lstm: no rate to apply, nn.LSTM's own kernel)"]),
        (["triton", None], None, ["1 run used the triton layer path (1 recorded none)"]),
        ([None, None], None, []),
    ],
)  # fmt: skip
def test_the_lines_below_the_table_and_in_the_summary(
    paths: list[str | None], fallbacks: list[str | None] | None, status: list[str]
) -> None:
    runs = _runs(paths, fallbacks)
    assert layer_path_lines(layer_paths(runs)) == status
    # The report's summary says the same, in one sentence.
    summary = "Layer path: " + "; ".join(status) + "." if status else None
    assert layer_path_line(runs) == summary


def test_a_runs_frame_without_the_column_says_nothing() -> None:
    runs = _runs(["cpu_extension"]).drop(columns=[Col.LAYER_PATH, Col.LAYER_FALLBACK])
    assert layer_paths(runs) is None and layer_path_line(runs) is None
    assert layer_path_line(None) is None


def _status(url: str) -> str:
    result = CliRunner().invoke(app, ["status", "s", "--storage", url], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_status_says_the_path_once_below_the_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'status.db'}"
    with Store.open(url) as store:
        store.register_study("s", spec={}, versions={}, direction="minimize", metric="bpc")
        for number in (0, 1):
            store.upsert_trial("s", number, state="COMPLETE", best_value=1.0, epochs=2, node="a")
    before = _status(url)
    assert "layer path" not in before  # no run recorded one: the output is as it was
    with Store(url) as store:
        for number in (0, 1):
            store.record_runs("s", number, [RunRecord(0, "budget", 2, 2, 1.0)])
    assert _status(url) == before
    with Store(url) as store:
        for number in (0, 1):
            record = RunRecord(0, "budget", 2, 2, 1.0, layer_path="fused", layer_fallback=OFF)
            store.record_runs("s", number, [record])
    after = _status(url)
    assert after.startswith(before.rstrip("\n").rsplit("\n", 1)[0])  # the same table
    assert after.splitlines()[-2:] == [
        "every run used the fused layer path",
        f"layer path fallback (every run): {OFF}",
    ]
