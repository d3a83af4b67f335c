"""Table 1 across regularizers: per method the validation-selected configuration, its
validation metric over seeds, its test metric (marked with how it was obtained), the
seed-paired differences to a baseline method on validation and on test, and the seed-paired
differences between every other pair of methods."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._common import PARAM_PREFIX, Direction, MetricInfo, sanitize_name
from ._configs import config_table
from ._frame import Col, check_frames
from ._png import write_pngs
from ._report import markdown_to_html
from ._runs import EpochChoice, StudyRuns, study_runs
from ._stats import LEVEL, Interval, paired_difference

__all__ = [
    "Comparison",
    "MethodPair",
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
    test_by_seed: pd.Series | None = None
    """Test value per seed (index: seed), for pairing; None when not computed."""
    test_source: str = "not computed"
    """How the test metric was obtained: 'best checkpoint', 'retrained', or why it is missing."""


@dataclass(frozen=True)
class MethodPair:
    """``first`` minus ``second``, paired by seed, on validation and (when both have it) test."""

    first: str
    second: str
    valid: Interval
    test: Interval | None


@dataclass(frozen=True)
class Comparison:
    rows: list[MethodResult]
    baseline: str
    differences: dict[str, Interval]
    """Validation: method minus baseline, paired by seed."""
    metric: MetricInfo
    notes: list[str] = field(default_factory=list)
    test_differences: dict[str, Interval] = field(default_factory=dict)
    """Test: method minus baseline, paired by seed, where both test metrics were computed."""
    pairs: list[MethodPair] = field(default_factory=list)
    """Every pair of non-baseline methods, in row order."""


def select_configuration(
    trials: pd.DataFrame,
    epochs: pd.DataFrame,
    *,
    method: str,
    source: str,
    max_epochs: int,
    direction: Direction = "minimize",
    ends: pd.DataFrame | None = None,
) -> MethodResult | None:
    """The configuration with the best validation mean over seeds at the full budget, among
    those with the most seeds there (a lucky single seed does not win over a 3-seed mean).
    None when no run reached the full budget."""
    check_frames("dashboards.select_configuration", trials=trials, epochs=epochs, runs=ends)
    runs: StudyRuns = study_runs(trials, epochs, max_epochs=max_epochs, ends=ends)
    at = runs.at_budget()
    if at.empty:
        return None
    epoch = EpochChoice(runs.max_epochs, runs.max_epochs, at["config"].nunique(), len(at))
    table = config_table(at, epoch, runs.params, direction=direction)
    c = table.configs
    top = c[c["n"] == c["n"].max()].iloc[0]
    key = top["config"]
    config = {p: _plain(top[PARAM_PREFIX + p]) for p in runs.params}
    by_seed = at[at["config"] == key].groupby(Col.SEED)["value"].mean()
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


def _pair(first: MethodResult, second: MethodResult) -> MethodPair:
    test = None
    if first.test_by_seed is not None and second.test_by_seed is not None:
        test = paired_difference(first.test_by_seed, second.test_by_seed)
    return MethodPair(
        first.method,
        second.method,
        paired_difference(first.valid_by_seed, second.valid_by_seed),
        test,
    )


def compare_methods(rows: list[MethodResult], *, baseline: str, metric: MetricInfo) -> Comparison:
    """Seed-paired differences of every method's validation (and test) values to
    ``baseline``'s, and between every pair of the other methods."""
    base = next((r for r in rows if r.method == baseline), None)
    if base is None:
        raise ValueError(f"baseline {baseline!r} is not one of {[r.method for r in rows]}")
    others = [r for r in rows if r.method != baseline]
    to_base = {r.method: _pair(r, base) for r in others}
    diffs = {name: p.valid for name, p in to_base.items()}
    test_diffs = {name: p.test for name, p in to_base.items() if p.test is not None}
    pairs = [_pair(a, b) for i, a in enumerate(others) for b in others[i + 1 :]]
    notes = [
        f"Validation: best {metric.title} up to the full budget (early stopping), mean over "
        f"seeds; [..] is a {LEVEL:.0%} Student-t interval over seeds (3 or more seeds); with 2 "
        "seeds both values are listed (n = 2), no interval.",
        f"Δ: method minus {baseline}, paired by seed (same seed = same initialisation "
        "and data order); negative is better for a metric to minimize. On test only where "
        "both test metrics were computed.",
        "Each method's configuration was selected on validation only; the test metric is of "
        "that one configuration.",
    ]
    return Comparison(rows, baseline, diffs, metric, notes, test_diffs, pairs)


def _config_text(cfg: dict[str, object]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in cfg.items())


def _columns(c: Comparison) -> list[str]:
    m = c.metric
    return [
        "method",
        "selected configuration",
        f"validation {m.name}",
        f"test {m.name}",
        f"Δ validation vs {c.baseline}",
        f"Δ test vs {c.baseline}",
    ]


