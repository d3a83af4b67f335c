"""The report's Markdown summary: what was read at which epoch, the best configuration, paired
differences to the baseline, what each figure supports, and importance (or why not); then the
trials that did not complete, with their reasons (all of a study's trials when none did)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._common import PARAM_PREFIX, MetricInfo
from ._configs import ConfigTable
from ._curves import LearningCurves
from ._frame import Col
from ._importance import ParamImportance
from ._layer_paths import layer_path_line
from ._marginal import Marginal
from ._outcomes import TrialOutcomes
from ._stats import LEVEL
from ._surface import GPSurface, Surface

if TYPE_CHECKING:
    from ._analysis import StudyAnalysis

__all__ = ["headline", "layer_path_line", "summarize"]

_MAX_ROWS = 15
#: Rows of the table of trials that did not complete (`status` lists every trial).
MAX_TRIAL_ROWS = 30


def _g(v: object) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _sig(v: float, digits: int = 2) -> str:
    """A fitted location to ``digits`` significant digits: a GP read off a grid of a few points
    knows no more (0.05185 -> 0.052)."""
    if math.isnan(v):
        return "n/a"
    if v == 0:
        return "0"
    digits = max(digits, math.floor(math.log10(abs(v))) + 1)  # never round away integer digits
    return f"{float(f'{v:.{digits}g}'):g}"


def _with_sd(mean: float, sd: float) -> str:
    """``mean ± sd`` with the SD to 2 significant digits and the mean to the same decimal."""
    if math.isnan(mean) or math.isnan(sd) or sd <= 0:
        return f"{_g(mean)} ± {_g(sd)}"
    decimals = max(0, 1 - math.floor(math.log10(sd)))
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def _md_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\`*[]<>|" else ch for ch in text)


def _config_text(row: pd.Series, params: list[str]) -> str:
    return ", ".join(
        f"{p}={_g(float(row[PARAM_PREFIX + p]))}"
        if isinstance(row[PARAM_PREFIX + p], (int, float))
        else f"{p}={row[PARAM_PREFIX + p]}"
        for p in params
    )


def summarize(
    *,
    metric: MetricInfo,
    study_name: str,
    table: ConfigTable,
    surface: Surface | None,
    marginals: dict[str, Marginal],
    importance: ParamImportance,
    curves: LearningCurves,
    outcomes: TrialOutcomes,
    figure_note: str | None = None,
    runs: pd.DataFrame | None = None,
) -> str:
    """``runs``: the store's runs frame; its ``layer_path`` column (where the store has one)
    gives the line on the recurrent layer's path (`layer_path_line`)."""
    lines = [f"## Study {_md_escape(study_name)}", ""]
    lines.append(f"- Trials (configurations): {outcomes.total} ({outcomes.text()}).")
    path_line = layer_path_line(runs)
    if path_line is not None:
        lines.append(f"- {_md_escape(path_line)}")
    if figure_note:
        lines.append(f"- {_md_escape(figure_note[:1].upper() + figure_note[1:])}.")
    c = table.configs
    if c.empty:
        if not figure_note:
            lines.append(f"- No run has a {metric.title} yet.")
        return "\n".join([*lines, *_trials_markdown(outcomes)]) + "\n"
    lines.append(
        f"- Each run (one configuration, one seed) is scored by its best {metric.title} up to the "
        "epoch read (a run that converged keeps its best); a configuration's mean over its runs "
        "is its score, the number Optuna, `status` and `export` show. Means are over seeds; "
        f"intervals are {LEVEL:.0%} Student-t "
        "over seeds where a configuration has 3 or more; with 2 seeds both values are shown "
        "(n = 2) and no interval is claimed."
    )
    used = [f"configurations and differences: {table.epoch.label}"]
    if surface is not None:
        used.append(f"surface: {surface.epoch_label}")
    for m in marginals.values():
        if m.table.epoch.epoch != table.epoch.epoch:
            used.append(f"marginals: {m.epoch_label}")
            break
    lines.append("- Epoch read: " + "; ".join(used) + ".")
    best = c.iloc[0]
    iv = table.intervals[best["config"]]
    lines.append(
        f"- Best configuration by mean: {_md_escape(_config_text(best, table.params))}: "
        f"{_md_escape(iv.text())} ({metric.unit})."
    )
    if table.baseline is not None:
        lines.append(
            f"- Baseline for seed-paired differences: {_md_escape(table.baseline_reason)}. "
            "A difference is this configuration minus the baseline, seed by seed "
            f"({'lower' if metric.direction == 'minimize' else 'higher'} is better)."
        )
    else:
        lines.append(f"- No seed-paired differences: {_md_escape(table.baseline_reason)}.")
    lines += _ends_lines(table)
    lines += ["", _config_markdown(table, metric), ""]
    if surface is not None:
        if surface.lattice is not None:
            lat = surface.lattice
            lines.append(
                f"- Surface: the configurations lie on a {len(lat.x_values)} x "
                f"{len(lat.y_values)} lattice of {surface.x_param} x {surface.y_param} "
                f"({lat.n_cells} cells run): the heatmap shows each cell's mean and n (the "
                "paper's Figure 3)."
            )
        if surface.gp is not None:
            g = surface.gp
            over = f", averaged over {', '.join(g.averaged_over)}" if g.averaged_over else ""
            rng = _within(g)
            lines.append(
                f"- Fitted surface ({g.method}{over}) is best at {surface.x_param}="
                f"{_sig(g.best_x)}, {surface.y_param}={_sig(g.best_y)}: "
                f"{_with_sd(g.best_mean, g.best_se)} (1 posterior SD){rng}."
            )
        else:
            lines.append(f"- No fitted surface: {_md_escape(surface.gp_reason)}.")
    for m in marginals.values():
        if m.curve is not None:
            cv = m.curve
            lines.append(
                f"- {m.param}: GP partial-dependence curve best near {_sig(cv.best_x)}; within "
                f"one posterior SD of it for {m.param} in [{_sig(cv.within_se[0])}, "
                f"{_sig(cv.within_se[1])}]."
            )
        else:
            lines.append(
                f"- {m.param}: per-configuration means only, no curve: "
                f"{_md_escape(m.curve_reason)}."
            )
    if importance.importances:
        ranked = ", ".join(f"{k} {v:.2f}" for k, v in importance.importances.items())
        lines.append(
            f"- Parameter importance ({importance.evaluator} on the Optuna study's own search "
            f"space and objective, {importance.n_complete} complete trials): "
            f"**{importance.most_important}** ({ranked}). optuna-dashboard's importance panel "
            "uses the same evaluator on the same trials."
        )
    else:
        lines.append(
            f"- Parameter importance not computed: {_md_escape(importance.reason or '')}. "
            "optuna-dashboard's own importance panel runs PED-ANOVA on any number of trials "
            "and shows equal shares when it finds nothing; with few trials read it with the "
            "same caution."
        )
    if len(curves.final):
        msg = f"- Stopped early: {curves.n_stopped_early} of {len(curves.final)} runs"
        if curves.rungs:
            rc = curves.final["rung"].dropna().astype(int).value_counts().sort_index()
            at = ", ".join(f"{n} at epoch {r}" for r, n in rc.items())
            msg += f" (ASHA rungs {curves.rungs}: {at or 'none'})"
        lines.append(msg + ".")
        if curves.n_unfinished:
            lines.append(
                f"- Unfinished: {curves.n_unfinished} runs ended short of the budget without "
                "the scheduler stopping them (failed, interrupted or still running); their "
                "curves are dashed."
            )
    return "\n".join([*lines, *_trials_markdown(outcomes)]) + "\n"


