"""``zoneout-study status`` and ``list``: a study's trials, or every study, as tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dashboards import PARAM_PREFIX, Col, TrialState, layer_path_lines, layer_paths
from study.cli._base import app, console, fail
from study.cli._paths import check_output_file, written_or_removed
from study.cli._storage import open_store, require_study, storage_option
from study.cli._words import FailureWords, cell, is_missing, plain_table

if TYPE_CHECKING:
    pass


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
) -> None:
    """A table of a study's trials (or of all studies)."""
    if csv_path is not None:
        check_output_file(csv_path, "--csv")
        check_output_file(csv_path.with_suffix(".epochs.csv"), "--csv")
        check_output_file(csv_path.with_suffix(".runs.csv"), "--csv")
    store = open_store(storage)
    if study_name is None:
        _print_studies(store)
        return
    require_study(store, study_name)
    frame = store.trials_frame(study_name)
    if frame.empty:
        fail(f"study {study_name!r} has no trials yet; `zoneout-study run` its spec")
    if csv_path is not None:
        with written_or_removed(csv_path.parent):
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            frame.drop(columns=["config"], errors="ignore").to_csv(csv_path, index=False)
            store.epochs_frame(study_name).to_csv(csv_path.with_suffix(".epochs.csv"), index=False)
            store.runs_frame(study_name).to_csv(csv_path.with_suffix(".runs.csv"), index=False)
    table = plain_table(f"study {study_name}")
    param_columns = [c for c in frame.columns if c.startswith(PARAM_PREFIX)]
    nodes = {str(node) for node in frame["node"].dropna()}
    # One node (a laptop): said once below the table rather than in a column of repeats.
    node_column = ["node"] if len(nodes) > 1 else []
    columns = [Col.NUMBER, Col.STATE, *param_columns, Col.BEST_VALUE, Col.FINAL_VALUE, Col.EPOCHS]
    columns += node_column
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
    ordered = frame.sort_values(Col.NUMBER)
    reasons = FailureWords(frame)
    for index, row in ordered.iterrows():
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
    console.print(table)
    if len(nodes) == 1:
        console.print(f"every trial ran on {nodes.pop()}", highlight=False, markup=False)
    for line in layer_path_lines(layer_paths(store.runs_frame(study_name))):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    # Reasons are sentences: one line each below the table, where they are not cut to fit.
    for index, row in ordered.iterrows():
        error = row.get(Col.ERROR)
        if isinstance(error, str) and error:
            console.print(
                f"trial {row[Col.NUMBER]} {reasons.sentence(index, row[Col.STATE], error)}",
                highlight=False,
                markup=False,
            )


@app.command("list")
def list_studies(storage: Annotated[str | None, storage_option()] = None) -> None:
    """The studies in the database."""
    _print_studies(open_store(storage))


def _plan_size(stored_spec: dict[str, Any]) -> int | None:
    """How many configurations a stored spec plans: n_trials, or its grid's size if smaller."""
    from study.plan import StudyPlan
    from study.spec import SpecError, validate_spec

    n_trials = stored_spec.get("n_trials")
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
    ones running now."""
    frame = store.studies_frame()
    if frame.empty:
        console.print("no studies yet; `zoneout-study run SPEC.yaml` starts one")
        return
    table = plain_table("studies")
    table.add_column("study", overflow="fold")  # frame-contract: not a column (a heading)
    table.add_column("status", no_wrap=True)
    for column in ("plan", "complete", "pruned", "failed", "interrupted", "running"):
        table.add_column(column, justify="right", no_wrap=True)
    any_requeued = False
    for _, study in frame.iterrows():
        name = str(study["name"])
        kinds = FailureWords(store.trials_frame(name)).kinds()
        requeued = kinds.count("interrupted") + kinds.count("driver lost") + kinds.count("cut off")
        any_requeued = any_requeued or requeued > 0
        plan = _plan_size(store.study_spec(name) or {})
        table.add_row(
            name,
            str(study["status"]),
            cell(plan),
            str(kinds.count(TrialState.COMPLETE)),
            str(kinds.count(TrialState.PRUNED)),
            str(kinds.count(TrialState.FAIL)),
            str(requeued),
            str(kinds.count(TrialState.RUNNING)),
        )
    console.print(table)
    if any_requeued:
        console.print(
            "interrupted: cut short (Ctrl-C or a lost driver); the next `zoneout-study run` of "
            "the spec continues each from its last checkpoint, so they do not count towards "
            "the plan",
            soft_wrap=False,
        )
