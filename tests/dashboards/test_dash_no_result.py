"""Studies with too little to draw: every trial failed, every trial pruned, one trial, a mix.

The report is written all the same (the table of the trials that did not complete, with their
reasons, and the sentence saying why there is no figure), nothing raises, and every figure
function given too few points says so. First on synthetic frames, then through
``study.report.write_study_report`` and ``zoneout-study report`` on a real SQLite store with
its Optuna study.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

import dashboards as d
from dashboards import _figures as figures
from dashboards._gp import fit_gp, local_linear
from dashboards._model import fit_model
from dashboards._runs import EpochChoice
from dashboards._summary import MAX_TRIAL_ROWS
from dashboards._surface import response_surface

Frames = tuple[pd.DataFrame, pd.DataFrame]
BATCH = "ValueError: 2000 tokens are too few for batch size 4000; use a smaller batch_size"
INTERRUPTED = "interrupted: the driver stopped before the trial finished"
NO_FIGURE = "No figure: no trial completed"


def _failed(trials: pd.DataFrame, error: str = BATCH) -> pd.DataFrame:
    return trials.assign(state="FAIL", best_value=np.nan, final_value=np.nan, epochs=0, error=error)


def _report(trials: pd.DataFrame, epochs: pd.DataFrame, out: Path, **kw: object) -> d.ReportResult:
    # png=True: a study with nothing to draw must not even try the PNG export.
    return d.build_report(
        trials, epochs, study_name="tiny", metric="bpc", max_epochs=9, out_dir=out, **kw
    )  # type: ignore[arg-type]


def _html(result: d.ReportResult) -> str:
    return result.html_path.read_text(encoding="utf-8")


# ------------------------------------------------------------------ synthetic frames
def test_all_failed_writes_the_table_and_why_there_is_no_figure(
    make_frames, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(3, seed=1)
    result = _report(_failed(trials), epochs.iloc[0:0], tmp_path)
    assert result.figures == {} and result.png_paths == {}
    (message,) = result.messages
    assert message.startswith(f"{NO_FIGURE}: 3 failed")
    assert "figures need at least one trial that completed" in message
    html = _html(result)
    assert 'class="plotly-graph-div"' not in html
    assert "Trials (configurations): 3 (3 failed)." in html
    assert "No figure: no trial completed: 3 failed (see the table of trials)" in html
    assert "<h3>Trials that did not complete</h3>" in html
    for number in range(3):
        assert f"<td>{number}</td>\n<td>FAIL</td>\n<td>0</td>\n<td>{BATCH}</td>" in html
    summary = result.summary_path.read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert "| 0 | FAIL | 0 | ValueError: 2000 tokens" in summary
    assert result.analysis is not None and result.analysis.figures == ()


def test_failed_trials_with_epochs_get_their_learning_curves_only(
    make_frames, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(3, seed=1)
    failed = _failed(trials, "TrialDiverged: the loss became nan at epoch 3").assign(epochs=2)
    result = _report(failed, epochs[epochs["epoch"] <= 2], tmp_path, png=False)
    assert list(result.figures) == ["learning-curves"]
    (message,) = result.messages
    assert message.startswith("Learning curves only: no trial completed: 3 failed")
    assert "3 unfinished (dashed)" in result.figures["learning-curves"].layout.title.subtitle.text


def test_all_pruned_is_read_at_the_epoch_reached_and_says_so(make_frames, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(4, seed=5)
    pruned = trials.assign(state="PRUNED", epochs=1)
    result = _report(pruned, epochs[epochs["epoch"] == 1], tmp_path, png=False)
    assert "surface" in result.figures and "learning-curves" in result.figures
    (message,) = result.messages
    assert message.startswith("No trial completed: 4 pruned (see the table of trials)")
    assert "at epoch 1 of 9" in message and "not results at the full budget" in message
    html = _html(result)
    assert html.count("stopped early by the scheduler after epoch 1") == 4


def test_one_trial(make_frames, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(3, seed=1)
    one = _report(trials.iloc[:1], epochs[epochs["number"] == 0], tmp_path / "one", png=False)
    assert list(one.figures) == ["learning-curves"] and one.messages == []
    assert "Trials that did not complete" not in _html(one)
    assert "Trials (configurations): 1 (1 complete)." in _html(one)

    failed = _report(_failed(trials.iloc[:1]), epochs.iloc[0:0], tmp_path / "failed")
    assert failed.figures == {} and failed.messages[0].startswith(f"{NO_FIGURE}: 1 failed")

    # A table without per-epoch rows (`status --csv` of an old study): nothing to draw either.
    bare = _report(trials.iloc[:1], pd.DataFrame(), tmp_path / "bare", png=False)
    assert bare.figures == {}
    assert bare.messages == [
        "No figure: no numeric searched parameter took two values, and no per-epoch values "
        "were stored to draw learning curves from."
    ]


def test_mixed_failed_pruned_interrupted_and_running(make_frames, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(4, seed=1)
    mixed = trials.assign(
        state=["FAIL", "PRUNED", "FAIL", "RUNNING"],
        error=[BATCH, None, INTERRUPTED, None],
        retired=[None, None, "interrupted", None],
        epochs=[0, 1, 2, 1],
    )
    result = _report(mixed, epochs[epochs["epoch"] <= 2], tmp_path, png=False)
    a = result.analysis
    assert a is not None and a.outcomes is not None
    assert a.outcomes.counts == {
        "complete": 0,
        "pruned": 1,
        "failed": 1,
        "interrupted": 1,
        "running": 1,
    }
    assert list(a.outcomes.table["number"]) == [0, 1, 2, 3]
    assert list(a.outcomes.table["state"]) == ["FAIL", "PRUNED", "FAIL", "RUNNING"]
    reasons = list(a.outcomes.table["reason"])
    assert reasons[0] == BATCH and reasons[1] == "stopped early by the scheduler after epoch 1"
    assert reasons[2] == f"{INTERRUPTED} (the next run of the spec continues it)"
    assert reasons[3] == "running: no result yet"
    (message,) = result.messages
    assert message.startswith("No trial completed: 1 pruned, 1 failed, 1 interrupted, 1 running")
    assert a.outcomes.first_failure == (0, BATCH)


def test_retired_kinds_read_the_column_else_the_error_text_of_older_versions() -> None:
    cut = "cut off by the infrastructure: RayActorError: the actor died"
    frame = pd.DataFrame(
        {
            "number": [0, 1, 2, 3, 4, 5],
            "state": ["FAIL", "FAIL", "FAIL", "FAIL", "COMPLETE", "FAIL"],
            "error": [INTERRUPTED, "driver lost", cut, f"{INTERRUPTED} (disk full)", None, BATCH],
            "retired": [None, "driver_lost", "infrastructure", "interrupted", None, np.nan],
        }
    )
    # The column decides (an empty CSV cell reads as NaN: not retired), not the text: trial 0's
    # error is the service's, but the service did not retire it.
    assert list(d.retired_kinds(frame)) == [
        None, "driver_lost", "infrastructure", "interrupted", None, None
    ]  # fmt: skip
    # A table of an older version (no column): the text it wrote for a retired trial, on a FAIL
    # row, decides.
    older = frame.drop(columns="retired").assign(state=[*["FAIL"] * 4, "COMPLETE", "RUNNING"])
    assert list(d.retired_kinds(older)) == [
        "interrupted", "driver_lost", "infrastructure", "interrupted", None, None
    ]  # fmt: skip
    assert set(d.RETIRED_KINDS) == {"interrupted", "driver_lost", "infrastructure"}
    outcomes = d.analyze(older.assign(param_zoneout_cell=0.1), pd.DataFrame(), metric="bpc",
                         max_epochs=3).outcomes  # fmt: skip
    assert outcomes is not None and outcomes.counts["interrupted"] == 4
    assert outcomes.counts["complete"] == 1 and outcomes.counts["running"] == 1


def test_a_study_with_trials_that_completed_lists_only_the_failed_ones(
    study_frames: Frames, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = study_frames  # 60 runs, 30% pruned, one FAIL and one RUNNING
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=9, grace_period=1, reduction_factor=3)
    assert a.figure_note is None and "surface" in a.figures
    assert a.outcomes is not None and list(a.outcomes.table["state"]) == ["FAIL"]
    assert "| 60 | FAIL | 0 | CUDA out of memory |" in a.summary_markdown


def test_many_failures_are_capped_and_reasons_escaped(make_frames, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(MAX_TRIAL_ROWS + 5, seed=1)
    nasty = "RuntimeError: <script>alert(1)</script> | *not bold* `x`_y " + "z" * 300
    result = _report(_failed(trials, nasty), epochs.iloc[0:0], tmp_path, png=False)
    html = _html(result)
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<td>FAIL</td>") == MAX_TRIAL_ROWS
    assert "(5 more trials not listed.)" in html
    # Cut in the table, whole once below it: the first failure's error.
    assert "zzz...</td>" in html
    assert "The whole error of trial 0, the first to fail:" in html
    assert "z" * 300 in html


def test_a_study_with_no_trial_yet(make_frames, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(2, seed=1)
    result = _report(trials.iloc[0:0], epochs.iloc[0:0], tmp_path)
    assert result.figures == {} and result.messages == ["No figure: the study has no trial yet."]
    assert "Trials (configurations): 0 (none)." in _html(result)


# ------------------------------------------------------------------ too few points
def test_model_and_smoothers_with_too_few_points_say_so() -> None:
    epoch = EpochChoice(9, 9, 0, 0)
    empty = pd.DataFrame(columns=["param_zoneout_cell", "param_zoneout_hidden", "value"])
    fit = fit_model(empty, ["zoneout_cell", "zoneout_hidden"], epoch)
    assert fit.gp is None and fit.n_configs == 0 and fit.reason == "no run has a value to fit"
    assert fit.lo.shape == (2,) and np.isnan(fit.lo).all()
    one = pd.DataFrame({"param_zoneout_cell": [0.1], "param_zoneout_hidden": [0.2], "value": [1.5]})
    fit = fit_model(one, ["zoneout_cell", "zoneout_hidden"], epoch)
    assert fit.gp is None and "needs 8 distinct configurations" in fit.reason

    with pytest.raises(ValueError, match="at least one point, got none"):
        fit_gp(np.zeros((0, 2)), np.zeros(0))
    gp = fit_gp(np.array([[0.3]]), np.array([1.5]))  # one point: a flat posterior around it
    mean, sd = gp.predict(np.array([[0.3], [0.6]]))
    assert np.allclose(mean, 1.5) and np.isfinite(sd).all()
    with pytest.raises(ValueError, match="at least one point, got none"):
        local_linear(np.zeros(0), np.zeros(0), np.linspace(0, 1, 3))
    mean, sd = local_linear(np.array([0.3]), np.array([1.5]), np.linspace(0, 1, 3))
    assert np.allclose(mean, 1.5) and np.isfinite(sd).all()


def test_figure_functions_with_nothing_to_draw_say_so(make_frames) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_frames(3, seed=1)
    a = d.analyze(_failed(trials), epochs.iloc[0:0], metric="bpc", max_epochs=9)
    surface = response_surface(a.table, None, "zoneout_cell", "zoneout_hidden")
    drawn = {
        "surface": figures.plot_surface(surface, a.metric),
        "marginal": figures.plot_marginal(a.marginals["zoneout_cell"], a.metric, a.param_ranges),
        "differences": figures.plot_differences(a.table, a.metric),
        "learning-curves": figures.plot_learning_curves(a.curves, a.metric, a.param_ranges),
        "importance": figures.plot_importance(a.importance),
    }
    for name, fig in drawn.items():
        assert not fig.data, name
        (note,) = fig.layout.annotations
        assert note.text.startswith("nothing to draw: "), name
        assert fig.layout.title.subtitle.text, name
    assert "no configuration has a validation BPC" in drawn["surface"].layout.title.subtitle.text
    assert (
        drawn["importance"].layout.title.subtitle.text
        == "no Optuna study was given to read it from"
    )


def test_one_value_per_axis_gives_points_without_lattice_or_surface(make_grid) -> None:  # type: ignore[no-untyped-def]
    trials, epochs = make_grid(zc_values=(0.0,), zh_values=(0.05,), n_seeds=2)
    a = d.analyze(trials, epochs, metric="bpc", max_epochs=4)
    assert a.marginals == {}  # no parameter took two values
    surface = response_surface(a.table, None, "zoneout_cell", "zoneout_hidden")
    assert surface.lattice is None and surface.gp is None and len(surface.points) == 1
    fig = figures.plot_surface(surface, a.metric)
    assert len(fig.data) == 1 and "1 configuration, 2 seeds each" in fig.layout.title.subtitle.text
    # One configuration and its baseline are the same: no difference to draw.
    fig = figures.plot_differences(a.table, a.metric)
    assert fig.layout.annotations[0].text.startswith("nothing to draw")
    assert list(d.report_figures(a)) == ["learning-curves"]


# ------------------------------------------------------------------ a real store
DISTRIBUTIONS = {
    "zoneout_cell": FloatDistribution(0.0, 0.7),
    "zoneout_hidden": FloatDistribution(0.0, 0.3),
}


def _store(tmp_path: Path, name: str, rows: list[dict[str, object]]) -> str:
    """A SQLite store with its Optuna study: one trial per row (``state``, ``error``,
    ``epochs``: validation values per epoch), as a driver would have left it."""
    from study.store import Store
    from tests.support import tiny_ptb_spec

    url = f"sqlite:///{tmp_path / 'store.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=url)
    rng = np.random.default_rng(0)
    params = [
        {"zoneout_cell": float(rng.uniform(0, 0.7)), "zoneout_hidden": float(rng.uniform(0, 0.3))}
        for _ in rows
    ]
    for row, p in zip(rows, params, strict=True):
        curve = list(row.get("epochs", []))  # type: ignore[call-overload]
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState[str(row["state"])],
                params=p,
                distributions=DISTRIBUTIONS,
                value=min(curve) if row["state"] == "COMPLETE" else None,
                intermediate_values=dict(enumerate(curve, start=1)),
                user_attrs={"fail_reason": row["error"]} if row.get("error") else {},
            )
        )
    with Store.open(url) as store:
        store.register_study(
            name,
            spec=tiny_ptb_spec(name, tmp_path),
            versions={"python": "3"},
            direction="minimize",
            metric="bpc",
            optuna_study_id=study._study_id,
        )
        for number, (row, p) in enumerate(zip(rows, params, strict=True)):
            curve = list(row.get("epochs", []))  # type: ignore[call-overload]
            store.upsert_trial(
                name,
                number,
                state=str(row["state"]),
                params=p,
                seed=1,
                error=row.get("error"),
                retired=row.get("retired"),
                epochs=len(curve),
                best_value=min(curve) if curve else None,
            )
            for epoch, value in enumerate(curve, start=1):
                store.record_epoch(
                    name,
                    number,
                    epoch,
                    seed=1,
                    train_loss=value,
                    valid_loss=value,
                    valid_metric=value,
                    tokens_per_second=1e4,
                    seconds=1.0,
                )
    return url


STORE_CASES = {
    "all-failed": [{"state": "FAIL", "error": BATCH}] * 3,
    "all-pruned": [{"state": "PRUNED", "epochs": [3.1 + i / 10]} for i in range(3)],
    "one-trial": [{"state": "FAIL", "error": "TrialDiverged: the loss became nan at epoch 1"}],
    "mixed": [
        {"state": "FAIL", "error": BATCH},
        {"state": "PRUNED", "epochs": [3.2]},
        {"state": "FAIL", "error": INTERRUPTED, "retired": "interrupted"},
    ],
}
DRAWN = ("surface", "marginal-zoneout_cell", "marginal-zoneout_hidden", "learning-curves")
EXPECTED = {  # the sentence, rows in the table of trials, the figures
    "all-failed": ("No figure: no trial completed: 3 failed (see the table of trials)", 3, ()),
    "all-pruned": ("No trial completed: 3 pruned (see the table of trials)", 3, DRAWN),
    "one-trial": ("No figure: no trial completed: 1 failed (see the table of trials)", 1, ()),
    "mixed": ("No trial completed: 1 pruned, 1 failed, 1 interrupted (see the table", 3, DRAWN),
}


@pytest.mark.parametrize("case", list(STORE_CASES))
def test_report_of_a_stored_study_with_no_complete_trial(case: str, tmp_path: Path) -> None:
    from optuna_dashboard._note import get_note

    from study.report import write_study_report

    url = _store(tmp_path, case, STORE_CASES[case])
    result = write_study_report(url, case, tmp_path / "report", png=False)
    sentence, rows, drawn = EXPECTED[case]
    assert result.messages[0].startswith(sentence), result.messages
    assert tuple(result.figures) == drawn
    html = _html(result)
    assert sentence in html
    assert html.count('class="plotly-graph-div"') == len(drawn)
    assert html.count("<td>FAIL</td>") + html.count("<td>PRUNED</td>") == rows
    if drawn:  # read where the pruned runs stopped, and said so
        assert "at epoch 1 of 3" in result.messages[0]
    for row in STORE_CASES[case]:
        if row.get("error"):
            assert str(row["error"]) in html
    if case == "mixed":  # the service's own interruption is named, not counted as a failure
        assert f"{INTERRUPTED} (the next run of the spec continues it)" in html
    saved = "figures and summary" if result.figures else "summary (no figure)"
    assert result.messages[-1] == f"{saved} saved into the Optuna study {case!r} (optuna-dashboard)"
    note = get_note(optuna.load_study(study_name=case, storage=url))
    assert "Trials that did not complete" in note and sentence in note


def test_report_command_on_an_all_failed_study_exits_0_without_a_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from study.cli import app

    url = _store(tmp_path, "failing", STORE_CASES["all-failed"])
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["report", "failing", "--storage", url, "--out", str(out), "--no-png"]
    )
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert "No figure: no trial completed: 3 failed" in result.output
    html = (out / "failing-report.html").read_text(encoding="utf-8")
    assert "Trials that did not complete" in html and BATCH in html
