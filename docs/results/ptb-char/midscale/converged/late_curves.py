"""The converged studies' validation curves where they differ: epochs 10 to the cap.

The reports' learning-curve figures span the whole run (3.4 BPC at epoch 1 down to 1.8), which
squeezes the part the README is about into a few pixels. This draws every seed of every
configuration that completed (COMPLETE trials: interrupted attempts are left out, their epochs
are carried by the trial that replaced them) from epoch 10 on, one colour per configuration, and
marks how each run ended: a dot where patience stopped it, a triangle at the 80-epoch cap.

    python docs/results/ptb-char/midscale/converged/late_curves.py   # writes late-curves.png
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import plotly.graph_objects as go

from dashboards import start_png_renderer

HERE = Path(__file__).resolve().parent
DATABASE = HERE.parent / "midscale.db"
FIRST_EPOCH = 10
STUDIES = {
    "ptb-char-converged-zoneout": "zoneout",
    "ptb-char-converged-recurrent-dropout": "recurrent dropout",
    "ptb-char-converged-dropout": "dropout",
}
PARAM_NAMES = {
    "zoneout_cell": "z_c",
    "zoneout_hidden": "z_h",
    "recurrent_dropout": "p",
    "dropout": "p",
}
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def _label(method: str, params: dict[str, float]) -> str:
    if all(v == 0 for v in params.values()):
        return "unregularized"
    values = ", ".join(f"{PARAM_NAMES[k]}={v:g}" for k, v in sorted(params.items()))
    return f"{method} {values}"


def curves() -> dict[str, dict[int, tuple[list[int], list[float], str]]]:
    """Configuration label -> seed -> (epochs, validation BPC, how the run ended)."""
    out: dict[str, dict[int, tuple[list[int], list[float], str]]] = {}
    with sqlite3.connect(f"file:{DATABASE}?mode=ro&immutable=1", uri=True) as db:
        for study, method in STUDIES.items():
            rows = db.execute(
                "SELECT t.id, t.params FROM zs_trials t JOIN zs_studies s ON s.id = t.study_id "
                "WHERE s.name = ? AND t.state = 'COMPLETE'",
                (study,),
            ).fetchall()
            for trial_id, params in rows:
                seeds = out.setdefault(_label(method, json.loads(params)), {})
                ends = dict(
                    db.execute("SELECT seed, ended FROM zs_runs WHERE trial_id = ?", (trial_id,))
                )
                for seed, ended in ends.items():
                    points = db.execute(
                        "SELECT epoch, valid_metric FROM zs_epochs WHERE trial_id = ? AND seed = ? "
                        "ORDER BY epoch",
                        (trial_id, seed),
                    ).fetchall()
                    seeds[seed] = ([e for e, _ in points], [v for _, v in points], ended)
    return out


def figure() -> go.Figure:
    data = curves()
    # Configurations ordered by their score (mean over seeds of each seed's best).
    order = sorted(data, key=lambda k: sum(min(v) for _, v, _ in data[k].values()) / len(data[k]))
    fig = go.Figure()
    for colour, label in zip(COLOURS, order, strict=False):
        for i, (seed, (epochs, values, ended)) in enumerate(sorted(data[label].items())):
            keep = [j for j, e in enumerate(epochs) if e >= FIRST_EPOCH]
            x, y = [epochs[j] for j in keep], [values[j] for j in keep]
            fig.add_trace(
                go.Scatter(
                    x=x, y=y, mode="lines", line=dict(color=colour, width=1.5),
                    name=label, legendgroup=label, showlegend=i == 0,
                    hovertemplate=f"{label}, seed {seed}<br>epoch %{{x}}: %{{y:.4f}}",
                )
            )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=x[-1:], y=y[-1:], mode="markers", legendgroup=label, showlegend=False,
                    marker=dict(color=colour, size=8,
                                symbol="triangle-up" if ended != "converged" else "circle"),
                    hoverinfo="skip",
                )
            )  # fmt: skip
    n_runs = sum(len(seeds) for seeds in data.values())
    fig.update_layout(
        title=dict(
            text="Validation BPC from epoch 10, converged studies",
            subtitle=dict(
                text=(
                    f"{len(data)} configurations x 3 seeds = {n_runs} runs (1x256 LSTM, 500k "
                    "PTB characters); a line per seed, one colour per configuration<br>"
                    "dot: stopped by patience (no gain > 0.001 BPC in 4 epochs); "
                    "triangle: reached the 80-epoch cap"
                )
            ),
        ),
        xaxis=dict(title="epoch", range=[FIRST_EPOCH - 1, 82]),
        yaxis=dict(title="validation BPC (bits per character)", range=[1.77, 2.12]),
        legend=dict(title="configuration (best first)"),
        template="plotly_white",
        width=1100,
        height=620,
        margin=dict(t=110),
    )
    return fig


if __name__ == "__main__":
    renderer = start_png_renderer()
    if renderer is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or set BROWSER_PATH)")
    fig, path = figure(), HERE / "converged-late-curves.png"
    try:
        renderer.submit({path: (fig, fig.layout.width, fig.layout.height)})
        failed = renderer.result()
    finally:
        renderer.close()
    print(path, *failed, sep="\n")
