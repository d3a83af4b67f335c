"""Table 1 across regularizers: per method the validation-selected configuration, its
validation metric over seeds, its test metric (marked with how it was obtained) and the
seed-paired difference to a baseline method."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._common import PARAM_PREFIX, Direction, MetricInfo, sanitize_name
from ._configs import config_table
from ._report import markdown_to_html, write_pngs
from ._runs import EpochChoice, StudyRuns, study_runs
from ._stats import LEVEL, Interval, paired_difference

__all__ = [
    "Comparison",
    "MethodResult",
    "compare_methods",
    "select_configuration",
    "write_comparison",
]


@dataclass(frozen=True)
class MethodResult:
    """One row of Table 1."""

    method: str
    source: str
    """Where it came from (study name, and the categorical value when split)."""
    config: dict[str, object]
    """The validation-selected configuration (searched parameters)."""
    valid: Interval
    valid_by_seed: pd.Series
    """Validation value per seed (index: seed), for pairing."""
    epoch: EpochChoice
    n_configs: int
    """Configurations the selection chose among."""
    trial_numbers: tuple[int, ...]
    test: Interval | None = None
    test_source: str = "not computed"
    """How the test metric was obtained: 'best checkpoint', 'retrained', or why it is missing."""


@dataclass(frozen=True)
class Comparison:
    rows: list[MethodResult]
    baseline: str
    differences: dict[str, Interval]
    metric: MetricInfo
    notes: list[str] = field(default_factory=list)


def select_configuration(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    method: str,
    source: str,
    max_epochs: int,
    direction: Direction = "minimize",
) -> MethodResult | None:
    """The configuration with the best validation mean over seeds at the full budget, among
    those with the most seeds there (a lucky single seed does not win over a 3-seed mean).
    None when no run reached the full budget."""
    runs: StudyRuns = study_runs(trials, epochs, max_epochs=max_epochs)
    at = runs.at(runs.max_epochs)
    at = at[at["reached"] >= runs.max_epochs]
    if at.empty:
        return None
    epoch = EpochChoice(runs.max_epochs, runs.max_epochs, at["config"].nunique(), len(at))
    table = config_table(at, epoch, runs.params, direction=direction)
    c = table.configs
    top = c[c["n"] == c["n"].max()].iloc[0]
    key = top["config"]
    config = {p: _plain(top[PARAM_PREFIX + p]) for p in runs.params}
    by_seed = at[at["config"] == key].groupby("seed")["value"].mean()
    return MethodResult(
        method=method,
        source=source,
        config=config,
        valid=table.intervals[key],
        valid_by_seed=by_seed,
        epoch=epoch,
        n_configs=len(c),
        trial_numbers=tuple(top["numbers"]),
    )


def _plain(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def compare_methods(rows: list[MethodResult], *, baseline: str, metric: MetricInfo) -> Comparison:
    """Seed-paired differences of every method's validation values to ``baseline``'s."""
    base = next((r for r in rows if r.method == baseline), None)
    if base is None:
        raise ValueError(f"baseline {baseline!r} is not one of {[r.method for r in rows]}")
    diffs = {
        r.method: paired_difference(r.valid_by_seed, base.valid_by_seed)
        for r in rows
        if r.method != baseline
    }
    notes = [
        f"Validation: best {metric.title} up to the full budget (early stopping), mean over "
        f"seeds; [..] is a {LEVEL:.0%} Student-t interval over seeds (3 or more seeds); with 2 "
        "seeds both values are listed (n = 2), no interval.",
        f"Difference: method minus {baseline}, paired by seed (same seed = same initialisation "
        "and data order), on validation.",
        "Each method's configuration was selected on validation only; the test metric is of "
        "that one configuration.",
    ]
    return Comparison(rows, baseline, diffs, metric, notes)


def _config_text(cfg: dict[str, object]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items())


def comparison_markdown(c: Comparison) -> str:
    m = c.metric
    head = [
        "method",
        "selected configuration",
        f"validation {m.name}",
        f"test {m.name}",
        f"Δ validation vs {c.baseline}",
    ]
    out = [
        f"## Table 1: {m.title.removeprefix('validation ')} by method",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in c.rows:
        test = f"{r.test.text()} ({r.test_source})" if r.test is not None else r.test_source
        diff = "baseline" if r.method == c.baseline else c.differences[r.method].text("+.4f")
        cells = [
            r.method,
            f"{_config_text(r.config)} (from {r.n_configs}; {r.source})",
            r.valid.text(),
            test,
            diff,
        ]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", *[f"- {n}" for n in c.notes]]
    return "\n".join(out) + "\n"


def comparison_figure(c: Comparison) -> go.Figure:
    m = c.metric
    cols = [
        "method",
        "selected configuration",
        f"validation {m.name}",
        f"test {m.name}",
        f"Δ validation vs {c.baseline}",
    ]
    cells: list[list[str]] = [[] for _ in cols]
    for r in c.rows:
        test = f"{r.test.text()} ({r.test_source})" if r.test is not None else r.test_source
        diff = "baseline" if r.method == c.baseline else c.differences[r.method].text("+.4f")
        for i, v in enumerate([r.method, _config_text(r.config), r.valid.text(), test, diff]):
            cells[i].append(v)
    fig = go.Figure(
        go.Table(
            header=dict(values=cols, fill_color="#e8eef5", align="left"),
            cells=dict(values=cells, align="left", height=34),
            columnwidth=[1.2, 2.2, 2.6, 1.8, 2.6],
        )
    )
    fig.update_layout(
        title=dict(
            text=f"Table 1: {m.title.removeprefix('validation ')} by method",
            subtitle=dict(
                text="validation-selected configuration per method; mean over "
                "seeds (Student-t interval for 3+ seeds, both values for n = 2);"
                f" Δ paired by seed against {c.baseline}",
                font=dict(size=11),
            ),
        ),
        margin=dict(l=20, r=20, t=80, b=20),
        template="plotly_white",
    )
    return fig


def write_comparison(
    c: Comparison, out_dir: str | Path, name: str = "comparison", *, png: bool = True
) -> tuple[dict[str, Path], list[str]]:
    """``<name>.md``, ``<name>.html`` and (``png``) ``<name>-table.png`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = sanitize_name(name)
    md = comparison_markdown(c)
    paths = {"markdown": out / f"{prefix}.md", "html": out / f"{prefix}.html"}
    paths["markdown"].write_text(md, encoding="utf-8")
    paths["html"].write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(prefix)}</title></head><body>{markdown_to_html(md)}</body></html>",
        encoding="utf-8",
    )
    messages: list[str] = []
    if png:
        fig = comparison_figure(c)
        fig.update_layout(height=160 + 40 * len(c.rows), width=1400)
        pngs, messages = write_pngs({"table": fig}, out, prefix)
        paths.update({f"png-{k}": v for k, v in pngs.items()})
    return paths, messages
