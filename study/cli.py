"""The ``zoneout-study`` command line.

Each command is a thin shell over a library function. A user mistake (a bad config, spec, path
or database URL, missing data: any :class:`study.errors.UserError`) ends with exit status 2 and
one line that says what to do; any other exception is a bug and ends with its traceback and exit
status 1. Inputs are checked before anything is written: a refused command leaves no file,
directory or row behind, and the commands that only read (``list``, ``status``, ``export``,
``report``, ``dashboard``) never create a database.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import click
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from study.errors import OptionError, PathError, UserError

if TYPE_CHECKING:
    from study.report import Baseline

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Tune warns whenever a driver-loop step takes over 0.5 s ("may be a performance bottleneck"):
# on a busy laptop that is every few seconds and nothing a user can act on. Read at import.
os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "10")

F = TypeVar("F", bound=Callable[..., Any])


_open_resources: list[contextlib.ExitStack] = []


@contextlib.contextmanager
def _closing_at_exit() -> Iterator[None]:
    """Stores opened by a command are closed when it ends, however it ends: SQLite removes its
    -wal and -shm files only when the last connection closes."""
    with contextlib.ExitStack() as stack:
        _open_resources.append(stack)
        try:
            yield
        finally:
            _open_resources.pop()


def _close_at_exit(close: Callable[[], Any]) -> None:
    if _open_resources:
        _open_resources[-1].callback(close)


def _guarded(function: F) -> F:
    """Run a command: a UserError becomes one line and exit 2; anything else is a bug, shown
    with its traceback, exit 1. Exits, aborts and Ctrl-C pass through."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _closing_at_exit():
                return function(*args, **kwargs)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException):
            raise  # typer's Exit is its own class, not click's
        except UserError as error:
            fail(str(error))
        except Exception:
            traceback.print_exc(file=sys.stderr)
            error_console.print(
                "[bold red]internal error[/] (a bug in zoneout-study, not in your input): "
                "please report it with the traceback above",
                highlight=False,
            )
            raise typer.Exit(code=1) from None

    return wrapper  # type: ignore[return-value]


