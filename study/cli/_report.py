"""``zoneout-study report``: the sensitivity report of a stored study or of a committed CSV
table; :func:`write_report`, which `run` calls too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from study.cli._base import app, console, fail
from study.cli._paths import check_output_dir, written_or_removed
from study.cli._storage import open_store, require_study, storage_option

if TYPE_CHECKING:
    from dashboards import StudyAnalysis
    from study.report import Baseline


@app.command()
def report(
    study_name: Annotated[str, typer.Argument(metavar="STUDY")],
    storage: Annotated[str | None, storage_option()] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output directory")] = None,
    png: Annotated[bool, typer.Option("--png/--no-png", help="PNG per figure (Chromium)")] = True,
    baseline_text: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            metavar="TRIAL|best",
            help="compare every configuration with this trial's, seed by seed, or with the "
            "best one ('best': which configurations can be told apart from it) (default: the "
            "unregularized configuration, when the study ran it)",
        ),
    ] = None,
    save_to_study: Annotated[
        bool,
        typer.Option(
            "--save-to-study",
            help="also save the figures and the summary into the Optuna study, for "
            "optuna-dashboard (writes into the database; `run` always does)",
        ),
    ] = False,
) -> None:
    """Sensitivity report: one offline HTML file and a PNG per figure; reads the database and
    writes nothing into it (--save-to-study: the figures for optuna-dashboard too). STUDY may
    also be a *-trials.csv table that `status --csv` wrote (its spec, <study>.yaml beside it,
    gives the search space)."""
    from study.report import BEST

    baseline: Baseline = None
    if baseline_text == BEST:
        baseline = BEST
    elif baseline_text is not None:
        if not baseline_text.isdigit():
            fail(f"--baseline takes a trial number or 'best', not {baseline_text!r}")
        baseline = int(baseline_text)
    if study_name.endswith("-trials.csv"):
        from study.report import write_table_report

        table = Path(study_name)
        if table.is_dir():
            fail(f"{table}: is a directory; expected the *-trials.csv table")
        if not table.is_file():
            fail(f"no such table: {table}")
        out_dir = out or Path("reports") / table.name.removesuffix("-trials.csv")
        check_output_dir(out_dir, "--out")
        with written_or_removed(out_dir):
            result = write_table_report(table, out_dir, png=png, baseline_trial=baseline)
        console.print(f"report: {result.html_path}")
        for message in result.messages:
            console.print(message, markup=False)
        return
    store = open_store(storage)
    require_study(store, study_name, names_files=True)
    write_report(
        store.url,
        study_name,
        out or Path("reports") / study_name,
        png=png,
        baseline=baseline,
        save_to_study=save_to_study,
    )


def write_report(
    url: str,
    study_name: str,
    out_dir: Path,
    *,
    png: bool = True,
    baseline: Baseline = None,
    save_to_study: bool = True,
) -> StudyAnalysis | None:
    """The report of the stored study ``study_name`` written into ``out_dir``, its figures and
    summary saved into the Optuna study with ``save_to_study`` (what `run` does at its end);
    its analysis (None when there was nothing to analyse)."""
    from dashboards import start_png_renderer

    check_output_dir(out_dir, "--out")
    # The browser for the PNGs starts first (about 1.5 s here), while the analysis is imported
    # and the study read.
    renderer = start_png_renderer() if png else None
    try:
        from study.report import default_cache_dir, write_study_report

        with written_or_removed(out_dir):
            result = write_study_report(
                url,
                study_name,
                out_dir,
                png=png,
                save_to_optuna=save_to_study,
                baseline_trial=baseline,
                importance_cache=default_cache_dir(),
                renderer=renderer,
            )
    finally:
        if renderer is not None:
            renderer.close()
    console.print(f"report: {result.html_path}")
    for message in result.messages:
        console.print(message, markup=False)
    return result.analysis
