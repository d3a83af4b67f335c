"""The mid-scale README's numbers, recomputed from the committed trial tables.

Every mean, seed value and seed-paired difference in the README's Figure-3 and Table-1 tables,
the paired t over two seeds it quotes, the best epochs and the late-epoch changes it states are
recomputed here from ``*-trials.csv`` and ``*-trials.epochs.csv`` (what ``status --csv`` wrote
from midscale.db; tests/results/test_midscale_coverage.py ties those to the database).
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import pytest
from scipy import stats

HERE = Path(__file__).resolve().parents[2] / "docs/results/ptb-char/midscale"
README = HERE / "README.md"

Run = tuple[str, ...]  # a configuration's parameter values, as the CSV writes them


def _curves(study: str, params: list[str]) -> dict[Run, dict[int, list[float]]]:
    """Per configuration (COMPLETE trials only), per seed, the validation curve by epoch."""
    trials = {
        row["number"]: row
        for row in csv.DictReader((HERE / f"{study}-trials.csv").open())
        if row["state"] == "COMPLETE"
    }
    curves: dict[Run, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    rows = sorted(
        csv.DictReader((HERE / f"{study}-trials.epochs.csv").open()),
        key=lambda r: (int(r["number"]), int(r["seed"]), int(r["epoch"])),
    )
    for row in rows:
        trial = trials.get(row["number"])
        if trial is None:
            continue
        key = tuple(_rate(trial[f"param_{p}"]) for p in params)
        curves[key][int(row["seed"])].append(float(row["valid_metric"]))
    return curves


def _rate(text: str) -> str:
    value = float(text)
    return f"{value:g}"


def _best(curves: dict[Run, dict[int, list[float]]]) -> dict[Run, list[float]]:
    return {key: [min(seeds[s]) for s in sorted(seeds)] for key, seeds in curves.items()}


FIGURE3 = _curves("ptb-char-midscale-figure3", ["zoneout_cell", "zoneout_hidden"])
FIG_BEST = _best(FIGURE3)
UNREG = FIG_BEST[("0", "0")]
BEST = FIG_BEST[("0", "0.05")]


def _cell(values: list[float], signed: bool = False) -> str:
    fmt = "{:+.4f}" if signed else "{:.4f}"
    mean = sum(values) / len(values)
    return f"{fmt.format(mean)} (n = 2: {', '.join(fmt.format(v) for v in values)})"


def _table_rows(heading: str) -> list[list[str]]:
    text = README.read_text()
    section = text[text.index(heading) :]
    section = section[: section.index("\n## ", 1)]
    rows = []
    for line in section.splitlines():
        cells = [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
        if (
            line.startswith("|")
            and not set(line) <= set("|- ")
            and cells[0] not in ("z_c", "method")
        ):
            rows.append(cells)
    return rows


def test_figure3_table() -> None:
    rows = _table_rows("## Figure 3")
    assert len(rows) == 12 == len(FIG_BEST)
    for z_c, z_h, value, vs_unreg, vs_best in rows:
        seeds = FIG_BEST[(z_c, z_h)]
        assert value == _cell(seeds), (z_c, z_h)
        if (z_c, z_h) != ("0", "0"):
            delta = [a - b for a, b in zip(seeds, UNREG, strict=True)]
            assert vs_unreg == _cell(delta, signed=True)
        if (z_c, z_h) != ("0", "0.05"):
            delta = [a - b for a, b in zip(seeds, BEST, strict=True)]
            assert vs_best == _cell(delta, signed=True)
    means = [sum(FIG_BEST[(r[0], r[1])]) / 2 for r in rows]
    assert means == sorted(means), "the table is ranked by the mean"


def test_figure3_bullets() -> None:
    text = " ".join(README.read_text().split())
    zoneout = {k: v for k, v in FIG_BEST.items() if k != ("0", "0")}
    lower_mean = sum(sum(v) < sum(UNREG) for v in zoneout.values())
    lower_both = sum(all(a < b for a, b in zip(v, UNREG, strict=True)) for v in zoneout.values())
    assert (lower_mean, lower_both) == (10, 9)
    assert "10 of the 11 zoneout points have a lower mean" in text
    assert "and 9 are lower on both seeds" in text
    spread = {k: abs((v[0] - UNREG[0]) - (v[1] - UNREG[1])) for k, v in zoneout.items()}
    worst = max(spread, key=spread.get)
    assert worst == ("0.25", "0") and f"{spread[worst]:.3f}" == "0.030"
    neighbours = [("0.25", "0.05"), ("0", "0.1"), ("0", "0")]
    gaps = [abs((FIG_BEST[n][0] - BEST[0]) - (FIG_BEST[n][1] - BEST[1])) for n in neighbours]
    assert f"{max(gaps):.4f}" == "0.0053" and "differ by at most 0.0053" in text
    # Best epochs (1-based) and the change over epochs 23-26.
    best_epoch = {
        (k, s): c.index(min(c)) + 1 for k, seeds in FIGURE3.items() for s, c in seeds.items()
    }
    assert best_epoch[(("0", "0"), 0)] == 18 and best_epoch[(("0", "0"), 1)] == 19
    not_last = sorted((k, s) for (k, s), e in best_epoch.items() if k != ("0", "0") and e != 26)
    assert not_last == [
        (("0.25", "0"), 0),
        (("0.25", "0"), 1),
        (("0.5", "0"), 0),
        (("0.75", "0"), 1),
    ]
    assert "18 of the 22 zoneout runs were at their best at epoch 26" in text
    fall = {(k, s): c[22] - c[25] for k, seeds in FIGURE3.items() for s, c in seeds.items()}
    with_h = [v for (k, _), v in fall.items() if k[1] != "0"]
    cell_only = [v for (k, _), v in fall.items() if k[1] == "0" and k[0] != "0"]
    assert f"{min(with_h):.3f}-{max(with_h):.3f}" == "0.017-0.036"
    assert f"{min(cell_only):.3f}-{max(cell_only):.3f}" == "0.001-0.021"
    assert "fell by 0.017-0.036 BPC" in text and "fell by 0.001-0.021" in text


RD = _best(_curves("ptb-char-midscale-recurrent-dropout", ["recurrent_dropout"]))
DROPOUT = _best(_curves("ptb-char-midscale-dropout", ["dropout"]))


def test_table1_validation_columns_and_paired_t() -> None:
    rows = {r[0]: r for r in _table_rows("## Table 1")}
    expected = {
        "unregularized": UNREG,
        "zoneout": BEST,
        "recurrent dropout": RD[("0.05",)],
        "dropout (beside Table 1)": DROPOUT[("0.2",)],
    }
    assert set(rows) == set(expected)
    for method, seeds in expected.items():
        assert rows[method][2] == _cell(seeds), method
        if method != "unregularized":
            delta = [a - b for a, b in zip(seeds, UNREG, strict=True)]
            assert rows[method][4] == _cell(delta, signed=True), method
    diff = [a - b for a, b in zip(BEST, RD[("0.05",)], strict=True)]
    mean = sum(diff) / 2
    se = abs(diff[0] - diff[1]) / 2  # SD / sqrt(2) for two values
    t = mean / se
    half = stats.t.ppf(0.975, 1) * se
    text = " ".join(README.read_text().split())
    assert f"{t:.2f}" == "-2.72" and f"{2 * stats.t.sf(abs(t), 1):.2f}" == "0.22"
    assert (f"{mean - half:+.3f}", f"{mean + half:+.3f}") == ("-0.043", "+0.028")
    assert "t(1) = -2.72 (two-sided p = 0.22) and a 95% interval of (-0.043, +0.028)" in text
    value, seeds = _cell(diff, signed=True).split(" (")
    assert f"{value} on validation ({seeds}" in text


@pytest.mark.parametrize("method", ["zoneout", "recurrent dropout", "unregularized"])
def test_test_is_validation_minus_a_near_constant(method: str) -> None:
    rows = {r[0]: r for r in _table_rows("## Table 1")}
    numbers = [float(x) for x in re.findall(r"\d\.\d{4}", rows[method][2] + rows[method][3])]
    valid, test = numbers[1:3], numbers[4:6]
    gaps = [v - t for v, t in zip(valid, test, strict=True)]
    assert all(0.0365 <= g <= 0.0405 for g in gaps), gaps
    assert math.isclose(numbers[0], sum(valid) / 2, abs_tol=6e-5)
