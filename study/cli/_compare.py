"""``zoneout-study compare``: Table 1 across studies (or their committed CSV tables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from study.cli._base import app, console, fail
from study.cli._paths import check_output_dir, written_or_removed
from study.cli._storage import open_store, storage_option


@app.command()
def compare(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="STUDY [STUDY ...]",
            help="stored studies, or the *-trials.csv tables `status --csv` wrote",
        ),
    ],
    storage: Annotated[str | None, storage_option()] = None,
    baseline: Annotated[
        str | None,
        typer.Option(
            "--baseline",
            metavar="STUDY_OR_TRIAL",
            help="a method or study name, or STUDY:TRIAL (default: the unregularized "
            "configuration when a study ran it)",
        ),
    ] = None,
    test: Annotated[
        str,
        typer.Option(
            "--test",
            help="test metric of each selected configuration: auto (from its best checkpoints "
            "when they are on this machine), auto-or-retrain (retrain where they are not), "
            "retrain, or none",
        ),
    ] = "auto",
    out: Annotated[Path | None, typer.Option("--out", help="output directory")] = None,
    png: Annotated[bool, typer.Option("--png/--no-png", help="PNG of the table (Chromium)")] = True,
) -> None:
    """Table 1 across regularizers: per method the validation-selected configuration, its
    validation metric over seeds, its test metric and the seed-paired difference to a baseline;
    Markdown, HTML and PNG, and a note in each stored Optuna study."""
    from study.compare import HeldOutMetric, compare_studies

    try:
        mode = HeldOutMetric(test)
    except ValueError:
        fail(f"--test must be one of {', '.join(m.value for m in HeldOutMetric)}, not {test!r}")
    url = None
    if not all(source.endswith("-trials.csv") for source in sources):
        url = open_store(storage).url
    for source in sources:
        if source.endswith("-trials.csv") and Path(source).is_dir():
            fail(f"{source}: is a directory; expected the *-trials.csv table `status --csv` wrote")
        if source.endswith("-trials.csv") and not Path(source).is_file():
            fail(f"no such table: {source}")
    out_dir = out or Path("reports") / "compare"
    check_output_dir(out_dir, "--out")
    with written_or_removed(out_dir):
        result = compare_studies(
            sources, storage_url=url, out_dir=out_dir, baseline=baseline, test=mode, png=png
        )
    console.print(result.markdown, markup=False, highlight=False, soft_wrap=True)
    for path in result.paths.values():
        console.print(str(path), markup=False, highlight=False, soft_wrap=True)
    for message in result.messages:
        console.print(message, markup=False, highlight=False)