class _Typer(typer.Typer):
    """A Typer app whose every command runs under :func:`_guarded`."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        register = super().command(*args, **kwargs)

        def decorator(function: F) -> F:
            register(_guarded(function))
            return function

        return decorator


app = _Typer(
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
    line = " ".join(message.split())  # one line, whatever the message carried
    # The message is the user's words (a key, a path, a YAML fragment): never read as markup.
    error_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


# ------------------------------------------------------------------ paths, checked up front
MAX_CONFIG_BYTES = 256 * 1024  # a trial config is a few hundred bytes


def _check_input_file(path: Path, what: str, max_bytes: int) -> None:
    """An existing regular file no larger than ``max_bytes``, refused by size before parsing."""
    try:
        if not path.exists() and not path.is_symlink():
            raise PathError(f"{path}: no such file")
        if path.is_dir():
            raise PathError(f"{path}: is a directory; expected a {what} (a YAML file)")
        size = path.stat().st_size
    except OSError as error:
        raise PathError(f"{path}: cannot read ({error.strerror})") from None
    if size > max_bytes:
        raise PathError(f"{path}: {size:,} bytes; a {what} may be at most {max_bytes:,} bytes")
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise PathError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise PathError(f"{path}: cannot read ({error.strerror})") from None


def _first_missing(path: Path) -> tuple[Path | None, Path]:
    """(the outermost directory ``path`` would create, or None; the nearest existing ancestor)."""
    path = path.absolute()
    missing: Path | None = None
    current = path
    while not current.exists() and not current.is_symlink():
        missing = current
        current = current.parent
    return missing, current


def _check_writable_ancestor(path: Path, option: str, existing: Path) -> None:
    if not existing.is_dir():
        raise PathError(f"{option} {path}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PathError(f"{option} {path}: {existing} is not writable")


@contextlib.contextmanager
def _path_errors(path: Path, option: str) -> Iterator[None]:
    """An OSError while looking at a path (a name too long, a loop of links) is bad input."""
    try:
        yield
    except OSError as error:
        raise PathError(f"{option} {path}: {error.strerror or error}") from None


def check_output_dir(path: Path, option: str) -> None:
    """``path`` is a writable directory or can be made one; nothing is created here."""
    with _path_errors(path, option):
        _check_output_dir(path, option)


def _check_output_dir(path: Path, option: str) -> None:
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise PathError(f"{option} {path}: exists and is not a directory")
        _check_writable_ancestor(path, option, path)
        return
    _, existing = _first_missing(path)
    _check_writable_ancestor(path, option, existing)


def check_output_file(path: Path, option: str) -> None:
    """``path`` is a writable file (new or existing) in a directory that exists or can be made."""
    with _path_errors(path, option):
        _check_output_file(path, option)


def _check_output_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise PathError(f"{option} {path}: is a directory; give a file name (e.g. trials.csv)")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise PathError(f"{option} {path}: is not writable")
        return
    _, existing = _first_missing(path.parent)
    _check_writable_ancestor(path, option, existing)


@contextlib.contextmanager
def _written_or_removed(path: Path) -> Iterator[None]:
    """Directories created under ``path`` while the block runs are removed again (if empty) when
    it fails, so a refused command leaves nothing behind."""
    missing, _ = _first_missing(path)
    try:
        yield
    except BaseException:
        if missing is not None and missing.is_dir():
            created = sorted(
                (p for p in missing.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
            )
            for directory in [*created, missing]:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only empty ones: files someone wrote stay
        raise


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
    from trials.config import load_config
    from trials.train import EpochResult
    from trials.train import train as run_training

    overrides = list(set_values or [])
    if device is not None:
        overrides.append(f"device={device}")
    if epochs is not None:
        overrides.append(f"epochs={epochs}")
    _check_input_file(config_path, "trial config", MAX_CONFIG_BYTES)
    if checkpoint_dir is not None:
        check_output_dir(checkpoint_dir, "--checkpoint-dir")
    config = load_config(config_path, overrides)
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu")

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    rows: list[EpochResult] = []
    with Progress(
        TextColumn("[bold]epoch {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        # Off a terminal the bar would print its last frame at exit, above an error line
        # too; a plain line per epoch instead.
        disable=not console.is_terminal,
    ) as progress:
        task_id = progress.add_task("training", total=config.epochs)

        def report(result: EpochResult, _checkpoint: Path | None) -> None:
            rows.append(result)
            progress.update(
                task_id,
                completed=result.epoch,
                description=f"valid {result.metric} {result.valid_metric:.4f}",
            )
            if progress.disable:
                console.print(
                    f"epoch {result.epoch}/{config.epochs}: valid {result.metric} "
                    f"{result.valid_metric:.4f}",
                    highlight=False,
                )

        result = run_training(config, report=report, checkpoint_dir=checkpoint_dir)

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
        error_console.print(f"[bold red]diverged:[/] {escape(str(result.reason))}")
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


def _sqlite_file(url: str) -> Path | str | None:
    """The file of a SQLite URL (relative to the working directory); '' for an in-memory
    database; None for another backend."""
    from sqlalchemy.engine import make_url

    from study.store import StoreError, mask_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if "\x00" in database:
        raise StoreError(f"invalid storage URL {mask_url(url)!r}: a NUL character in the path")
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return ""
    if database.startswith("file:"):  # a URI filename (uri=true): strip scheme and query
        database = database[len("file:") :].split("?", 1)[0]
    path = Path(database)
    try:
        path.stat()
    except FileNotFoundError:
        pass  # read-only commands say "no such database"; `run` creates it
    except OSError as error:  # a name too long, a file where a directory should be, ...
        raise StoreError(f"--storage {mask_url(url)}: {error.strerror or error}") from None
    return path


def _open_store(storage: str | None) -> Any:
    """The store for a command that only reads: never creates a database or its tables (a
    mistyped SQLite path is 'no such database', not a new empty one) and never migrates."""
    import sqlalchemy as sa

    from study.store import Store, StoreError, mask_url, normalize_url

    url = normalize_url(_resolve_storage(storage))
    _check_backend(url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file == "":
        raise StoreError(f"no such database: {mask_url(url)} is an empty in-memory database")
    if isinstance(sqlite_file, Path) and not sqlite_file.is_file():
        where = f"{sqlite_file} is a directory" if sqlite_file.is_dir() else f"{sqlite_file}"
        raise StoreError(
            f"no such database: {where} (--storage / ZONEOUT_STUDY_STORAGE; "
            "`zoneout-study run SPEC.yaml` creates it)"
        )
    # A SQLite file is looked at read-only first: the store's connections switch it to WAL.
    if isinstance(sqlite_file, Path):
        _require_study_tables(_sqlite_tables(sqlite_file, mask_url(url)), url)
    store = Store(url)
    _close_at_exit(store.close)
    if not isinstance(sqlite_file, Path):
        try:
            tables = set(sa.inspect(store.engine).get_table_names())
        except sa.exc.DBAPIError as error:
            reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
            raise StoreError(f"cannot read {mask_url(url)}: {reason}") from None
        _require_study_tables(tables, url)
    return store


def _require_study_tables(tables: set[str], url: str) -> None:
    from study.store import StoreError, mask_url

    if "zs_studies" not in tables:
        raise StoreError(
            f"{mask_url(url)} holds no zoneout-study tables (a database made by another "
            "program, or one no study has run in)"
        )


def _sqlite_tables(path: Path, shown: str) -> set[str]:
    import sqlite3
    import urllib.parse

    from study.store import StoreError

    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            return {str(row[0]) for row in rows}
    except sqlite3.DatabaseError as error:
        raise StoreError(f"cannot read {shown}: {error}") from None


def _study_names(store: Any) -> list[str]:
    return [str(name) for name in store.studies_frame()["name"]]


def _require_study(store: Any, study_name: str) -> None:
    """A study the store knows, else one line naming the studies it does know."""
    from study.store import StoreError, mask_url

    names = _study_names(store)
    if study_name not in names:
        there = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "") if names else "none"
        raise StoreError(
            f"no study named {study_name!r} in {mask_url(store.url)}; studies there: {there}"
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
        url = _open_store(storage).url
    for source in sources:
        if source.endswith("-trials.csv") and not Path(source).is_file():
            fail(f"no such table: {source}")
    out_dir = out or Path("reports") / "compare"
    check_output_dir(out_dir, "--out")
    with _written_or_removed(out_dir):
        result = compare_studies(
            sources, storage_url=url, out_dir=out_dir, baseline=baseline, test=mode, png=png
        )
    console.print(result.markdown, markup=False, highlight=False, soft_wrap=True)
    for path in result.paths.values():
        console.print(str(path), markup=False, highlight=False, soft_wrap=True)
    for message in result.messages:
        console.print(message, markup=False, highlight=False)


@app.command()
def run(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="a study spec")],
    storage: Annotated[str | None, _storage_option()] = None,
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

    _check_input_file(spec_path, "study spec", MAX_SPEC_BYTES)
    spec = load_spec(spec_path)
    url = resolve_storage(spec, storage)
    _check_run_storage(url)
    report_path = report_dir or Path("reports") / spec.name
    if not no_report:
        check_output_dir(report_path, "--report-dir")
    _check_data(spec.base)
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
    kinds = _trial_kinds(url, spec.name)
    cut = kinds.count("interrupted") + kinds.count("driver lost") + kinds.count("cut off")
    console.print(
        f"study {outcome.name!r} {outcome.status}: {kinds.count('COMPLETE')} complete, "
        f"{kinds.count('PRUNED')} pruned, {kinds.count('FAIL')} failed"
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
        _write_report(url, spec.name, report_path)
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
    _exit_if_nothing_finished(url, spec.name)


def _exit_if_nothing_finished(url: str, study_name: str) -> None:
    """A study whose plan ran and no trial finished well: what failed and why, exit 3."""
    from study.failures import render_lines, summarize_failures
    from study.store import Store

    with Store(url) as store:
        failures = summarize_failures(store.trials_frame(study_name))
    if failures.complete == 0 and failures.failed:
        for line in render_lines(failures):
            error_console.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=3)


def _trial_kinds(url: str, study_name: str) -> list[str]:
    """Each stored trial's state, with 'interrupted' / 'driver lost' for the FAIL rows the
    service retired to be continued: Optuna counts them as FAIL; the summary does not."""
    from study.store import Store

    with Store(url) as store:
        trials = store.trials_frame(study_name)
    return _FailureWords(trials).kinds()


def _check_backend(url: str) -> None:
    """The store keeps SQLite and PostgreSQL; say so before any driver is looked for."""
    from sqlalchemy.engine import make_url

    from study.store import StoreError, mask_url

    if make_url(url).get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"unsupported database {mask_url(url)}: use sqlite:///FILE.db or "
            "postgresql+psycopg://USER@HOST/DB"
        )


SQLITE_HEADER = b"SQLite format 3\x00"


def _check_run_storage(url: str) -> None:
    """What `run` (and `db upgrade`) can tell about the database before Ray starts: a URL of a
    supported backend; for SQLite a database file, or none yet, in a writable directory; for
    PostgreSQL a server that answers (connecting writes nothing)."""
    from study.store import StoreError, create_engine_for, mask_url, normalize_url

    url = normalize_url(url)  # refuses a malformed URL, naming it without its password
    _check_backend(url)
    sqlite_file = _sqlite_file(url)
    if sqlite_file == "":
        raise StoreError(
            f"{mask_url(url)} is an in-memory database: the study would vanish with the "
            "process; give a file, e.g. sqlite:///studies.db"
        )
    if isinstance(sqlite_file, Path):
        if sqlite_file.exists() and not sqlite_file.is_file():
            raise StoreError(f"--storage {mask_url(url)}: {sqlite_file} is not a file")
        parent = sqlite_file.absolute().parent
        if not parent.is_dir():
            raise StoreError(
                f"--storage {mask_url(url)}: directory {parent} does not exist (create it first)"
            )
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(f"--storage {mask_url(url)}: directory {parent} is not writable")
        if sqlite_file.is_file() and sqlite_file.stat().st_size > 0:
            with sqlite_file.open("rb") as handle:
                if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                    raise StoreError(f"--storage {mask_url(url)}: {sqlite_file} is not SQLite")
    else:
        create_engine_for(url).dispose()  # an unreachable server: StoreError, masked URL


def _check_data(config: Any) -> None:
    """Missing data is a user error (DataNotFoundError) worth one line before Ray starts."""
    from trials.tasks import load_task

    load_task(config)


def _write_report(
    url: str, study_name: str, out_dir: Path, *, png: bool = True, baseline: Baseline = None
) -> None:
    from study.report import write_study_report

    check_output_dir(out_dir, "--out")
    with _written_or_removed(out_dir):
        result = write_study_report(url, study_name, out_dir, png=png, baseline_trial=baseline)
    console.print(f"report: {result.html_path}")
    for message in result.messages:
        console.print(message, markup=False)


@app.command()
def status(
    study_name: Annotated[str | None, typer.Argument(metavar="STUDY")] = None,
    storage: Annotated[str | None, _storage_option()] = None,
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
    store = _open_store(storage)
    if study_name is None:
        _print_studies(store)
        return
    _require_study(store, study_name)
    frame = store.trials_frame(study_name)
    if frame.empty:
        fail(f"study {study_name!r} has no trials yet; `zoneout-study run` its spec")
    if csv_path is not None:
        with _written_or_removed(csv_path.parent):
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            frame.drop(columns=["config"], errors="ignore").to_csv(csv_path, index=False)
            store.epochs_frame(study_name).to_csv(csv_path.with_suffix(".epochs.csv"), index=False)
            store.runs_frame(study_name).to_csv(csv_path.with_suffix(".runs.csv"), index=False)
    table = _table(f"study {study_name}")
    param_columns = [c for c in frame.columns if c.startswith("param_")]
    nodes = {str(node) for node in frame["node"].dropna()}
    # One node (a laptop): said once below the table rather than in a column of repeats.
    node_column = ["node"] if len(nodes) > 1 else []
    columns = ["number", "state", *param_columns, "best_value", "final_value", "epochs"]
    columns += node_column
    # "score": the one number every command ranks by (study.score); "last": the seeds' mean at
    # their last epoch, which shows overfitting.
    headers = {"number": "#", "best_value": "score", "final_value": "last"}
    for column in columns:
        table.add_column(
            headers.get(column, column.removeprefix("param_")),
            overflow="fold",
            no_wrap=column == "state",
            justify="left" if column in ("state", "node") else "right",
        )
    ordered = frame.sort_values("number")
    reasons = _FailureWords(frame)
    for index, row in ordered.iterrows():
        cells = []
        for column in columns:
            if column == "state":
                cells.append(reasons.kind(index, row.get("state")))
            elif column == "epochs" and _is_missing(row.get("epochs")):
                cells.append("0")
            elif column in ("best_value", "final_value") and not _is_missing(row.get(column)):
                # Four decimals, as `run` and `export` print them: configurations of one study
                # often differ in the third.
                cells.append(f"{float(row[column]):.4f}")
            else:
                cells.append(_cell(row.get(column)))
        table.add_row(*cells)
    console.print(table)
    if len(nodes) == 1:
        console.print(f"every trial ran on {nodes.pop()}", highlight=False, markup=False)
    # Reasons are sentences: one line each below the table, where they are not cut to fit.
    for index, row in ordered.iterrows():
        error = row.get("error")
        if isinstance(error, str) and error:
            console.print(
                f"trial {row['number']} {reasons.sentence(index, row['state'], error)}",
                highlight=False,
                markup=False,
            )


def _table(title: str) -> Table:
    """A table that reads at 80 columns: a rule under the header, one space of padding
    between columns (the box's separator adds the other), long cells folded, never cut."""
    return Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False
    )


