"""``zoneout-study run``: a study run (or resumed) from its spec, and its exit status."""

from __future__ import annotations

import os
import sys
from collections.abc import Collection
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from dashboards import Col, TrialState
from study.cli._base import app, console, error_console
from study.cli._paths import check_input_file, check_output_dir, written_or_removed
from study.cli._storage import check_writable, storage_option
from study.cli._words import FailureWords, retired_words


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="a study spec")],
    storage: Annotated[str | None, storage_option()] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster address, e.g. 'auto'")
    ] = None,
    n_trials: Annotated[
        int | None,
        typer.Option(
            "--n-trials",
            min=1,
            max=100_000,
            help="stop this run once the study holds N configurations (a total, at most its "
            "plan); the spec's n_trials is unchanged",
        ),
    ] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="where the HTML/PNG report goes")
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="skip the report")] = False,
    accept_change: Annotated[
        bool,
        typer.Option(
            "--accept-change",
            help="continue a stored study whose plan settings (n_trials, scheduler, sampler "
            "seed or options, failure) this spec changes; the change is recorded",
        ),
    ] = False,
) -> None:
    """Run (or resume) a study: Optuna suggests, Ray Tune trains, the store keeps everything.

    Exit status: 0 when the study's plan is done; 2 for a spec or storage that cannot run;
    3 when the plan is done and no trial completed (the reasons are printed);
    130 / 143 / 129 when Ctrl-C / SIGTERM / SIGHUP stopped it; 75 when it stopped itself (a full
    disk, a trial cut off again and again): running the spec again continues it in each case."""
    from study.runner import resolve_storage, run_study
    from study.spec import MAX_SPEC_BYTES, load_spec
    from study.store import mask_url

    check_input_file(spec_path, "study spec", MAX_SPEC_BYTES)
    spec = load_spec(spec_path)
    url = resolve_storage(spec, storage)
    check_writable(url)  # before Ray starts
    report_path = report_dir or Path("reports") / spec.name
    if not no_report:
        check_output_dir(report_path, "--report-dir")
    _check_data(spec.base)
    # A run refused after it made the checkpoint directory (a trial no node fits, a study
    # deleted elsewhere) leaves no empty directory behind.
    checkpoints = spec.checkpoint_path or str(Path.cwd() / "runs")
    with nullcontext() if "://" in checkpoints else written_or_removed(Path(checkpoints)):
        outcome = run_study(
            spec,
            storage=storage,
            ray_address=ray_address,
            n_trials=n_trials,
            console=console,
            accept_changes=accept_change,
        )
    if not outcome.opened:  # stopped while Ray was starting
        console.print(
            f"interrupted before study {spec.name!r} was opened; nothing was run or written",
            markup=False,
            highlight=False,
        )
        signum = outcome.stopped_by
        sys.stdout.flush()
        sys.stderr.flush()
        # Ray, stopped halfway through ray.init, can crash the interpreter's teardown
        # (SIGSEGV in its native destructors); what this process had started is shut down
        # and there is nothing left to write, so it leaves without the teardown.
        os._exit(128 + int(signum) if signum is not None else 130)
    kinds = _trial_kinds(url, spec.name, continued=outcome.continued or ())
    cut = kinds.count("interrupted") + kinds.count("driver lost") + kinds.count("cut off")
    console.print(
        f"study {outcome.name!r} {outcome.status}: {kinds.count(TrialState.COMPLETE)} complete, "
        f"{kinds.count(TrialState.PRUNED)} pruned, {kinds.count(TrialState.FAIL)} failed"
        + (
            f"; {cut} cut off by the run, not counted (replacements continue them from their "
            "checkpoints)"
            if cut
            else ""
        )
        + f" ({outcome.wall_seconds:.0f} s)"
    )
    if outcome.stop_reason:
        console.print(f"stopped: {outcome.stop_reason}", markup=False, highlight=False)
    if outcome.epochs_written:
        console.print(
            f"store: {outcome.epochs_written} epoch results written in "
            f"{outcome.store_write_seconds:.2f} s "
            f"({100 * outcome.store_write_seconds / max(outcome.wall_seconds, 1e-9):.2f}% "
            "of the study's wall time)",
            style="dim",
        )
    if outcome.best_params is not None:
        console.print(
            f"best trial #{outcome.best_number}: {spec.metric} {outcome.best_value:.4f} "
            f"with {outcome.best_params}",
            markup=False,
        )
    if not no_report:
        # Imported here: `study.cli` registers the commands in the order --help lists them.
        from study.cli._report import write_report

        analysis = write_report(url, spec.name, report_path)
        if analysis is not None and outcome.status != "interrupted":
            from dashboards import headline

            # What the study found, in the report's words (the summary has the whole table).
            for line in headline(analysis):
                console.print(line, markup=False, soft_wrap=True)
    # Commands and URLs stay on one line whatever the width: they are copied and pasted.
    console.print(f"database: {mask_url(url)}", soft_wrap=True, markup=False)
    if outcome.status == "interrupted":
        console.print(
            f"interrupted; resume with: zoneout-study run {spec_path}"
            + (f" --storage '{mask_url(url)}'" if storage else ""),
            soft_wrap=True,
            markup=False,
            highlight=False,
        )
        if outcome.stopped_by is not None:
            raise typer.Exit(code=128 + int(outcome.stopped_by))
        raise typer.Exit(code=75 if outcome.stop_reason else 130)
    _exit_if_nothing_finished(url, spec.name, continued=outcome.continued or ())


def _exit_if_nothing_finished(
    url: str, study_name: str, *, continued: Collection[int] = ()
) -> None:
    """A study whose plan ran and no trial finished well: what failed and why, exit 3.
    ``continued``: retired trials a replacement has continued (not counted as interrupted)."""
    from study.failures import render_lines, summarize_failures
    from study.store import Store

    with Store(url) as store:
        failures = summarize_failures(store.trials_frame(study_name), continued=continued)
    if failures.complete == 0 and failures.failed:
        for line in render_lines(failures):
            error_console.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=3)


def _trial_kinds(url: str, study_name: str, *, continued: Collection[int] = ()) -> list[str]:
    """Each stored trial's state, with 'interrupted' / 'driver lost' for the FAIL rows the
    service retired to be continued: Optuna counts them as FAIL; the summary does not. A
    retired trial in ``continued`` (its replacement has run: study.reaper.continued_trials) is
    left out: nothing of it is left to continue."""
    from study.store import Store

    with Store(url) as store:
        trials = store.trials_frame(study_name)
    retired = set(retired_words().values())
    return [
        kind
        for kind, number in zip(FailureWords(trials).kinds(), trials[Col.NUMBER], strict=True)
        if not (kind in retired and int(number) in continued)
    ]


def _check_data(config: Any) -> None:
    """Missing data is a user error (DataNotFoundError) worth one line before Ray starts."""
    from trials.tasks import load_task

    load_task(config)
