"""The converged study's README, recomputed from the committed database.

Every number in ``docs/results/ptb-char/midscale/converged/README.md`` — each configuration's
seeds, means and Student-t intervals, the seed-paired differences and the paired t, the best
epochs and how each run ended, the late-epoch changes of the runs that reached the cap, the rank
agreement with the 26-epoch studies — is recomputed here from ``midscale.db`` with sqlite3 and
scipy alone (not the service's code), and the trial tables written beside the README are checked
against the database.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

HERE = Path(__file__).resolve().parents[2] / "docs/results/ptb-char/midscale"
DATABASE = HERE / "midscale.db"
OUT = HERE / "converged"
README = OUT / "README.md"

ZONEOUT = "ptb-char-converged-zoneout"
RECURRENT_DROPOUT = "ptb-char-converged-recurrent-dropout"
DROPOUT = "ptb-char-converged-dropout"
SMALL = {
    ZONEOUT: "ptb-char-midscale-figure3",
    RECURRENT_DROPOUT: "ptb-char-midscale-recurrent-dropout",
    DROPOUT: "ptb-char-midscale-dropout",
}
CAP = 80  # the specs' epoch cap
SEEDS = (0, 1, 2)
LEVEL = 0.95

Config = tuple[str, ...]  # the searched parameters' values, as the README writes them


@dataclass(frozen=True)
class Run:
    """One seed of one configuration: how it ended, its best epoch and value, its curve."""

    seed: int
    ended: str
    epochs: int
    best_epoch: int
    best: float
    curve: tuple[float, ...]  # validation BPC of epochs 1..epochs


def _rate(value: float) -> str:
    return f"{value:g}"


def _connect() -> sqlite3.Connection:
    return sqlite3.connect(f"file:{DATABASE}?mode=ro&immutable=1", uri=True)


def _runs(study: str) -> dict[Config, list[Run]]:
    """The COMPLETE trials' runs by configuration (seeds in order)."""
    with _connect() as db:
        trials = db.execute(
            "SELECT t.id, t.params FROM zs_trials t JOIN zs_studies s ON s.id = t.study_id "
            "WHERE s.name = ? AND t.state = 'COMPLETE'",
            (study,),
        ).fetchall()
        out: dict[Config, list[Run]] = {}
        for trial_id, params_json in trials:
            params = json.loads(params_json)
            config = tuple(_rate(params[k]) for k in sorted(params))
            assert config not in out, f"two COMPLETE trials of {config} in {study}"
            runs = []
            for seed, ended, epochs, best_epoch, best in db.execute(
                "SELECT seed, ended, epochs, best_epoch, best_value FROM zs_runs "
                "WHERE trial_id = ? ORDER BY seed",
                (trial_id,),
            ):
                curve = tuple(
                    v
                    for (v,) in db.execute(
                        "SELECT valid_metric FROM zs_epochs WHERE trial_id = ? AND seed = ? "
                        "ORDER BY epoch",
                        (trial_id, seed),
                    )
                )
                runs.append(Run(seed, ended, epochs, best_epoch, best, curve))
            out[config] = runs
    return out


def _small_means(study: str) -> dict[Config, list[float]]:
    """The 26-epoch study's per-seed best validation BPC by configuration."""
    return {k: [r.best for r in runs] for k, runs in _runs(study).items()}


