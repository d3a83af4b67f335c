"""The scale ladder end to end on a local Ray with real PTB characters: a tiny study, a spec
written by `zoneout-study promote` on a larger base, the promoted study run; provenance in the
store and in export; the report's rank statistics equal scipy's on the same numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from scipy import stats

from dashboards import MetricInfo, ScaleFrames, promotion_section
from study import keys
from study import optuna_study as ostudy
from study.compare import HeldOutMetric, compare_studies
from study.export import best_configs
from study.ladder import LadderError
from study.report import load_study_frames, write_study_report
from study.runner import run_study
from study.spec import load_spec, validate_spec
from study.store import Store
from tests.support import TINY_PTB_BASE, assert_one_score, tiny_ptb_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLI = [sys.executable, "-m", "study.cli"]


def _per_seed_best(url: str, name: str) -> dict[tuple[float, float], list[float]]:
    """Configuration (zoneout_cell, zoneout_hidden) -> each seed's best validation value."""
    with Store(url) as store:
        epochs = store.epochs_frame(name)
        trials = store.trials_frame(name)
    out: dict[tuple[float, float], list[float]] = {}
    for _, row in trials[trials["state"] == "COMPLETE"].iterrows():
        mine = epochs[epochs["number"] == row["number"]]
        key = (float(row["param_zoneout_cell"]), float(row["param_zoneout_hidden"]))
        out[key] = list(mine.groupby("seed")["valid_metric"].min())
    return out


def test_promote_a_small_study_into_a_larger_one(ray_local: None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ladder.db'}"
    small = validate_spec(
        tiny_ptb_spec(
            "small",
            tmp_path,
            base={**TINY_PTB_BASE, "epochs": 2},
            n_trials=5,
            repeats=3,
        )
    )
    assert run_study(small, storage=url).status == "finished"

    # A promotion from a study that does not exist is refused by name.
    missing = subprocess.run(
        [*CLI, "promote", "nope", "--out", str(tmp_path / "x.yaml"), "--storage", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2 and "nope" in missing.stderr

    big_path = tmp_path / "big.yaml"
    made = subprocess.run(
        [*CLI, "promote", "small", "--top", "4", "--point", "zoneout_cell=0,zoneout_hidden=0",
         "--set", "epochs=3", "--set", "learning_rate=3e-3", "--out", str(big_path),
         "--storage", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    written = yaml.safe_load(big_path.read_text())
    assert written["promote"] == {
        "study": "small",
        "top": 4,
        "points": [{"zoneout_cell": 0, "zoneout_hidden": 0}],
    }
    assert written["base"]["epochs"] == 3 and written["repeats"] == 3
    assert written["base"]["learning_rate"] == 0.003  # 3e-3 is a number on a command line

    big = load_spec(big_path)
    outcome = run_study(big, storage=url)
    assert outcome.status == "finished"
    study = ostudy.load_study(url, "small-promoted")
    promoted = ostudy.study_attrs(study)[keys.PROMOTED_FROM]
    assert promoted["study"] == "small" and promoted["top"] == 4
    small_trials = {t.number: t for t in ostudy.trials(ostudy.load_study(url, "small"))}
    ranked = sorted(
        (t for t in small_trials.values() if t.value is not None), key=lambda t: t.value
    )
    assert [p["source_trial"] for p in promoted["points"][:4]] == [t.number for t in ranked[:4]]
    assert promoted["points"][4]["why"] == "named"
    trials = ostudy.trials(study)
    assert len(trials) == 5 and all(t.state.name == "COMPLETE" for t in trials)
    for trial in trials:
        assert trial.user_attrs[keys.SEEDS] == [1, 2, 3]
        source = trial.user_attrs.get(keys.SOURCE_TRIAL)
        if trial.params == {"zoneout_cell": 0, "zoneout_hidden": 0}:
            assert source is None  # the named point was not run at the small scale
        else:
            assert small_trials[source].params == trial.params
    assert_one_score(url, "small-promoted")
    with Store(url) as store:
        ((_, provenance),) = best_configs(store, "small-promoted", top=1)
    assert provenance["promoted_from"]["study"] == "small"
    best = min(trials, key=lambda t: t.value)
    assert provenance["promoted_from"]["trial"] == best.user_attrs.get(keys.SOURCE_TRIAL)

    # A rerun resolves nothing again: the stored promotion is the plan, already done.
    again = run_study(big, storage=url)
    assert again.status == "finished" and len(ostudy.trials(study)) == 5

    # The report's rank statistics are scipy's on the configurations' means at both scales.
    result = write_study_report(url, "small-promoted", tmp_path / "reports", png=True)
    html = result.html_path.read_text(encoding="utf-8")
    assert "Scale agreement" in html
    assert "scale-agreement" in result.figures
    small_best = _per_seed_best(url, "small")
    large_best = _per_seed_best(url, "small-promoted")
    common = sorted(set(small_best) & set(large_best))
    assert len(common) == 4
    x = [sum(small_best[c]) / len(small_best[c]) for c in common]
    y = [sum(large_best[c]) / len(large_best[c]) for c in common]
    frames = {name: load_study_frames(url, name) for name in ("small", "small-promoted")}
    scales = {
        name: ScaleFrames(name, f.trials, f.epochs, f.runs, f.max_epochs)
        for name, f in frames.items()
    }
    _, _, agreement = promotion_section(
        scales["small"],
        scales["small-promoted"],
        params=["zoneout_cell", "zoneout_hidden"],
        metric=MetricInfo.of("bpc"),
    )
    assert agreement.n_configs == 4
    # compare across the pair carries the same section after Table 1.
    compared = compare_studies(
        ["small", "small-promoted"],
        storage_url=url,
        out_dir=tmp_path / "compare",
        test=HeldOutMetric.NONE,
        png=False,
        save_note=False,
    )
    assert "Scale agreement" in compared.markdown
    assert "Kendall" in html and f"{agreement.kendall_tau:.2f}" in html
    assert agreement.kendall_tau == pytest.approx(stats.kendalltau(x, y).statistic)
    assert agreement.spearman_rho == pytest.approx(stats.spearmanr(x, y).statistic)
    assert agreement.tau_interval is not None


def test_a_promotion_from_another_search_space_is_refused(ray_local: None, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ladder.db'}"
    small = validate_spec(
        tiny_ptb_spec(
            "small-cell",
            tmp_path,
            base={**TINY_PTB_BASE, "epochs": 1},
            search={"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
            n_trials=2,
        )
    )
    assert run_study(small, storage=url).status == "finished"
    big = validate_spec(
        tiny_ptb_spec(
            "big-hidden",
            tmp_path,
            search={"zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.5}},
            promote={"study": "small-cell", "top": 1},
        )
    )
    with pytest.raises(LadderError, match="searches the same parameters"):
        run_study(big, storage=url)
