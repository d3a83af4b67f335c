"""The ``zoneout-study`` command line.

Each command is a thin shell over a library function; user mistakes (a bad config, missing
data, an unreachable database) end with exit status 2 and one line that says what to do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

app = typer.Typer(
    name="zoneout-study",
    help="Hyperparameter studies for zoneout RNNs: Optuna suggests, Ray Tune schedules, "
    "one SQL database keeps every trial and epoch.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
error_console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Hyperparameter studies for zoneout RNNs."""


def fail(message: str) -> NoReturn:
    """One clear line and exit status 2: the contract for every user error."""
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def train(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG.yaml", help="a trial config")],
    set_values: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config key: --set zoneout_cell=0.5 (repeatable)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda or auto (overrides the config)")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="override epochs")] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-dir", help="keep per-epoch checkpoints here and resume from them"
        ),
    ] = None,
) -> None:
    """Train one config (for example one exported from a study) and print its epochs."""
    from trials.config import ConfigError, load_config
    from trials.data import DataNotFoundError
    from trials.train import EpochResult
    from trials.train import train as run_training

    overrides = list(set_values or [])
    if device is not None:
        overrides.append(f"device={device}")
    if epochs is not None:
        overrides.append(f"epochs={epochs}")
    try:
        config = load_config(config_path, overrides)
    except ConfigError as error:
        fail(str(error))

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    rows: list[EpochResult] = []
    with Progress(
        TextColumn("[bold]epoch {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task_id = progress.add_task("training", total=config.epochs)

        def report(result: EpochResult, _checkpoint: Path | None) -> None:
            rows.append(result)
            progress.update(
                task_id,
                completed=result.epoch,
                description=f"valid {result.metric} {result.valid_metric:.4f}",
            )

        try:
            result = run_training(config, report=report, checkpoint_dir=checkpoint_dir)
        except DataNotFoundError as error:
            fail(str(error))
        except (ValueError, RuntimeError) as error:
            fail(str(error))

    table = Table(title=f"{config.task}: {config_path.name}")
    for column in ("epoch", "train loss", "valid loss", f"valid {result.metric}", "tokens/s", "s"):
        table.add_column(column, justify="right")
    for row in result.epochs:
        table.add_row(
            str(row.epoch),
            f"{row.train_loss:.4f}",
            f"{row.valid_loss:.4f}",
            f"{row.valid_metric:.4f}",
            f"{row.tokens_per_second:,.0f}",
            f"{row.seconds:.1f}",
        )
    console.print(table)
    if result.status == "diverged":
        error_console.print(f"[bold red]diverged:[/] {result.reason}")
        raise typer.Exit(code=1)
    console.print(
        f"best epoch {result.best_epoch}: valid {result.metric} {result.best_valid_metric:.4f}; "
        f"test {result.metric} {result.test_metric:.4f} ({result.data_source})"
    )


def _storage_option() -> Any:
    return typer.Option(
        "--storage",
        help="SQLAlchemy URL (default: $ZONEOUT_STUDY_STORAGE or sqlite:///zoneout-studies.db)",
    )


def _resolve_storage(storage: str | None) -> str:
    from study.store import default_storage_url

    return storage or default_storage_url()


def _open_store(storage: str | None) -> Any:
    from study.store import Store, StoreError

    try:
        return Store.open(_resolve_storage(storage))
    except StoreError as error:
        fail(str(error))


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="a study spec")],
    storage: Annotated[str | None, _storage_option()] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Ray cluster address, e.g. 'auto'")
    ] = None,
    n_trials: Annotated[int | None, typer.Option("--n-trials", min=1)] = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="where the HTML/PNG report goes")
    ] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="skip the report")] = False,
) -> None:
    """Run (or resume) a study: Optuna suggests, Ray Tune trains, the store keeps everything."""
    from study.runner import StudyRunError, resolve_storage, run_study
    from study.spec import SpecError, load_spec
    from study.store import StoreError, mask_url

    try:
        spec = load_spec(spec_path)
    except SpecError as error:
        fail(str(error))
    _check_data(spec.base)
    try:
        outcome = run_study(
            spec, storage=storage, ray_address=ray_address, n_trials=n_trials, console=console
        )
    except (StoreError, StudyRunError) as error:
        fail(str(error))
    url = resolve_storage(spec, storage)
    counts = outcome.counts
    console.print(
        f"study {outcome.name!r} {outcome.status}: {counts.get('COMPLETE', 0)} complete, "
        f"{counts.get('PRUNED', 0)} pruned, {counts.get('FAIL', 0)} failed "
        f"({outcome.wall_seconds:.0f} s)"
    )
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
            f"with {outcome.best_params}"
        )
    if not no_report:
        _write_report(url, spec.name, report_dir or Path("reports") / spec.name)
    console.print(f"database: {mask_url(url)}")
    if outcome.status == "interrupted":
        console.print(
            f"interrupted; resume with: zoneout-study run {spec_path}"
            + (f" --storage '{mask_url(url)}'" if storage else "")
        )
        raise typer.Exit(code=130)