# Why the service retired a trial (study.plan.Retired values), as the terminal says it.
_RETIRED_WORDS = {
    "interrupted": "interrupted",
    "driver_lost": "driver lost",
    "infrastructure": "cut off",
}


class _FailureWords:
    """Words for the trials the service retired itself (the trials frame's ``retired`` column,
    read by :func:`dashboards.retired_kinds`): a trial cut short by Ctrl-C, one left running by
    a driver that died, one cut off by the infrastructure. The next run of the spec continues
    each in a new trial from its last checkpoint, so they do not count towards the plan. Other
    states keep the names Optuna and the store give them (COMPLETE, PRUNED, FAIL, RUNNING)."""

    def __init__(self, trials: Any) -> None:
        """``trials``: a trials frame; rows are then named by its index labels."""
        from dashboards import retired_kinds

        self._trials = trials
        self._retired = retired_kinds(trials)

    def kinds(self) -> list[str]:
        """:meth:`kind` of every row, in the frame's order."""
        return [self.kind(index, state) for index, state in self._trials["state"].items()]

    def kind(self, index: Any, state: Any) -> str:
        """'interrupted', 'driver lost', 'cut off', or the stored state (COMPLETE, PRUNED, FAIL,
        ...) of the frame's row ``index``."""
        retired = self._retired.loc[index]
        if retired is None:
            return str(state)
        return _RETIRED_WORDS.get(retired, str(retired).replace("_", " "))

    def sentence(self, index: Any, state: Any, error: str) -> str:
        retired = self._retired.loc[index]
        if retired == "infrastructure":
            return (
                f"{error}; it does not count, and a replacement continues it from its last "
                "checkpoint"
            )
        if retired == "interrupted":
            return (
                "interrupted (the driver stopped before it finished); it does not count, and a "
                "replacement continues it from its last checkpoint"
            )
        if retired == "driver_lost":
            return (
                "lost its driver while it ran; it does not count, and a replacement continues it "
                "from its last checkpoint"
            )
        if retired is not None:
            return f"{error}; it does not count, and a replacement continues it"
        return f"{state}: {error}"