def _t_interval(values: list[float]) -> tuple[float, float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def cell(values: list[float], signed: bool = False) -> str:
    """'1.8447 [1.8164, 1.8730] (95% Student-t, n = 3)' as the report writes it."""
    fmt = "{:+.4f}" if signed else "{:.4f}"
    mean, lo, hi = _t_interval(values)
    return (
        f"{fmt.format(mean)} [{fmt.format(lo)}, {fmt.format(hi)}] "
        f"({LEVEL:.0%} Student-t, n = {len(values)})"
    )


def seeds_text(values: list[float], signed: bool = False) -> str:
    fmt = "{:+.4f}" if signed else "{:.4f}"
    return ", ".join(fmt.format(v) for v in values)


def ends_text(runs: list[Run]) -> str:
    """Best epoch / last epoch of each seed, in seed order; '(cap)' where the run trained to
    the epoch cap instead of stopping by patience: '47/51, 48/49, 79/80 (cap)'."""
    return ", ".join(
        f"{r.best_epoch}/{r.epochs}" + (" (cap)" if r.ended != "converged" else "") for r in runs
    )


def paired(a: list[Run], b: list[Run]) -> list[float]:
    assert [r.seed for r in a] == [r.seed for r in b] == list(SEEDS)
    return [x.best - y.best for x, y in zip(a, b, strict=True)]


def paired_t(diff: list[float]) -> tuple[float, float]:
    """t(n-1) and its two-sided p for a seed-paired difference."""
    mean, _, _ = _t_interval(diff)
    sd = math.sqrt(sum((v - mean) ** 2 for v in diff) / (len(diff) - 1))
    t = mean / (sd / math.sqrt(len(diff)))
    return t, 2 * stats.t.sf(abs(t), len(diff) - 1)


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _flat() -> str:
    return " ".join(_readme().split())


ZO = _runs(ZONEOUT)
RD = _runs(RECURRENT_DROPOUT)
DO = _runs(DROPOUT)
UNREG = ZO[("0", "0")]


def _mean(runs: list[Run]) -> float:
    return sum(r.best for r in runs) / len(runs)


def zoneout_ranked() -> list[Config]:
    return sorted(ZO, key=lambda k: _mean(ZO[k]))


def figure3_rows() -> Iterator[list[str]]:
    """z_c | z_h | validation BPC | seeds | best / stopped epoch | minus unregularized | minus
    best, ranked by the mean."""
    ranked = zoneout_ranked()
    best = ZO[ranked[0]]
    for key in ranked:
        runs = ZO[key]
        vs_unreg = "unregularized" if key == ("0", "0") else cell(paired(runs, UNREG), True)
        vs_best = "best" if key == ranked[0] else cell(paired(runs, best), True)
        yield [
            *key,
            cell([r.best for r in runs]),
            seeds_text([r.best for r in runs]),
            ends_text(runs),
            vs_unreg,
            vs_best,
        ]


def _best_of(study: dict[Config, list[Run]]) -> Config:
    return min(study, key=lambda k: _mean(study[k]))


def table1() -> dict[str, tuple[str, list[Run]]]:
    """Method -> (its configuration as the README names it, its runs): each method's best
    configuration by validation mean; the unregularized model is the zoneout study's (0, 0)."""
    zoneout = _best_of({k: v for k, v in ZO.items() if k != ("0", "0")})
    rd, do = _best_of(RD), _best_of(DO)
    return {
        "unregularized": ("z_c = z_h = 0", UNREG),
        "zoneout": (f"z_c = {zoneout[0]}, z_h = {zoneout[1]} (of 4)", ZO[zoneout]),
        "recurrent dropout": (f"p = {rd[0]} (of {len(RD)})", RD[rd]),
        "dropout (not in the paper's Table 1)": (f"p = {do[0]} (of {len(DO)})", DO[do]),
    }


def table1_rows() -> Iterator[list[str]]:
    """method | selected | validation BPC | seeds | minus unregularized, ranked by the mean."""
    rows = table1()
    for method in sorted(rows, key=lambda m: _mean(rows[m][1])):
        config, runs = rows[method]
        vs = "" if method == "unregularized" else cell(paired(runs, UNREG), True)
        yield [method, config, cell([r.best for r in runs]), seeds_text([r.best for r in runs]), vs]


def ladder_rows(study: str, data: dict[Config, list[Run]]) -> Iterator[list[str]]:
    """configuration | 26-epoch mean (2 seeds) | rank | converged mean | rank."""
    small = {k: sum(v) / len(v) for k, v in _small_means(SMALL[study]).items() if k in data}
    large = {k: _mean(v) for k, v in data.items()}
    small_rank = {k: i + 1 for i, k in enumerate(sorted(small, key=small.get))}
    large_rank = {k: i + 1 for i, k in enumerate(sorted(large, key=large.get))}
    for key in sorted(large, key=large.get):
        yield [
            ", ".join(key),
            f"{small[key]:.4f}",
            str(small_rank[key]),
            f"{large[key]:.4f}",
            str(large_rank[key]),
        ]


def rank_agreement(study: str, data: dict[Config, list[Run]]) -> tuple[float, float]:
    """Kendall's tau-b and Spearman's rho between the two scales' means."""
    small = _small_means(SMALL[study])
    keys = sorted(data)
    x = [sum(small[k]) / len(small[k]) for k in keys]
    y = [_mean(data[k]) for k in keys]
    return float(stats.kendalltau(x, y).statistic), float(stats.spearmanr(x, y).statistic)


def test_every_configuration_has_three_seeds_that_ended() -> None:
    """The studies are finished: every promoted configuration has one COMPLETE trial whose 3
    seeds each either converged (patience ran out) or trained to the cap."""
    assert sorted(ZO) == [
        ("0", "0"),
        ("0", "0.05"),
        ("0", "0.1"),
        ("0.25", "0.05"),
        ("0.5", "0.05"),
    ]
    assert sorted(RD) == [("0.05",), ("0.2",)]
    assert sorted(DO) == [("0.2",)]
    for runs in [*ZO.values(), *RD.values(), *DO.values()]:
        assert [r.seed for r in runs] == list(SEEDS)
        for r in runs:
            assert len(r.curve) == r.epochs, "every epoch of a run is on record"
            assert r.best == min(r.curve) and r.curve[r.best_epoch - 1] == r.best
            if r.ended == "converged":
                assert r.epochs < CAP or r.best_epoch < CAP
            else:
                assert (r.ended, r.epochs) == ("budget", CAP)


def test_trial_tables_match_the_database() -> None:
    """converged/*-trials.runs.csv (status --csv) hold the runs read here."""
    for study, data in ((ZONEOUT, ZO), (RECURRENT_DROPOUT, RD), (DROPOUT, DO)):
        rows = list(csv.DictReader((OUT / f"{study}-trials.runs.csv").open()))
        written = {(int(r["seed"]), float(r["best_value"]), r["ended"]) for r in rows}
        for runs in data.values():
            for r in runs:
                assert (r.seed, r.best, r.ended) in written, (study, r.seed)


def _within(text: str) -> bool:
    return text in _flat()


def _tables(text: str) -> list[list[list[str]]]:
    """The Markdown tables of ``text``: their rows (header and rule dropped), bold unmarked."""
    tables: list[list[list[str]]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("|"):
            if not inside:
                tables.append([])
                inside = True
                continue  # header
            if not set(line) <= set("|-: "):
                cells = line.strip().strip("|").split("|")
                tables[-1].append([c.strip().replace("**", "") for c in cells])
        else:
            inside = False
    return tables


def _rows(heading: str, nth: int = 0) -> list[list[str]]:
    """The rows of the README's ``nth`` table under ``heading``."""
    text = _readme()
    section = text[text.index(heading) :]
    nxt = section.find("\n## ", 1)
    return _tables(section if nxt < 0 else section[:nxt])[nth]


def test_figure3_table() -> None:
    assert _rows("## Zoneout at convergence") == list(figure3_rows())


def test_table1_table() -> None:
    assert _rows("## Table 1 at convergence") == list(table1_rows())


def test_ladder_tables_and_rank_statistics() -> None:
    assert _rows("## Does the 26-epoch ranking hold?", 0) == list(ladder_rows(ZONEOUT, ZO))
    assert _rows("## Does the 26-epoch ranking hold?", 1) == list(
        ladder_rows(RECURRENT_DROPOUT, RD)
    )
    tau, rho = rank_agreement(ZONEOUT, ZO)
    assert _within(f"Kendall's tau-b between the two scales' means is {tau:.3f} over the 5")
    assert _within(f"(Spearman's rho {rho:.3f})")
    small_best = min(
        _small_means(SMALL[ZONEOUT]), key=lambda k: sum(_small_means(SMALL[ZONEOUT])[k])
    )
    assert small_best == ("0", "0.05")
    regret = paired(ZO[small_best], ZO[zoneout_ranked()[0]])
    assert _within(f"Picking the 26-epoch best costs {cell(regret, True)} here")
    low_minus_high = paired(RD[("0.05",)], RD[("0.2",)])
    assert all(d > 0 for d in low_minus_high)
    assert _within(f"lower on every seed, by {cell(low_minus_high, True)} (p = 0.05 minus")
    stops = {k: sorted(r.epochs for r in runs) for k, runs in RD.items()}
    assert _within(f"p = 0.05 stops early (epochs {stops[('0.05',)][0]}-{stops[('0.05',)][-1]})")
    assert _within(f"p = 0.2 at {stops[('0.2',)][0]}-{stops[('0.2',)][-1]}.")


def test_how_the_runs_ended() -> None:
    runs = [r for data in (ZO, RD, DO) for rs in data.values() for r in rs]
    capped = [(k, r) for k, rs in ZO.items() for r in rs if r.ended != "converged"]
    assert len(runs) == 24 and all(
        r.ended == "converged" for rs in (*RD.values(), *DO.values()) for r in rs
    )
    assert _within(f"{len(runs) - len(capped)} of the {len(runs)} runs stopped by patience")
    assert [(k, r.seed) for k, r in capped] == [
        (("0", "0.1"), 2), (("0.5", "0.05"), 0), (("0.5", "0.05"), 2)
    ]  # fmt: skip
    fell = {(k, r.seed): r.curve[-6] - r.curve[-1] for k, r in capped}
    order = [(("0.5", "0.05"), 0), (("0.5", "0.05"), 2), (("0", "0.1"), 2)]
    assert _within("they fell by " + ", ".join(f"{fell[o]:.4f}" for o in order[:2])
                   + f" and {fell[order[2]]:.4f} BPC")  # fmt: skip
    assert {r.epochs for r in UNREG} == {22} and {r.best_epoch for r in UNREG} == {18, 19}
    assert _within("The unregularized model stopped at epoch 22 on every seed (best at 18-19")
    stop = sorted(r.epochs for r in ZO[("0", "0.05")])
    assert _within(f"z_c = 0, z_h = 0.05 at {stop[0]}-{stop[-1]}")
    stop = sorted(r.epochs for r in RD[("0.05",)])
    assert _within(f"recurrent dropout p = 0.05 at {stop[0]}-{stop[-1]}")
    named = {("0", "0"), ("0", "0.05")}
    others = (
        [r.epochs for k, rs in ZO.items() if k not in named for r in rs if r.ended == "converged"]
        + [r.epochs for r in RD[("0.2",)]]
        + [r.epochs for rs in DO.values() for r in rs]
    )
    assert _within(f"the others between {min(others)} and {max(others)}.")


def test_zoneout_bullets() -> None:
    gains = [-sum(paired(ZO[k], UNREG)) / 3 for k in ZO if k != ("0", "0")]
    assert _within(f"by {min(gains):.3f}-{max(gains):.3f} BPC on average")
    for k in ZO:
        if k != ("0", "0"):
            assert _t_interval(paired(ZO[k], UNREG))[2] < 0, k
    best = zoneout_ranked()[0]
    assert best == ("0.5", "0.05")
    for k in (("0.25", "0.05"), ("0", "0.1")):
        lo, hi = _t_interval(paired(ZO[k], ZO[best]))[1:]
        assert lo < 0 < hi and _within(f"({lo:+.4f}, {hi:+.4f})")
    for k in (("0.25", "0.05"), ("0.5", "0.05")):
        assert all(d < 0 for d in paired(ZO[k], ZO[("0", "0.05")])), k


def test_table1_bullets() -> None:
    rows = table1()
    zoneout, rd = rows["zoneout"][1], rows["recurrent dropout"][1]
    diff = paired(zoneout, rd)
    t, p = paired_t(diff)
    assert _within(f"Zoneout minus recurrent dropout, paired by seed: {cell(diff, True)}")
    assert _within(f"on validation (seeds: {seeds_text(diff, True)}); paired t(2) = {t:.2f},")
    assert _within(f"two-sided p = {p:.3f}.") and all(d < 0 for d in diff)
    _, lo, hi = _t_interval(diff)
    assert _within(f"(paired interval {lo:.3f} to {hi:.3f})")
    assert _within(f"ahead by {-sum(diff) / 3:.3f} BPC on validation")
    diff = paired(rd, rows["dropout (not in the paper's Table 1)"][1])
    assert _within(f"Recurrent dropout minus dropout: {cell(diff, True)}") and max(diff) < 0


def test_first_26_epochs_repeat_the_26_epoch_study() -> None:
    """Seeds 0 and 1 of the converged runs against the 26-epoch runs of the same configuration."""
    gaps = []
    for study, data in ((ZONEOUT, ZO), (RECURRENT_DROPOUT, RD), (DROPOUT, DO)):
        small = _runs(SMALL[study])
        for key, runs in data.items():
            for seed in (0, 1):
                # The unregularized runs stopped at epoch 22 here (patience).
                a, b = small[key][seed].curve, runs[seed].curve
                gaps.append((study, max(abs(x - y) for x, y in zip(a, b, strict=False))))
    assert max(g for _, g in gaps) < 0.003
    assert (sum(g == 0 for _, g in gaps), len(gaps)) == (7, 16)
    assert _within(
        "their first 26 epochs repeat those runs to within 0.003 BPC (7 of the 16 runs exactly"
    )


def test_a_seed_run_again_on_another_machine() -> None:
    """Trial 4's seed 0 (63 epochs, retired) against the same seed in trial 6."""
    with _connect() as db:
        rows = db.execute(
            "SELECT a.epoch, a.valid_metric - b.valid_metric FROM zs_epochs a "
            "JOIN zs_trials ta ON ta.id = a.trial_id JOIN zs_studies s ON s.id = ta.study_id "
            "JOIN zs_trials tb ON tb.study_id = s.id AND tb.number = 6 "
            "JOIN zs_epochs b ON b.trial_id = tb.id AND b.seed = a.seed AND b.epoch = a.epoch "
            "WHERE s.name = ? AND ta.number = 4 AND a.seed = 0 ORDER BY a.epoch",
            (ZONEOUT,),
        ).fetchall()
    assert len(rows) == 63
    first, worst = abs(rows[0][1]), max(abs(d) for _, d in rows)
    assert f"{first:.1e}" == "1.1e-04" and f"{worst:.4f}" == "0.0033"
    assert _within("differ by 1.1e-4 BPC at epoch 1 and by up to 0.0033 over the 63 epochs")


def test_epoch_times() -> None:
    with _connect() as db:
        seconds = sorted(
            v
            for (v,) in db.execute(
                "SELECT e.seconds FROM zs_epochs e JOIN zs_trials t ON t.id = e.trial_id "
                "JOIN zs_studies s ON s.id = t.study_id "
                "WHERE s.name LIKE 'ptb-char-converged-%' AND t.state = 'COMPLETE'"
            )
        )
    n = len(seconds)
    median = stats.scoreatpercentile(seconds, 50)
    lo, hi = stats.scoreatpercentile(seconds, 10), stats.scoreatpercentile(seconds, 90)
    assert _within(f"Of the {n:,} epochs of the completed runs, the median took {median:.1f} s")
    assert _within(f"(10th-90th percentile {lo:.1f}-{hi:.1f} s)")


def test_driver_starts_counted_from_the_logs() -> None:
    text = (OUT / "run.log").read_text() + (OUT / "run-rd.log").read_text()
    starts = {s: text.count(f" run {s}\n") for s in (ZONEOUT, RECURRENT_DROPOUT, DROPOUT)}
    assert starts == {ZONEOUT: 9, RECURRENT_DROPOUT: 2, DROPOUT: 3}
    assert _within("driver was started 9 times") and _within(
        "recurrent dropout's twice and dropout's 3 times"
    )


# What the README quotes from shared/paper-facts.md, word for word.
PAPER_QUOTES = (
    "> Char-PTB: 1 layer of 1000 units, sequence length 100, batch 32, Adam, gradient clipping 1,",
    "> learning rate 0.002 (LSTM, GRU) and 0.0003 (tanh-RNN). Best LSTM: z_c = 0.5, z_h = 0.05.",
    "> Recurrent dropout was tried at p in {0.05, 0.2, 0.5, 0.7}; its best is p = 0.7.",
    "> | unregularized LSTM | 1.466 / 1.356 |",
    "> | recurrent dropout | 1.358 / 1.321 |",
    "> | zoneout | 1.362 / 1.27 |",
    "> Note the char-PTB row: on VALIDATION recurrent dropout (1.358) is slightly better than zoneout",  # noqa: E501
    "> (1.362); zoneout wins on TEST (1.27 vs 1.321).",
    "> Figure 3 (char-PTB validation BPC over z_c x z_h): low hidden rates (0.05-0.2) reliably help;",  # noqa: E501
    "> cell rates do well around 0.5. The authors searched nothing but the zoneout rates.",
)
PAPER_FACTS = Path(__file__).resolve().parents[3] / "shared" / "paper-facts.md"


def test_paper_numbers_are_quoted_word_for_word() -> None:
    """Every line the README quotes is one of PAPER_QUOTES; where the checked paper-facts file
    sits beside the repository (a working checkout), each is also checked against it."""
    quoted = [line for line in _readme().splitlines() if line.startswith(">")]
    assert quoted and all(
        line in PAPER_QUOTES or line in ("> | model | char-PTB BPC |", "> |---|---|")
        for line in quoted
    )
    if PAPER_FACTS.is_file():
        facts = PAPER_FACTS.read_text(encoding="utf-8").splitlines()
        for line in PAPER_QUOTES:
            # A table row quotes the char-PTB column only: the start of the paper's row.
            assert any(f == line[2:] or f.startswith(line[2:]) for f in facts), line
    for number in ("1.358", "1.362", "1.27", "1.321"):
        assert number in " ".join(quoted)


def test_the_remaining_numbers_of_the_text() -> None:
    """Counts, dates and the few numbers quoted outside the tables."""
    assert _within(f"the interval is {stats.t.ppf(0.975, 2):.1f} standard errors wide")
    runs = {
        s: sum(len(r) for r in d.values())
        for s, d in ((ZONEOUT, ZO), (RECURRENT_DROPOUT, RD), (DROPOUT, DO))
    }
    assert [row[-1] for row in _rows("# PTB characters at mid scale, to convergence")] == [
        str(runs[ZONEOUT]), str(runs[RECURRENT_DROPOUT]), str(runs[DROPOUT])
    ]  # fmt: skip
    regret = paired(ZO[("0", "0.05")], ZO[("0.5", "0.05")])
    _, lo, hi = _t_interval(regret)
    gap = f"by {sum(regret) / 3:.3f} BPC against (0.5, 0.05)"
    assert _within(f"{gap}, with a paired interval of ({lo:+.4f}, {hi:+.4f})")
    stop = sorted(r.epochs for r in ZO[("0", "0.05")])
    assert _within(f"It stops by patience at epochs {stop[0]}-{stop[-1]}, when the other three")
    with _connect() as db:
        retired = dict(
            db.execute(
                "SELECT s.name, COUNT(*) FROM zs_trials t JOIN zs_studies s ON s.id = t.study_id "
                "WHERE s.name LIKE 'ptb-char-converged-%' AND t.state = 'FAIL' GROUP BY s.name"
            ).fetchall()
        )
    assert retired == {ZONEOUT: 7, RECURRENT_DROPOUT: 1, DROPOUT: 2}
    assert _within(
        "7 zoneout trials, 1 recurrent dropout trial and 2 dropout trials are such retired"
    )
    log = (OUT / "run.log").read_text()
    first = log[log.index("=== ") + 4 :][:20]
    last = log[log.rindex("=== ") + 4 :][:20]
    assert (first[11:16], last[11:16]) == ("06:59", "19:54") and first[:10] == last[
        :10
    ] == "2026-12-05"
    assert _within("between 2026-12-05 06:59 and 19:54 UTC")


COMPARE = (
    OUT / "compare-ptb-char-converged-zoneout-vs-ptb-char-converged-recurrent-dropout-vs-pt.md"
)


def _compare_rows(nth: int) -> list[list[str]]:
    """Rows of the ``nth`` table of the compare output (`zoneout-study compare`)."""
    return _tables(COMPARE.read_text(encoding="utf-8"))[nth]


def test_test_bpc_is_what_compare_wrote_for_the_same_selection() -> None:
    """Test BPC cannot be recomputed from the database (it needs the models); the README's is
    the compare output's, whose validation column is the one recomputed here."""
    by_method = {r[0]: r for r in _compare_rows(0)}
    readme = {r[0]: r for r in _rows("## Table 1 at convergence", 1)}
    ours = table1()
    names = {"dropout (not in the paper's Table 1)": "dropout"}
    assert set(readme) == set(ours)
    means = []
    for method, (_, runs) in ours.items():
        row = by_method[names.get(method, method)]
        assert row[2] == cell([r.best for r in runs]), method  # validation, recomputed
        test, source = row[3].split(") (", 1)
        assert readme[method][1] == test + ")", method
        assert readme[method][2] == ("" if method == "unregularized" else row[5]), method
        means.append(float(row[2].split()[0]) - float(test.split()[0]))
        if method in ("unregularized", "recurrent dropout"):
            assert source.startswith("retrained, 3 seeds"), method
        else:
            assert source.startswith("best checkpoint of each of 3 seeds"), method
    assert _within(f"({min(means):.3f}-{max(means):.3f} here)")
    assert "validation reproduced exactly" in by_method["unregularized"][3]
    assert "differs from the study's by up to 0.00098" in by_method["recurrent dropout"][3]
    assert _within("differ from the study's by up to 0.00098 BPC on validation")
    pair = {(r[0], r[1]): r for r in _compare_rows(1)}[("zoneout", "recurrent dropout")]
    assert _within(f"Zoneout minus recurrent dropout on test, paired by seed: {pair[3]}")
    lo, hi = pair[3].split("[")[1].split("]")[0].split(", ")
    assert _within(f"paired interval {lo} to {hi})")