def _cell(text: str) -> str:
    """A table cell of free text (an error message): Markdown and the cell bar escaped."""
    return _md_escape(text).replace("_", "\\_")


def _fence(text: str) -> str:
    """A code fence longer than any run of backticks in ``text``."""
    return "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))


def _trials_markdown(outcomes: TrialOutcomes) -> list[str]:
    """The table of the trials that did not complete (trial, state, epochs reached, reason),
    and the first failure's whole error when the table had to cut it."""
    t = outcomes.table
    if t.empty:
        return []
    out = [
        "",
        "### Trials that did not complete",
        "",
        "| trial | state | epochs | reason |",
        "|---|---|---|---|",
    ]
    for row in t.head(MAX_TRIAL_ROWS).itertuples(index=False):
        epochs = "-" if pd.isna(row.epochs) else str(int(row.epochs))
        out.append(f"| {int(row.number)} | {row.state} | {epochs} | {_cell(str(row.reason))} |")
    if len(t) > MAX_TRIAL_ROWS:
        out += [
            "",
            f"({len(t) - MAX_TRIAL_ROWS} more trials not listed.)",
        ]
    first = outcomes.first_failure
    if first is not None and first[1] is not None:
        number, error = first
        shown = t.loc[t[Col.NUMBER] == number, "reason"]
        if len(shown) == 0 or " ".join(error.split()) != str(shown.iloc[0]):
            fence = _fence(error)
            out += [
                "",
                f"The whole error of trial {number}, the first to fail:",
                "",
                fence,
                error,
                fence,
            ]
    return out


def _within(g: GPSurface) -> str:
    """The within-one-SD region of the GP surface, projected on each axis."""
    if not g.within_se.any():
        return ""
    rows, cols = np.nonzero(g.within_se)
    xs, ys = g.x_grid[cols], g.y_grid[rows]
    return (
        f"; within one SD of the best over [{_sig(float(xs.min()))}, {_sig(float(xs.max()))}] x "
        f"[{_sig(float(ys.min()))}, {_sig(float(ys.max()))}]"
    )


# How the summary lists the ways runs end (the store's zs_runs.ended values).
_END_ORDER = ("converged", "budget", "pruned", "diverged", "interrupted", "failed", "unknown")