def _is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA and NaT: what a table shows as '-'."""
    import pandas as pd

    if isinstance(value, (list, dict)):
        return False
    return value is None or bool(pd.isna(value))


def _cell(value: Any) -> str:
    """A table cell's text; escaped, since a categorical value may look like markup."""
    if isinstance(value, (list, dict)):
        return escape(str(value))
    if _is_missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


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
    table = _table("studies")
    table.add_column("study", overflow="fold")
    table.add_column("status", no_wrap=True)
    for column in ("plan", "complete", "pruned", "failed", "interrupted", "running"):
        table.add_column(column, justify="right", no_wrap=True)
    any_requeued = False
    for _, study in frame.iterrows():
        name = str(study["name"])
        kinds = _FailureWords(store.trials_frame(name)).kinds()
        requeued = kinds.count("interrupted") + kinds.count("driver lost") + kinds.count("cut off")
        any_requeued = any_requeued or requeued > 0
        plan = _plan_size(store.study_spec(name) or {})
        table.add_row(
            name,
            str(study["status"]),
            _cell(plan),
            str(kinds.count("COMPLETE")),
            str(kinds.count("PRUNED")),
            str(kinds.count("FAIL")),
            str(requeued),
            str(kinds.count("RUNNING")),
        )
    console.print(table)
    if any_requeued:
        console.print(
            "interrupted: cut short (Ctrl-C or a lost driver); the next `zoneout-study run` of "
            "the spec continues each from its last checkpoint, so they do not count towards "
            "the plan",
            soft_wrap=False,
        )


