"""`zoneout-study compare`: Table 1 with seed-paired differences, from stored studies or from the
committed PTB-char tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from dashboards import Comparison, MethodResult
from study.cli import app
from study.compare import CompareError, HeldOutMetric, compare_studies

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "ptb-char"
GRID = str(RESULTS / "ptb-char-sensitivity-trials.csv")
RD = str(RESULTS / "ptb-char-recurrent-dropout-trials.csv")


def test_table_1_of_the_committed_ptb_char_studies(tmp_path: Path) -> None:
    result = compare_studies(
        [GRID, RD], storage_url=None, out_dir=tmp_path, test=HeldOutMetric.NONE, png=False
    )
    rows = {r.method: r for r in result.comparison.rows}
    assert list(rows) == ["unregularized", "zoneout", "recurrent dropout"]
    assert rows["unregularized"].config == {"zoneout_cell": 0.0, "zoneout_hidden": 0.0}
    # zoneout is selected among its non-zero settings, on validation only.
    assert rows["zoneout"].config == {"zoneout_cell": 0.25, "zoneout_hidden": 0.0}
    assert rows["zoneout"].n_configs == 11
    assert rows["recurrent dropout"].config == {"recurrent_dropout": 0.25}
    diff = result.comparison.differences["recurrent dropout"]
    assert diff.n == 2 and diff.mean == pytest.approx(2.8708 - 2.6955, abs=1e-3)
    md = result.markdown
    assert "| recurrent dropout | recurrent_dropout=0.25" in md
    assert "+0.1753 (n = 2:" in md and "95%" not in md.split("\n- ")[0].split("|")[-2]
    (pair,) = result.comparison.pairs
    assert (pair.first, pair.second) == ("zoneout", "recurrent dropout") and pair.test is None
    assert pair.valid.mean == pytest.approx(rows["zoneout"].valid.mean - 2.8708, abs=1e-3)
    assert "| zoneout | recurrent dropout | -0.14" in md

    from dashboards._compare import comparison_figure

    tables = [t for t in comparison_figure(result.comparison).data if t.type == "table"]
    assert len(tables) == 2
    assert list(tables[1].cells.values[0]) == ["zoneout minus recurrent dropout"]
    assert (tmp_path / "compare-ptb-char-sensitivity-vs-ptb-char-recurrent-dropout.html").is_file()


def test_named_baseline_and_unknown_baseline(tmp_path: Path) -> None:
    result = compare_studies(
        [GRID, RD],
        storage_url=None,
        out_dir=tmp_path,
        baseline="ptb-char-recurrent-dropout",
        test=HeldOutMetric.NONE,
        png=False,
    )
    assert result.comparison.baseline == "recurrent dropout"
    assert result.comparison.differences["zoneout"].mean < 0
    with pytest.raises(CompareError, match="names no method"):
        compare_studies(
            [GRID],
            storage_url=None,
            out_dir=tmp_path,
            baseline="nope",
            test=HeldOutMetric.NONE,
            png=False,
        )


def test_cli_prints_table_1(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["compare", GRID, RD, "--out", str(tmp_path), "--no-png", "--test", "none"]
    )
    assert res.exit_code == 0, res.output
    assert "## Table 1: BPC by method" in res.output
    assert "Δ validation vs unregularized" in res.output
    bad = CliRunner().invoke(app, ["compare", GRID, "--test", "sometimes", "--no-png"])
    assert bad.exit_code == 2 and "--test must be one of" in bad.output


def test_one_study_split_by_its_categorical_regularizer(tmp_path: Path) -> None:
    """A study searching `regularizer` gives one Table 1 row per value, paired by seed."""
    rows, epochs = [], []
    truth = {"none": 2.0, "zoneout": 1.9, "recurrent_dropout": 1.95}
    number = 0
    for method, value in truth.items():
        for rate in (0.1, 0.2):
            rows.append(
                {
                    "study": "mixed",
                    "number": number,
                    "state": "COMPLETE",
                    "param_regularizer": method,
                    "param_rate": rate,
                }
            )
            for seed, shift in enumerate((0.0, 0.05, -0.03)):
                for epoch in (1, 2):
                    v = value + rate / 10 + shift + (0.3 if epoch == 1 else 0.0)
                    epochs.append(
                        {
                            "study": "mixed",
                            "number": number,
                            "seed": seed,
                            "epoch": epoch,
                            "valid_metric": v,
                        }
                    )
            number += 1
    table = tmp_path / "mixed-trials.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    pd.DataFrame(epochs).to_csv(tmp_path / "mixed-trials.epochs.csv", index=False)
    result = compare_studies(
        [str(table)],
        storage_url=None,
        out_dir=tmp_path,
        baseline="none",
        test=HeldOutMetric.NONE,
        png=False,
    )
    rows_by = {r.method: r for r in result.comparison.rows}
    assert set(rows_by) == set(truth)
    assert all(r.config == {"rate": 0.1} for r in rows_by.values())
    diff = result.comparison.differences["zoneout"]
    # The seed shifts cancel in the pairing: the difference is exact, a zero-width interval.
    assert diff.n == 3 and diff.mean == pytest.approx(-0.1) and diff.high - diff.low < 1e-9


def test_report_cli_reads_a_committed_table_with_a_named_baseline(tmp_path: Path) -> None:
    table = str(RESULTS / "overfit" / "ptb-char-overfit-trials.csv")
    res = CliRunner().invoke(
        app, ["report", table, "--out", str(tmp_path), "--no-png", "--baseline", "1"]
    )
    assert res.exit_code == 0, res.output
    summary = (tmp_path / "ptb-char-overfit-summary.md").read_text(encoding="utf-8")
    assert "trial 1's configuration (named by the user)" in summary
    # Importance from the spec's own distributions, refused with its reason at 6 trials.
    assert "needs at least 20 complete trials, the study has 6" in summary
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope-trials.csv")])
    assert missing.exit_code == 2 and "no such table" in missing.output


@pytest.mark.ray
@pytest.mark.slow
def test_test_metric_from_checkpoints_and_by_retraining(
    sqlite_url: str, ray_local: None, tmp_path: Path
) -> None:
    """The test column of a real Table 1: read from each seed's best checkpoint, or retrained
    (which must reproduce both the stored validation and the checkpoint's test value exactly),
    paired by seed against the baseline and between methods."""
    from study.runner import run_study
    from study.spec import validate_spec
    from tests.support import tiny_ptb_spec

    grid = tiny_ptb_spec(
        "cmp-zoneout",
        tmp_path / "zoneout",
        search={"zoneout_cell": {"type": "categorical", "choices": [0.0, 0.3]}},
        sampler={"name": "grid", "seed": 0},
        n_trials=2,
        repeats=2,
    )
    rd = tiny_ptb_spec(
        "cmp-rd",
        tmp_path / "rd",
        search={"recurrent_dropout": {"type": "categorical", "choices": [0.2]}},
        sampler={"name": "grid", "seed": 0},
        n_trials=1,
        repeats=2,
    )
    for data in (grid, rd):
        assert run_study(validate_spec(data), storage=sqlite_url).status == "finished"
    names = ["cmp-zoneout", "cmp-rd"]

    def table(mode: HeldOutMetric) -> Comparison:
        out = tmp_path / mode.value
        return compare_studies(
            names, storage_url=sqlite_url, out_dir=out, test=mode, png=False
        ).comparison

    def by_method(comparison: Comparison) -> dict[str, MethodResult]:
        return {r.method: r for r in comparison.rows}

    auto = table(HeldOutMetric.AUTO)
    rows = by_method(auto)
    assert list(rows) == ["unregularized", "zoneout", "recurrent dropout"]
    tests: dict[str, list[float]] = {}
    for method, row in rows.items():
        assert row.test_source == "best checkpoint of each of 2 seeds"
        assert row.test is not None and row.test_by_seed is not None
        assert list(row.test_by_seed.index) == list(row.valid_by_seed.index) == [1, 2]
        assert 1.0 < row.test.mean < 7.0  # BPC of a tiny model: below uniform's 5.6-ish
        tests[method] = row.test_by_seed.tolist()
    to_base = [z - b for z, b in zip(tests["zoneout"], tests["unregularized"], strict=True)]
    assert list(auto.test_differences["zoneout"].values) == pytest.approx(to_base, abs=1e-12)
    (pair,) = auto.pairs
    assert (pair.first, pair.second) == ("zoneout", "recurrent dropout")
    between = [z - r for z, r in zip(tests["zoneout"], tests["recurrent dropout"], strict=True)]
    assert pair.test is not None
    assert list(pair.test.values) == pytest.approx(between, abs=1e-12)

    for method, row in by_method(table(HeldOutMetric.RETRAIN)).items():
        assert row.test_source.endswith("validation reproduced exactly"), row.test_source
        assert row.test_by_seed is not None and row.test_by_seed.tolist() == tests[method]

    # Without the recurrent-dropout study's checkpoints: auto says so, auto-or-retrain retrains
    # that method only and gets the same numbers.
    shutil.rmtree(tmp_path / "rd" / "runs")
    partial = table(HeldOutMetric.AUTO)
    missing = by_method(partial)["recurrent dropout"]
    assert missing.test is None and "no checkpoints here" in missing.test_source
    assert "recurrent dropout" not in partial.test_differences
    md = (tmp_path / "auto" / "compare-cmp-zoneout-vs-cmp-rd.md").read_text(encoding="utf-8")
    assert "| zoneout | recurrent dropout |" in md and "Δ test vs unregularized" in md
    mixed = by_method(table(HeldOutMetric.AUTO_OR_RETRAIN))
    assert mixed["zoneout"].test_source.startswith("best checkpoint")
    retrained_rd = mixed["recurrent dropout"]
    assert retrained_rd.test_source.startswith("retrained")
    assert retrained_rd.test_by_seed is not None
    assert retrained_rd.test_by_seed.tolist() == tests["recurrent dropout"]


def test_report_against_the_best_configuration(tmp_path: Path) -> None:
    """`report --baseline best`: paired differences to the validation-best configuration (the
    committed 4-epoch grid's best is the unregularized point, trial 10 of its table)."""
    res = CliRunner().invoke(
        app, ["report", GRID, "--out", str(tmp_path), "--no-png", "--baseline", "best"]
    )
    assert res.exit_code == 0, res.output
    summary = (tmp_path / "ptb-char-sensitivity-summary.md").read_text(encoding="utf-8")
    assert "Baseline for seed-paired differences: trial 10's configuration" in summary
    assert "| 0 | 0 | 2.6955 (n = 2: 2.6893, 2.7017) | baseline |" in summary
    bad = CliRunner().invoke(app, ["report", GRID, "--no-png", "--baseline", "top"])
    assert bad.exit_code == 2 and "trial number or 'best'" in bad.output


def test_a_report_during_a_study_leaves_running_trials_out(tmp_path: Path) -> None:
    """Epochs of a RUNNING trial (a report while the study runs) must not be drawn as a run
    that stopped early: the trial row is not reported yet, so neither are its epochs."""
    from study.report import write_table_report

    source = RESULTS / "overfit"
    trials = pd.read_csv(source / "ptb-char-overfit-trials.csv")
    epochs = pd.read_csv(source / "ptb-char-overfit-trials.epochs.csv")
    running = int(trials["number"].iloc[0])
    trials.loc[trials["number"] == running, "state"] = "RUNNING"
    epochs = epochs[(epochs["number"] != running) | (epochs["epoch"] <= 3)]
    trials.to_csv(tmp_path / "ptb-char-overfit-trials.csv", index=False)
    epochs.to_csv(tmp_path / "ptb-char-overfit-trials.epochs.csv", index=False)
    shutil.copy(source / "ptb-char-overfit.yaml", tmp_path)
    result = write_table_report(tmp_path / "ptb-char-overfit-trials.csv", tmp_path / "r", png=False)
    assert result.analysis is not None
    curves = result.analysis.curves
    assert curves.n_stopped_early == 0 and curves.n_unfinished == 0
    assert running not in set(curves.final["number"])


def test_a_row_is_as_tall_as_its_longest_cell_wraps() -> None:
    """The table PNG cut off its last row when test sources wrapped to 4 lines (the converged
    study's Table 1): each row's height follows its longest cell in its column's width."""
    from dashboards._compare import _row_px

    widths = [1.2, 2.0, 2.4, 2.6, 2.4, 2.4]
    short = ["dropout", "dropout=0.2", "1.8685", "1.8347", "baseline", "baseline"]
    source = (
        "1.9578 [1.9443, 1.9712] (95% Student-t, n = 3) (retrained, 3 seeds, best epoch on "
        "validation; validation reproduced exactly)"
    )
    assert _row_px(short, widths) == 34
    assert _row_px([*short[:3], source, *short[4:]], widths) >= 14 + 17 * 4
