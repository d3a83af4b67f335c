"""``zoneout-study status`` and ``list``: a study's trials, or every study, as tables.

What they cost does not grow with a study: past :data:`SUMMARY_ABOVE` trials, ``status STUDY``
shows the trials by state, the :data:`SHOWN` best and the :data:`SHOWN` latest, and says how
many rows it left out (``--all`` prints every row; ``--csv`` writes them all, at any size); the
counts and the rows are the database's answers (``study.store``: GROUP BY, ORDER BY ... LIMIT),
not a frame of every trial. ``list`` counts every study's trials in one query.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dashboards import PARAM_PREFIX, Col, TrialState
from study.cli._base import app, console, fail
from study.cli._paths import check_output_file, written_or_removed
from study.cli._storage import open_store, require_study, storage_option
from study.cli._words import (
    FailureWords,
    cell,
    is_missing,
    kind_counts,
    plain_table,
    retired_words,
)

# A study of up to this many trials shows every row; a larger one, a summary (``--all``: every
# row). Small studies (the quickstart, a laptop's) print as they always did.
SUMMARY_ABOVE = 30
# How many of the best, and of the latest, trials a summary shows.
SHOWN = 10
# The order a summary counts trials in; any other kind follows, by name.
_KIND_ORDER = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@app.command()
def status(
    study_name: Annotated[str | None, typer.Argument(metavar="STUDY")] = None,
    storage: Annotated[str | None, storage_option()] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv", help="also write the trial table (and FILE.epochs.csv, FILE.runs.csv) as CSV"
        ),
    ] = None,
    all_rows: Annotated[
        bool,
        typer.Option(
            "--all",
            help=f"print every trial's row (a study of over {SUMMARY_ABOVE} trials shows a "
            f"summary: the counts, the {SHOWN} best and the {SHOWN} latest)",
        ),
    ] = False,
) -> None:
    """A table of a study's trials (a large study's summarised; --all: every row), or of all
    studies."""
    if csv_path is not None:
        check_output_file(csv_path, "--csv")
        check_output_file(csv_path.with_suffix(".epochs.csv"), "--csv")
        check_output_file(csv_path.with_suffix(".runs.csv"), "--csv")
    store = open_store(storage)
    if study_name is None:
        _print_studies(store)
        return
    require_study(store, study_name)
    counts = store.trial_counts(study_name)
    total = int(counts["trials"].sum())
    if total == 0:
        fail(f"study {study_name!r} has no trials yet; `zoneout-study run` its spec")
    frame = None
    if csv_path is not None:
        frame = store.trials_frame(study_name)
        with written_or_removed(csv_path.parent):
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            frame.drop(columns=["config"], errors="ignore").to_csv(csv_path, index=False)
            store.epochs_frame(study_name).to_csv(csv_path.with_suffix(".epochs.csv"), index=False)
            store.runs_frame(study_name).to_csv(csv_path.with_suffix(".runs.csv"), index=False)
    if all_rows or total <= SUMMARY_ABOVE:
        _print_every_trial(
            store, study_name, store.trials_frame(study_name) if frame is None else frame
        )
    else:
        _print_summary(store, study_name, counts, total)


def _print_every_trial(store: Any, study_name: str, frame: Any) -> None:
    """Every trial's row, by number; below it what the rows share and each trial's reason."""
    nodes = {str(node) for node in frame["node"].dropna()}
    ordered = frame.sort_values(Col.NUMBER)
    reasons = FailureWords(frame)
    console.print(_table(f"study {study_name}", ordered, reasons, node_column=len(nodes) > 1))
    _print_below(store, study_name, ordered, reasons, nodes)


def _print_summary(store: Any, study_name: str, counts: Any, total: int) -> None:
    """The trials by state, the best and the latest :data:`SHOWN`, and what was left out."""
    best = store.ranked_complete(study_name, SHOWN)
    latest = sorted(store.latest_numbers(study_name, SHOWN))
    frame = store.trials_frame(study_name, numbers=[*best, *latest])
    kinds = _kinds(store, study_name, counts)
    order = [*map(str, _KIND_ORDER), *retired_words().values(), str(TrialState.RUNNING)]
    named = sorted(kinds, key=lambda k: (order.index(k) if k in order else len(order), k))
    console.print(
        f"study {study_name}: {total} trials: "
        + ", ".join(f"{kinds[kind]} {kind}" for kind in named),
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    nodes = set(store.trial_nodes(study_name, 2))
    # Rows named by their trial number: the best and the latest may share one.
    by_number = frame.set_axis([int(number) for number in frame[Col.NUMBER]])
    reasons = FailureWords(by_number)
    complete = kinds.get(str(TrialState.COMPLETE), 0)
    if best:
        title = f"study {study_name}: the {len(best)} best by score (of {complete} COMPLETE)"
        console.print(_table(title, by_number.loc[best], reasons, node_column=len(nodes) > 1))
    title = f"study {study_name}: the {len(latest)} latest"
    console.print(_table(title, by_number.loc[latest], reasons, node_column=len(nodes) > 1))
    _print_below(store, study_name, by_number.sort_index(), reasons, nodes)
    left_out = total - len(frame)
    console.print(
        f"{left_out} of {total} trials not shown: `zoneout-study status {study_name} --all` "
        "prints every row, `--csv FILE` writes them all",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


def _table(title: str, rows: Any, reasons: FailureWords, *, node_column: bool) -> Any:
    """A table of ``rows`` (a trials frame's rows, in the order given)."""
    table = plain_table(title)
    param_columns = [c for c in rows.columns if c.startswith(PARAM_PREFIX)]
    columns = [Col.NUMBER, Col.STATE, *param_columns, Col.BEST_VALUE, Col.FINAL_VALUE, Col.EPOCHS]
    # One node (a laptop): said once below the table rather than in a column of repeats.
    columns += ["node"] if node_column else []
    # "score": the one number every command ranks by (study.score); "last": the seeds' mean at
    # their last epoch, which shows overfitting.
    headers = {Col.NUMBER: "#", Col.BEST_VALUE: "score", Col.FINAL_VALUE: "last"}
    for column in columns:
        table.add_column(
            headers.get(column, column.removeprefix(PARAM_PREFIX)),
            overflow="fold",
            no_wrap=column == Col.STATE,
            justify="left" if column in (Col.STATE, "node") else "right",
        )
    for index, row in rows.iterrows():
        cells = []
        for column in columns:
            if column == Col.STATE:
                cells.append(reasons.kind(index, row.get(Col.STATE)))
            elif column == Col.EPOCHS and is_missing(row.get(Col.EPOCHS)):
                cells.append("0")
            elif column in (Col.BEST_VALUE, Col.FINAL_VALUE) and not is_missing(row.get(column)):
                # Four decimals, as `run` and `export` print them: configurations of one study
                # often differ in the third.
                cells.append(f"{float(row[column]):.4f}")
            else:
                cells.append(cell(row.get(column)))
        table.add_row(*cells)
    return table


def _kinds(store: Any, study_name: str, counts: Any) -> dict[str, int]:
    """A study's trials per :meth:`FailureWords.kind`, from the store's ``trial_counts``; for a
    database from before the ``retired`` column, from every trial's error text."""
    kinds = kind_counts(counts)
    if kinds is None:
        kinds = {}
        for kind in FailureWords(store.trials_frame(study_name)).kinds():
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _print_below(
    store: Any, study_name: str, rows: Any, reasons: FailureWords, nodes: set[str]
) -> None:
    """Below a study's table: the node every trial ran on (when one), the layer paths its runs
    took, and each shown trial's reason (sentences, on lines of their own: not cut to fit)."""
    if len(nodes) == 1:
        console.print(f"every trial ran on {next(iter(nodes))}", highlight=False, markup=False)
    for line in _layer_path_lines(store, study_name):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for index, row in rows.iterrows():
        error = row.get(Col.ERROR)
        if isinstance(error, str) and error:
            console.print(
                f"trial {row[Col.NUMBER]} {reasons.sentence(index, row[Col.STATE], error)}",
                highlight=False,
                markup=False,
            )


def _layer_path_lines(store: Any, study_name: str) -> list[str]:
    """dashboards' lines on the layer paths the study's runs took; none where no run recorded
    one (and then dashboards' summary module, which loads scipy, is not imported)."""
    runs = store.run_layer_paths(study_name)
    if Col.LAYER_PATH not in runs.columns or not runs[Col.LAYER_PATH].notna().any():
        return []
    from dashboards import layer_path_lines, layer_paths

    return layer_path_lines(layer_paths(runs))


@app.command("list")
def list_studies(storage: Annotated[str | None, storage_option()] = None) -> None:
    """The studies in the database."""
    _print_studies(open_store(storage))


def _plan_size(stored_spec: dict[str, Any]) -> int | None:
    """How many configurations a stored spec plans: n_trials, or its grid's size if smaller."""
    n_trials = stored_spec.get("n_trials")
    sampler = stored_spec.get("sampler")
    promote = stored_spec.get("promote")
    # A stored spec is one `run` validated: the spec's model (study.spec, which loads torch
    # through trials.tasks) is needed only for a grid's size or a promotion's defaults.
    if isinstance(n_trials, int) and isinstance(sampler, dict) and sampler.get("name") != "grid":
        if promote is None:
            return n_trials
        top, points = (
            (promote.get("top"), promote.get("points"))
            if isinstance(promote, dict)
            else (None, None)
        )
        if isinstance(top, int) and isinstance(points, list):
            return top + len(points)
    from study.plan import StudyPlan
    from study.spec import SpecError, validate_spec

    try:
        spec = validate_spec(stored_spec)
    except SpecError:  # a snapshot an older version wrote: its n_trials is the plan
        return n_trials
    if spec.promote is not None:  # at most: a named point among the top is run once
        return spec.promote.top + len(spec.promote.points)
    return StudyPlan.from_spec(spec, sampler=spec.sampler.name, points=spec.points).size


def _print_studies(store: Any) -> None:
    """One row per study, in words that add up: the plan (n_trials of the spec), trials that
    finished (complete, pruned, failed), trials cut short to be continued (interrupted), and the
    ones running now. The trials are counted by the database, every study in one query."""
    frame = store.studies_frame()
    if frame.empty:
        console.print("no studies yet; `zoneout-study run SPEC.yaml` starts one")
        return
    table = plain_table("studies")
    table.add_column("study", overflow="fold")  # frame-contract: not a column (a heading)
    table.add_column("status", no_wrap=True)
    for column in ("plan", "complete", "pruned", "failed", "interrupted", "running"):
        table.add_column(column, justify="right", no_wrap=True)
    counts = store.trial_counts()
    any_requeued = False
    for _, study in frame.iterrows():
        name = str(study["name"])
        kinds = _kinds(store, name, counts[counts[Col.STUDY] == name])
        requeued = sum(kinds.get(word, 0) for word in retired_words().values())
        any_requeued = any_requeued or requeued > 0
        plan = _plan_size(store.study_spec(name) or {})
        table.add_row(
            name,
            str(study["status"]),
            cell(plan),
            str(kinds.get(TrialState.COMPLETE, 0)),
            str(kinds.get(TrialState.PRUNED, 0)),
            str(kinds.get(TrialState.FAIL, 0)),
            str(requeued),
            str(kinds.get(TrialState.RUNNING, 0)),
        )
    console.print(table)
    if any_requeued:
        console.print(
            "interrupted: cut short (Ctrl-C or a lost driver); the next `zoneout-study run` of "
            "the spec continues each from its last checkpoint, so they do not count towards "
            "the plan",
            soft_wrap=False,
        )