def _known_ends(table: ConfigTable) -> bool:
    """Whether the store said why the runs ended (databases from before it do not)."""
    ends = table.configs.get("ends", [])
    return any(end is not None for runs in ends if isinstance(runs, tuple) for end, _ in runs)


def _ends_lines(table: ConfigTable) -> list[str]:
    """How the runs read ended, and which configurations never converged."""
    if not _known_ends(table):
        return []
    counts: dict[str, int] = {}
    at_budget = 0
    for runs in table.configs["ends"]:
        for end, _ in runs:
            counts[end or "unknown"] = counts.get(end or "unknown", 0) + 1
        at_budget += all(end == "budget" for end, _ in runs)
    order = [*_END_ORDER, *sorted(set(counts) - set(_END_ORDER))]
    text = ", ".join(f"{counts[end]} {end}" for end in order if end in counts)
    lines = [f"- Runs ended: {text} (converged: patience ran out; budget: trained every epoch)."]
    if at_budget:
        lines.append(
            f"- {at_budget} of {len(table.configs)} configurations had every run end at the "
            f"budget (epoch {table.epoch.max_epochs}), not converged: their score is what the "
            "budget allowed, and more epochs (with `patience`) could change the ranking."
        )
    return lines


def _ends_cell(runs: object) -> str:
    """'converged@14, budget@26': each run's end and last epoch, in seed order."""
    if not isinstance(runs, tuple):
        return "-"
    return ", ".join(f"{end or '?'}@{epoch}" for end, epoch in runs)


def _config_markdown(table: ConfigTable, metric: MetricInfo) -> str:
    """Markdown table: configuration, mean with its interval, difference to the baseline, and
    how each run ended (when the store says)."""
    c = table.configs.head(_MAX_ROWS)
    has_diff = table.baseline is not None and "diff" in c
    has_ends = _known_ends(table)
    head = [*table.params, f"{metric.title} over seeds"]
    if has_diff:
        head.append("difference to baseline (paired by seed)")
    if has_ends:
        head.append("runs ended (seed order)")
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in c.iterrows():
        cells = [_g(row[PARAM_PREFIX + p]) for p in table.params]
        cells.append(table.intervals[row["config"]].text())
        if has_diff:
            if row["config"] == table.baseline:
                cells.append("baseline")
            else:
                d = table.differences.get(row["config"])
                cells.append(d.text("+.4f") if d is not None and d.n else "no common seed")
        if has_ends:
            cells.append(_ends_cell(row["ends"]))
        out.append("| " + " | ".join(cells) + " |")
    if len(table.configs) > _MAX_ROWS:
        out.append(f"\n({len(table.configs) - _MAX_ROWS} more configurations not listed.)")
    return "\n".join(out)


def headline(analysis: StudyAnalysis) -> list[str]:
    """The few lines a terminal prints at the end of a study: the best configuration, its
    seed-paired difference to the baseline (the unregularized point) and whether the baseline's
    runs overfit within the budget (best before their last epoch). Empty without a table."""
    table, metric = analysis.table, analysis.metric
    configs = table.configs
    if not len(configs):
        return []
    best = configs.iloc[0]
    lines = [
        f"best configuration: {_config_text(best, table.params)}: "
        f"{table.intervals[best['config']].text()} {metric.unit}, read at {table.epoch.label}"
    ]
    if table.baseline is None:
        return lines
    if best["config"] != table.baseline:
        diff = table.differences.get(best["config"])
        if diff is not None:
            lines.append(
                f"  minus {table.baseline_reason}, paired by seed: {diff.text(fmt='+.4f')}"
            )
    base = configs.loc[configs["config"] == table.baseline].iloc[0]
    lines += _baseline_fit(analysis, list(base["numbers"]))
    return lines


def _baseline_fit(analysis: StudyAnalysis, numbers: list[int]) -> list[str]:
    """Where the baseline's runs were best, and whether they got worse after."""
    curves = analysis.curves.curves
    runs = curves[curves[Col.NUMBER].isin(numbers)]
    if not len(runs):
        return []
    sign = analysis.metric.sign
    best_epochs, rises = [], []
    for _, run in runs.groupby([Col.NUMBER, Col.SEED], sort=True):
        run = run.sort_values(Col.EPOCH)
        values = sign * run[Col.VALID_METRIC].to_numpy(dtype=float)
        at = int(np.nanargmin(values))
        best_epochs.append(int(run[Col.EPOCH].iloc[at]))
        rises.append(float(values[-1] - values[at]))
    last = int(runs[Col.EPOCH].max())
    epochs = ", ".join(map(str, best_epochs))
    if all(e < last for e in best_epochs):
        return [
            f"  the baseline's runs were best at epochs {epochs} of {last} and "
            f"{min(rises):.4f}-{max(rises):.4f} worse at their last: it overfits within the budget"
        ]
    return [
        f"  the baseline's runs were best at epochs {epochs} of {last}: not all overfit within "
        "the budget"
    ]