def _row_cells(c: Comparison, r: MethodResult, *, with_source: bool) -> list[str]:
    test = f"{r.test.text()} ({r.test_source})" if r.test is not None else r.test_source
    if r.method == c.baseline:
        diff = test_diff = "baseline"
    else:
        diff = c.differences[r.method].text("+.4f")
        found = c.test_differences.get(r.method)
        test_diff = found.text("+.4f") if found is not None else "-"
    config = _config_text(r.config)
    if with_source:
        config = f"{config} (from {r.n_configs}; {r.source})"
    return [r.method, config, r.valid.text(), test, diff, test_diff]


def comparison_markdown(c: Comparison) -> str:
    m = c.metric
    head = _columns(c)
    out = [
        f"## Table 1: {m.title.removeprefix('validation ')} by method",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in c.rows:
        out.append("| " + " | ".join(_row_cells(c, r, with_source=True)) + " |")
    if c.pairs:
        out += [
            "",
            "### Between the other methods (first minus second, paired by seed)",
            "",
            f"| first | second | Δ validation {m.name} | Δ test {m.name} |",
            "|---|---|---|---|",
        ]
        for p in c.pairs:
            test = p.test.text("+.4f") if p.test is not None else "-"
            out.append(f"| {p.first} | {p.second} | {p.valid.text('+.4f')} | {test} |")
    out += ["", *[f"- {n}" for n in c.notes]]
    return "\n".join(out) + "\n"


#: The table figure's width in pixels (write_comparison draws it so), and roughly what one
#: character of its 12-pixel font takes: enough to tell how many lines a cell wraps to.
TABLE_WIDTH_PX = 1400
_CHAR_PX = 7.0
_LINE_PX = 17


def _row_px(cells: list[str], widths: list[float]) -> int:
    """Height of a table row whose cells wrap within columns of relative ``widths``."""
    usable = TABLE_WIDTH_PX - 40
    lines = 1
    for text, w in zip(cells, widths, strict=False):
        chars = max(8, int(usable * w / sum(widths) / _CHAR_PX) - 2)
        lines = max(lines, -(-len(text) // chars))
    return max(34, 14 + _LINE_PX * lines)


def comparison_figure(c: Comparison) -> go.Figure:
    m = c.metric
    cols = _columns(c)
    cells: list[list[str]] = [[] for _ in cols]
    for r in c.rows:
        for i, v in enumerate(_row_cells(c, r, with_source=False)):
            cells[i].append(v)
    # The figure is sized to its rows, and a row to its longest cell as it wraps in its column
    # (a row drawn taller than the table's share of the figure is cut off); the two tables
    # share the height as their rows do.
    widths = [1.2, 2.0, 2.4, 2.6, 2.4, 2.4]
    main_px = 40 + sum(_row_px([col[i] for col in cells], widths) for i in range(len(c.rows)))
    pairs_px = 40 + 34 * len(c.pairs) if c.pairs else 0
    gap_px = 30 if c.pairs else 0
    split = pairs_px / (main_px + pairs_px + gap_px) if c.pairs else 0.0
    height = 100 + main_px + pairs_px + gap_px + 20
    fig = go.Figure(
        go.Table(
            header=dict(values=cols, fill_color="#e8eef5", align="left"),
            cells=dict(values=cells, align="left", height=34),
            columnwidth=widths,
            domain=dict(y=[split + (0.04 if c.pairs else 0.0), 1.0]),
        )
    )
    if c.pairs:
        pair_cells = [
            [f"{p.first} minus {p.second}" for p in c.pairs],
            [p.valid.text("+.4f") for p in c.pairs],
            [p.test.text("+.4f") if p.test is not None else "-" for p in c.pairs],
        ]
        fig.add_trace(
            go.Table(
                header=dict(
                    values=[
                        "between the other methods (paired by seed)",
                        f"Δ validation {m.name}",
                        f"Δ test {m.name}",
                    ],
                    fill_color="#f3f0e8",
                    align="left",
                ),
                cells=dict(values=pair_cells, align="left", height=34),
                columnwidth=[3.2, 3.0, 3.0],
                domain=dict(y=[0.0, split]),
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
        height=height,
    )
    return fig


def write_comparison(
    c: Comparison,
    out_dir: str | Path,
    name: str = "comparison",
    *,
    png: bool = True,
    sections: Sequence[tuple[str, dict[str, go.Figure]]] = (),
) -> tuple[dict[str, Path], list[str]]:
    """``<name>.md``, ``<name>.html`` and (``png``) ``<name>-table.png`` in ``out_dir``;
    ``sections`` (Markdown and figures the caller computed: a promoted study against its
    source) follow the table, their figures as ``<name>-<figure>.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = sanitize_name(name)
    md = comparison_markdown(c)
    extra: dict[str, go.Figure] = {}
    for markdown, figures in sections:
        md += "\n" + markdown
        extra.update(figures)
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
        fig.update_layout(width=TABLE_WIDTH_PX)
        pngs, messages = write_pngs({"table": fig, **extra}, out, prefix)
        paths.update({f"png-{k}": v for k, v in pngs.items()})
    return paths, messages