@app.command("list")
def list_studies(storage: Annotated[str | None, _storage_option()] = None) -> None:
    """The studies in the database."""
    _print_studies(_open_store(storage))


@app.command()
def export(
    study_name: Annotated[str, typer.Argument(metavar="STUDY")],
    storage: Annotated[str | None, _storage_option()] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=1000, help="how many configurations")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
    out: Annotated[Path, typer.Option("--out", help="output directory")] = Path("."),
) -> None:
    """Write the best configurations as configs that `zoneout-study train` re-runs."""
    from study.export import export_best

    if fmt not in ("yaml", "json"):
        fail(f"--format must be 'yaml' or 'json', got {fmt!r}")
    check_output_dir(out, "--out")
    store = _open_store(storage)
    _require_study(store, study_name)
    with _written_or_removed(out):
        paths = export_best(store, study_name, top=top, fmt=fmt, out_dir=out)  # type: ignore[arg-type]
    for path in paths:
        console.print(str(path), markup=False, highlight=False)


@app.command()
def promote(
    source: Annotated[str, typer.Argument(metavar="STUDY", help="the finished (small) study")],
    out: Annotated[Path, typer.Option("--out", help="the spec file to write")],
    storage: Annotated[str | None, _storage_option()] = None,
    top: Annotated[
        int, typer.Option("--top", min=0, max=1000, help="how many of its best configurations")
    ] = 3,
    point: Annotated[
        list[str] | None,
        typer.Option(
            "--point",
            help="an extra configuration, e.g. zoneout_cell=0,zoneout_hidden=0 (repeatable)",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="a base field of the larger scale, e.g. epochs=40 (repeatable)"),
    ] = None,
    repeats: Annotated[
        int | None, typer.Option("--repeats", min=1, help="seeds per configuration")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="the new study's name")] = None,
) -> None:
    """Write a spec that runs STUDY's best configurations on a larger base (the scale ladder).

    The new study runs the top configurations by score, plus each --point, with its own seeds,
    on STUDY's base changed by each --set; `report` on it then says how well the small scale
    ranked them."""
    import yaml

    from study.ladder import promotion_spec
    from study.spec import validate_spec

    check_output_file(out, "--out")
    store = _open_store(storage)
    _require_study(store, source)
    stored = store.study_spec(source)
    points = [_assignments(text, "--point") for text in point or []]
    updates = _assignments(",".join(set_ or []), "--set") if set_ else {}
    spec = promotion_spec(
        stored,
        source=source,
        name=name or f"{source}-promoted",
        top=top,
        points=points,
        base_updates=updates,
        repeats=repeats,
    )
    validate_spec(spec, f"the promoted spec (--point/--set) of {source!r}", base_dir=out.parent)
    with _written_or_removed(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    console.print(
        f"wrote {out}: the top {top} of {source!r}"
        + (f" and {len(points)} named point(s)" if points else "")
        + f"; run it with `zoneout-study run {out}` (same storage)",
        markup=False,
        highlight=False,
    )


def _assignments(text: str, option: str) -> dict[str, Any]:
    """'a=1,b=x' -> {'a': 1, 'b': 'x'} (values read as YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            fail(f"{option}: {part!r} is not NAME=VALUE")
        out[key.strip()] = yaml.safe_load(value.strip()) if value.strip() else None
    return out


@app.command()
def report(
    study_name: Annotated[str, typer.Argument(metavar="STUDY")],
    storage: Annotated[str | None, _storage_option()] = None,
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
) -> None:
    """Sensitivity report: one offline HTML file, a PNG per figure, figures saved for
    optuna-dashboard. STUDY may also be a *-trials.csv table that `status --csv` wrote (its
    spec, <study>.yaml beside it, gives the search space)."""
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
        if not table.is_file():
            fail(f"no such table: {table}")
        out_dir = out or Path("reports") / table.name.removesuffix("-trials.csv")
        check_output_dir(out_dir, "--out")
        with _written_or_removed(out_dir):
            result = write_table_report(table, out_dir, png=png, baseline_trial=baseline)
        console.print(f"report: {result.html_path}")
        for message in result.messages:
            console.print(message, markup=False)
        return
    store = _open_store(storage)
    _require_study(store, study_name)
    _write_report(
        store.url, study_name, out or Path("reports") / study_name, png=png, baseline=baseline
    )


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
    _check_port_free(host, port)
    console.print(
        f"optuna-dashboard on http://{host}:{port} for {mask_url(store.url)} (Ctrl-C stops)"
    )
    serve_dashboard(store.url, host=host, port=port, background=False)


def _check_port_free(host: str, port: int) -> None:
    """optuna-dashboard would start and then die with a long traceback on a busy port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OptionError(f"--host {host!r}: cannot resolve ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # SO_REUSEADDR as the server sets it: a port in TIME_WAIT is free, one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            reason = "in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
            raise OptionError(
                f"port {port} on {host} is {reason}: choose another with --port "
                f"(e.g. --port {port + 1 if port < 65535 else 8080})"
            ) from None


db_app = _Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(storage: Annotated[str | None, _storage_option()] = None) -> None:
    """Create or upgrade the store's schema (Alembic) to the newest revision, and bring every
    study's trial values to the one score (the mean over seeds of each seed's best)."""
    from study.store import current_revision, mask_url, upgrade

    url = _resolve_storage(storage)
    _check_run_storage(url)
    upgrade(url)
    console.print(f"{mask_url(url)} at revision {current_revision(url)}")
    # The data follow the schema: every study's values are brought to the one score.
    from study import optuna_study
    from study.rescore import needs_rescore, rescore_study
    from study.store import Store

    with Store(url) as store:
        for name in store.studies_frame()["name"]:
            try:
                study = optuna_study.load_study(url, str(name))
            except KeyError:
                continue  # a store row without its Optuna study
            if needs_rescore(study):
                console.print(rescore_study(url, str(name), store).line())


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        error_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
