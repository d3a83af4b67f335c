"""A quiet terminal during `zoneout-study run`: what Ray prints goes to the run's Ray output file,
a fault is one line (a dead worker, a database outage's start and end), the end-of-run summary
counts only what is still to be continued, and a HOME or temporary directory Ray cannot write is
one line and exit 2 before anything is written.

The faults themselves are injected by test_worker_kill.py (a SIGKILLed worker) and
test_postgres.py (the server stopped mid-study), which assert the terminal of those runs; these
tests pin down each piece on its own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from rich.console import Console
from typer.testing import CliRunner

from study import optuna_study as ostudy
from study.callbacks import FaultLineCallback, error_reason
from study.cli import app
from study.faults import Fault, classify
from study.plan import Retired
from study.ray_session import ray_output_to
from study.reaper import continued_trials
from study.runner import StudyOutcome
from tests.study.test_cli_errors import GOOD, make_store

# Ray's report of a SIGKILLed trial worker, as it reached a trial's error file (one measured run).
DEAD_WORKER = (
    "The actor died unexpectedly before finishing this task.\n"
    "\tclass_name: ImplicitFunc\n"
    "\tpid: 4242\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of file."
)


# ------------------------------------------------------------------ Ray's output goes to a file
def test_ray_output_goes_to_the_run_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], reliability_record: Any
) -> None:
    from ray._private import worker

    path = tmp_path / "runs" / "exp" / "ray-output.log"
    ray_logger = logging.getLogger("ray")
    handlers = list(ray_logger.handlers)
    with ray_output_to(path):
        assert not path.exists()  # nothing said yet: no file
        # What Tune logs during a database outage, and what the raylet publishes for a worker
        # that died (ray.init's listen_error_messages thread prints it through this function).
        logging.getLogger("ray.tune.utils.util").warning(
            "The `process_trial_result` operation took 41.8 s, which may be a performance "
            "bottleneck."
        )
        worker.print_to_stdstream(
            {"lines": ["A worker died or was killed while executing a task"], "pid": "raylet"},
            ignore_prefix=False,
        )
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == "", captured
    text = path.read_text(encoding="utf-8")
    assert "performance bottleneck" in text and "ray.tune.utils.util" in text
    assert "(raylet) A worker died" in text
    assert ray_logger.handlers == handlers
    assert worker.print_to_stdstream.__module__ == "ray._private.worker"
    reliability_record(
        "Ray's own output",
        "a Tune slowness warning and a raylet's dead-worker message while the run's Ray output "
        "file is in place",
        f"terminal: nothing; {path.name}: {len(text.splitlines())} lines with both; the `ray` "
        "logger's handlers and Ray's printer restored after",
    )


# ------------------------------------------------------------------ a dead worker: one line
class _Searcher:
    def slot_of(self, ray_trial_id: str) -> tuple[int, int] | None:
        return (3, 1) if ray_trial_id == "ray-7" else None

    def configuration(self, number: int) -> Any:
        return SimpleNamespace(seeds=[10, 11])


def _failed_trial(
    directory: Path, error: BaseException, text: str, failures: int, checkpoint: str | None
) -> Any:
    """A Tune trial as a callback sees it after a failure: its error file and pickled error."""
    from ray import cloudpickle

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "error.txt").write_text(
        f"Failure # {failures} (occurred at 2026-12-05_13-23-12)\n{text}\n", encoding="utf-8"
    )
    (directory / "error.pkl").write_bytes(cloudpickle.dumps(error))
    return SimpleNamespace(
        trial_id="ray-7",
        error_file=str(directory / "error.txt"),
        pickled_error_file=str(directory / "error.pkl"),
        num_failures=failures,
        max_failures=2,
        checkpoint=checkpoint,
    )


def test_a_dead_worker_is_one_line_and_the_infrastructure_s_fault(
    tmp_path: Path, reliability_record: Any
) -> None:
    from ray.exceptions import ActorDiedError, RayTaskError

    died = ActorDiedError()
    died.error_msg = DEAD_WORKER
    trial = _failed_trial(tmp_path / "trial", died, DEAD_WORKER, 1, "checkpoint_000001")
    output = tmp_path / "ray-output.log"
    console = Console(record=True, width=300, file=io.StringIO())
    faults = FaultLineCallback(_Searcher(), console, details=output)
    faults.on_trial_recover(iteration=1, trials=[], trial=trial)
    early = _failed_trial(tmp_path / "early", died, DEAD_WORKER, 1, None)  # before a checkpoint
    faults.on_trial_recover(iteration=1, trials=[], trial=early)
    faults.on_trial_error(iteration=2, trials=[], trial=trial)
    # The trial's own error, with no retry left: no line (the progress display counts it).
    own = RayTaskError("train", "Traceback ...\nValueError: bad batch", ValueError("bad batch"))
    faults.on_trial_error(
        iteration=3,
        trials=[],
        trial=_failed_trial(tmp_path / "own", own, "ValueError: bad batch", 1, None),
    )
    lines = console.export_text().splitlines()
    assert lines == [
        "trial 3 seed 11: its Ray worker died (pid 4242, SYSTEM_ERROR); Ray restarts it from "
        f"its last checkpoint (retry 1 of 2); details in {output}",
        "trial 3 seed 11: its Ray worker died (pid 4242, SYSTEM_ERROR); Ray restarts it from "
        f"the start (retry 1 of 2); details in {output}",
        "trial 3 seed 11: its Ray worker died (pid 4242, SYSTEM_ERROR); no retry left "
        f"(failure.max_retries: 2); details in {output}",
    ]
    # The reason the store gets names Ray's exception, as study.faults reads it: cut off by the
    # infrastructure (continued), not the configuration's failure (counted).
    reason = error_reason(trial)
    assert reason.startswith("ray.exceptions.ActorDiedError: The actor is dead"), reason
    assert classify(reason) is Fault.INFRASTRUCTURE
    reliability_record(
        "Trial worker killed (terminal)",
        "Tune reports a trial whose worker died (ActorDiedError, as a SIGKILL leaves it), "
        "retried and then with no retry left",
        f"one line each: {lines[0]!r}; the store's reason {reason[:60]!r}... reads as the "
        "infrastructure's fault",
    )


# ------------------------------------------------------------------ database outage: two lines
@pytest.mark.postgres
def test_a_database_outage_is_said_when_it_starts_and_when_it_ends(
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    reliability_record: Any,
) -> None:
    import psycopg
    import sqlalchemy as sa

    from study.store import create_engine_for, normalize_url, retry_connect

    down = {"attempts": 0}
    failing = {"left": 0}

    def flaky(connect: Any) -> Any:
        def attempt(*args: Any, **kwargs: Any) -> Any:
            if failing["left"] > 0:
                failing["left"] -= 1
                down["attempts"] += 1
                raise psycopg.OperationalError("connection refused (injected)")
            return connect(*args, **kwargs)

        return attempt

    store = create_engine_for(postgres_url)  # what the store's engine is: retried for 60 s
    optuna_engine = sa.create_engine(normalize_url(postgres_url), pool_pre_ping=True)
    retry_connect(optuna_engine, seconds=0.3)  # a short window: it gives up mid-outage
    for engine in (store, optuna_engine):
        monkeypatch.setattr(engine.dialect, "connect", flaky(engine.dialect.connect))
        engine.dispose()
    caplog.set_level(logging.WARNING, logger="study.store._engine")
    started = time.monotonic()
    try:
        failing["left"] = 10**6  # the server is down
        for _ in range(2):  # one connection gives up; so does the next
            with pytest.raises(sa.exc.OperationalError), optuna_engine.connect():
                pass
        failing["left"] = 3  # it comes back after three more attempts
        with store.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        store.dispose()
        optuna_engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "study.store._engine"]
    assert len(lines) == 2, lines
    start, end = lines
    assert "unreachable (connection refused (injected))" in start
    assert "retrying the connection until it answers" in start
    assert "reachable again after" in end
    seconds = float(end.rsplit("after ", 1)[1].split(" s")[0])
    assert 0 <= seconds <= time.monotonic() - started + 1
    assert down["attempts"] >= 5
    reliability_record(
        "Database outage (terminal)",
        f"{down['attempts']} failed connection attempts from two engines on one PostgreSQL "
        "database, one of which gave up twice, then the server answers",
        f"two lines: {start!r}; {end!r}",
    )


# ------------------------------------------------------------------ the summary after a resume
def test_a_retired_trial_is_continued_once_its_replacement_ran(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'o.db'}")
    first = ostudy.ask(study, {"x": optuna.distributions.FloatDistribution(0, 1)})

    def cut(trial: optuna.Trial) -> None:  # Ctrl-C: retired, its replacement queued
        ostudy.retire_trial(
            study,
            trial,
            {"x": 0.5},
            reason="interrupted",
            because=Retired.INTERRUPTED.value,
            resume_points=None,
        )

    cut(first)
    assert continued_trials(study) == []  # its replacement waits in the queue
    space = {"x": optuna.distributions.FloatDistribution(0, 1)}
    replacement = ostudy.ask(study, space)
    assert replacement.params == {"x": 0.5}
    assert continued_trials(study) == []  # it runs
    cut(replacement)  # cut in its turn: it is the one left to continue
    assert continued_trials(study) == [first.number]
    last = ostudy.ask(study, space)
    study.tell(last, 0.25)
    assert continued_trials(study) == [first.number, replacement.number]
    assert [t.state for t in study.get_trials()] == [
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]


@pytest.mark.parametrize(
    ("continued", "said"),
    [
        (
            [],
            "; 1 cut off by the run, not counted (replacements continue them from their "
            "checkpoints)",
        ),
        ([2], ""),
    ],
)
def test_the_end_of_run_summary_counts_only_what_is_left_to_continue(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    continued: list[int],
    said: str,
    reliability_record: Any,
) -> None:
    """Store 'known' holds trials 0 and 1 COMPLETE and trial 2 retired (Ctrl-C); the run's
    outcome says whether a replacement has continued trial 2."""
    database = make_store(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({**GOOD, "name": "known", "storage": f"sqlite:///{database}"}),
        encoding="utf-8",
    )

    def finished_run(spec: Any, **_: Any) -> StudyOutcome:
        return StudyOutcome(
            name=spec.name,
            storage="-",
            status="finished",
            wall_seconds=3,
            opened=True,
            continued=continued,
        )

    monkeypatch.setattr("study.runner.run_study", finished_run)
    result = CliRunner().invoke(app, ["run", str(spec), "--no-report"])
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert f"study 'known' finished: 2 complete, 0 pruned, 0 failed{said} (3 s)" in flat, flat
    if continued:
        reliability_record(
            "Summary after a resume",
            "a study whose Ctrl-C'd trial 2 a replacement has continued (the outcome's "
            "continued trials, read from Optuna's requeued_from)",
            f"the summary: {flat.splitlines()[0][:120]!r}, no 'cut off' count",
        )


def test_the_all_failed_summary_leaves_out_a_continued_trial(tmp_path: Path) -> None:
    from study.failures import render_lines, summarize_failures
    from study.store import Store

    database = make_store(tmp_path, finished="FAIL")
    with Store(f"sqlite:///{database}") as store:
        frame = store.trials_frame("known")
    assert "1 interrupted" in render_lines(summarize_failures(frame))[0]
    lines = render_lines(summarize_failures(frame, continued=[2]))
    assert lines[0].startswith("2 of 2 trials failed") and "interrupted" not in lines[0], lines


# ------------------------------------------------------------------ HOME / TMPDIR not writable
@contextlib.contextmanager
def _read_only_directory(parent: Path) -> Iterator[Path | None]:
    """A directory this process cannot write (None where none can be made): mode 0o555, or, for
    root (who writes through permission bits), a read-only bind mount of it."""
    path = parent / "read-only"
    path.mkdir()
    path.chmod(0o555)
    mounted = False
    try:
        if _can_write(path) and shutil.which("mount"):
            bind = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
            mounted = bind.returncode == 0
            if mounted:
                subprocess.run(
                    ["mount", "-o", "remount,bind,ro", str(path)], capture_output=True, check=False
                )
        yield None if _can_write(path) else path
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], capture_output=True, check=False)
        path.chmod(0o755)


def _can_write(path: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def _tree(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("variable", "kind"),
    [
        ("HOME", "read-only directory"),
        ("HOME", "a file"),
        ("TMPDIR", "read-only directory"),
        ("TMPDIR", "a file"),
        ("RAY_TMPDIR", "read-only directory"),
    ],
)
def test_unwritable_home_or_tmpdir_is_one_line_before_anything_is_written(
    tmp_path: Path, variable: str, kind: str, reliability_record: Any
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump({**GOOD, "checkpoint_path": str(tmp_path / "runs")}), encoding="utf-8"
    )
    with contextlib.ExitStack() as stack:
        if kind == "a file":
            target: Path | None = tmp_path / "not-a-directory"
            assert target is not None
            target.write_text("", encoding="utf-8")
        else:
            target = stack.enter_context(_read_only_directory(tmp_path))
            if target is None:
                message = "no read-only directory can be made here (root without mount)"
                if os.environ.get("CI"):
                    pytest.fail(message + "; CI runs where it can (root may mount)")
                pytest.skip(message)
        before = _tree(tmp_path)
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("RAY_TMPDIR", "TMPDIR", "RAY_ADDRESS")
            and not key.startswith("RAY_AUTH_")
        }
        env.update({variable: str(target), "RAY_USAGE_STATS_ENABLED": "0", "COLUMNS": "400"})
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "study.cli",
                "run",
                str(spec),
                "--no-report",
                "--storage",
                f"sqlite:///{tmp_path / 'studies.db'}",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        after = _tree(tmp_path)
    output = (run.stdout + run.stderr).strip()
    assert run.returncode == 2, output
    assert len(output.splitlines()) == 1 and output.startswith("error:"), output
    assert "Traceback" not in output
    assert f"{variable}={target}" in output and "to a writable directory" in output, output
    assert ("set HOME" if variable == "HOME" else f"set {variable}") in output, output
    assert after == before  # no database, no checkpoint directory, no Ray session
    reliability_record(
        f"{variable} not writable ({kind})",
        f"`zoneout-study run` with {variable} set to {kind} (a local Ray would write there)",
        f"exit {run.returncode} before Ray starts, nothing written; "
        f"{output.replace(str(tmp_path), '<tmp>')[:200]}",
    )