def _check_data(config: Any) -> None:
    """Missing data is a user error worth one line before any Ray worker starts."""
    from trials.data import DataNotFoundError
    from trials.tasks import load_task

    try:
        load_task(config)
    except DataNotFoundError as error:
        fail(str(error))


def _write_report(
    url: str, study_name: str, out_dir: Path, *, png: bool = True, baseline: int | None = None
) -> None:
    from study.report import write_study_report

    result = write_study_report(url, study_name, out_dir, png=png, baseline_trial=baseline)
    console.print(f"report: {result.html_path}")
    for message in result.messages:
        console.print(message)


@app.command()
def status(
    study_name: Annotated[str | None, typer.Argument(metavar="STUDY")] = None,
    storage: Annotated[str | None, _storage_option()] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option("--csv", help="also write the trial table (and FILE.epochs.csv) as CSV"),
    ] = None,
) -> None:
    """A table of a study's trials (or of all studies)."""
    from study.store import StoreError

    store = _open_store(storage)
    if study_name is None:
        _print_studies(store)
        return
    try:
        frame = store.trials_frame(study_name)
    except StoreError as error:
        fail(str(error))
    if frame.empty:
        fail(f"no trials for study {study_name!r}; `zoneout-study list` shows the studies")
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        frame.drop(columns=["config"], errors="ignore").to_csv(csv_path, index=False)
        store.epochs_frame(study_name).to_csv(csv_path.with_suffix(".epochs.csv"), index=False)
    table = Table(title=f"study {study_name}")
    param_columns = [c for c in frame.columns if c.startswith("param_")]
    columns = ["number", "state", *param_columns, "best_value", "final_value", "epochs", "node"]
    for column in columns:
        table.add_column(column.removeprefix("param_"), overflow="fold")
    ordered = frame.sort_values("number")
    for _, row in ordered.iterrows():
        table.add_row(*(_cell(row.get(column)) for column in columns))
    console.print(table)
    # Reasons are sentences: one line each below the table, where they are not cut to fit.
    for _, row in ordered.iterrows():
        error = row.get("error")
        if isinstance(error, str) and error:
            console.print(f"trial {row['number']} {row['state']}: {error}", soft_wrap=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "-" if value != value else f"{value:.4g}"
    return str(value)


def _print_studies(store: Any) -> None:
    frame = store.studies_frame()
    table = Table(title="studies")
    for column in frame.columns:
        if column in ("spec", "versions"):
            continue
        table.add_column(str(column))
    for _, row in frame.iterrows():
        table.add_row(*(_cell(row[c]) for c in frame.columns if c not in ("spec", "versions")))
    console.print(table)


@app.command("list")
def list_studies(storage: Annotated[str | None, _storage_option()] = None) -> None:
    """The studies in the database."""
    _print_studies(_open_store(storage))


@app.command()
def export(
    study_name: Annotated[str, typer.Argument(metavar="STUDY")],
    storage: Annotated[str | None, _storage_option()] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="how many configurations")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
    out: Annotated[Path, typer.Option("--out", help="output directory")] = Path("."),
) -> None:
    """Write the best configurations as configs that `zoneout-study train` re-runs."""
    from study.export import ExportError, export_best

    if fmt not in ("yaml", "json"):
        fail(f"--format must be 'yaml' or 'json', got {fmt!r}")
    store = _open_store(storage)
    try:
        paths = export_best(store, study_name, top=top, fmt=fmt, out_dir=out)  # type: ignore[arg-type]
    except ExportError as error:
        fail(str(error))
    for path in paths:
        console.print(str(path))


@app.command()
def report(
    study_name: Annotated[str, typer.Argument(metavar="STUDY")],
    storage: Annotated[str | None, _storage_option()] = None,
    out: Annotated[Path | None, typer.Option("--out", help="output directory")] = None,
    png: Annotated[bool, typer.Option("--png/--no-png", help="PNG per figure (Chromium)")] = True,
    baseline: Annotated[
        int | None,
        typer.Option(
            "--baseline",
            metavar="TRIAL",
            help="compare every configuration with this trial's, seed by seed "
            "(default: the unregularized configuration, when the study ran it)",
        ),
    ] = None,
) -> None:
    """Sensitivity report: one offline HTML file, a PNG per figure, figures saved for
    optuna-dashboard. STUDY may also be a *-trials.csv table that `status --csv` wrote (its
    spec, <study>.yaml beside it, gives the search space)."""
    from study.store import StoreError

    if study_name.endswith("-trials.csv"):
        from study.report import write_table_report

        table = Path(study_name)
        if not table.is_file():
            fail(f"no such table: {table}")
        default_out = Path("reports") / table.name.removesuffix("-trials.csv")
        result = write_table_report(table, out or default_out, png=png, baseline_trial=baseline)
        console.print(f"report: {result.html_path}")
        for message in result.messages:
            console.print(message)
        return
    store = _open_store(storage)
    try:
        store.trials_frame(study_name)
    except StoreError as error:
        fail(str(error))
    _write_report(
        store.url, study_name, out or Path("reports") / study_name, png=png, baseline=baseline
    )


@app.command()
def compare(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="STUDY [STUDY ...]",
            help="stored studies, or the *-trials.csv tables `status --csv` wrote",
        ),
    ],
    storage: Annotated[str | None, _storage_option()] = None,
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
            "when they are on this machine), retrain, or none",
        ),
    ] = "auto",
    out: Annotated[Path | None, typer.Option("--out", help="output directory")] = None,
    png: Annotated[bool, typer.Option("--png/--no-png", help="PNG of the table (Chromium)")] = True,
) -> None:
    """Table 1 across regularizers: per method the validation-selected configuration, its
    validation metric over seeds, its test metric and the seed-paired difference to a baseline;
    Markdown, HTML and PNG, and a note in each stored Optuna study."""
    from study.compare import HeldOutMetric, compare_studies
    from study.store import StoreError

    try:
        mode = HeldOutMetric(test)
    except ValueError:
        fail(f"--test must be one of {', '.join(m.value for m in HeldOutMetric)}, not {test!r}")
    url = None
    if not all(source.endswith("-trials.csv") for source in sources):
        url = _open_store(storage).url
    for source in sources:
        if source.endswith("-trials.csv") and not Path(source).is_file():
            fail(f"no such table: {source}")
    try:
        result = compare_studies(
            sources,
            storage_url=url,
            out_dir=out or Path("reports") / "compare",
            baseline=baseline,
            test=mode,
            png=png,
        )
    except (StoreError, ValueError, KeyError) as error:
        fail(str(error))
    console.print(result.markdown, markup=False, highlight=False, soft_wrap=True)
    for path in result.paths.values():
        console.print(str(path), markup=False, highlight=False, soft_wrap=True)
    for message in result.messages:
        console.print(message, markup=False, highlight=False)


@app.command()
def dashboard(
    storage: Annotated[str | None, _storage_option()] = None,
    host: Annotated[str, typer.Option("--host", help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
) -> None:
    """Serve optuna-dashboard on the study database (bound to 127.0.0.1 unless told otherwise)."""
    from dashboards import serve_dashboard
    from study.store import mask_url

    store = _open_store(storage)
    console.print(
        f"optuna-dashboard on http://{host}:{port} for {mask_url(store.url)} (Ctrl-C stops)"
    )
    serve_dashboard(store.url, host=host, port=port, background=False)


db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(storage: Annotated[str | None, _storage_option()] = None) -> None:
    """Create or upgrade the store's schema (Alembic) to the newest revision."""
    from study.store import StoreError, current_revision, mask_url, upgrade

    url = _resolve_storage(storage)
    try:
        upgrade(url)
        console.print(f"{mask_url(url)} at revision {current_revision(url)}")
    except StoreError as error:
        fail(str(error))


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
