"""Bad input: exit status 2, one clear line, no traceback, nothing written to the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from study.cli import app
from tests.support import one_line_error

GOOD: dict[str, Any] = {
    "name": "bad-input",
    "base": {"task": "digits", "hidden_size": 8, "epochs": 1, "max_batches_per_epoch": 1},
    "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
    "n_trials": 1,
}


def _write(tmp_path: Path, data: Any, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def _run(tmp_path: Path, *args: str) -> Any:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


CASES: dict[str, tuple[Any, tuple[str, ...]]] = {
    "malformed yaml": ("name: x\nsearch: [1, 2\n", ("malformed YAML", "line")),
    "unknown key": ({**GOOD, "n_trails": 2}, ("unknown key 'n_trails'", "'n_trials'")),
    "rate outside [0, 1]": (
        {**GOOD, "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 1.2}}},
        ("zoneout_cell is a rate",),
    ),
    "empty range": (
        {**GOOD, "search": {"zoneout_hidden": {"type": "float", "low": 0.3, "high": 0.3}}},
        ("empty or inverted range",),
    ),
    "inverted range": (
        {**GOOD, "search": {"zoneout_hidden": {"type": "float", "low": 0.3, "high": 0.1}}},
        ("empty or inverted range",),
    ),
    "grid with a non-grid space": (
        {**GOOD, "sampler": {"name": "grid"}},
        ("sampler 'grid' needs a finite grid",),
    ),
    "unknown task": ({**GOOD, "base": {"task": "imagenet"}}, ("base.task",)),
    "escaping study name": ({**GOOD, "name": "../../etc"}, ("study name",)),
    "markup-like key": ({**GOOD, "[/bold]": 1}, ("unknown key '[/bold]'",)),
    "missing task": ({**GOOD, "base": {"hidden_size": 8, "epochs": 1}}, ("base.task: required",)),
    "missing base": (
        {k: v for k, v in GOOD.items() if k != "base"},
        ("base: required", "'task'"),
    ),
    "missing data": (
        {**GOOD, "base": {"task": "text-char", "text_path": "/nonexistent/text8"}},
        ("text corpus not found", "/nonexistent"),
    ),
    # Numbers: finite where they must be, types as declared, resources bounded, the right field.
    "NaN rate": (
        {**GOOD, "base": {**GOOD["base"], "zoneout_cell": float("nan")}},
        ("base.zoneout_cell: must be a finite number, got nan (not a number)",),
    ),
    "infinite learning rate": (
        {**GOOD, "base": {**GOOD["base"], "learning_rate": float("inf")}},
        ("base.learning_rate: must be a finite number, got inf",),
    ),
    "infinite scheduler factor": (
        {**GOOD, "scheduler": {"name": "asha", "reduction_factor": float("inf")}},
        ("scheduler.reduction_factor: must be a finite number, got inf",),
    ),
    "booleans as rate choices": (
        {**GOOD, "search": {"zoneout_cell": {"type": "categorical", "choices": [True, False]}}},
        ("search.zoneout_cell.choices[0]: must be a number, got true: a boolean is not a number",),
    ),
    "boolean as a count": (
        {**GOOD, "n_trials": True},
        ("n_trials: must be an integer, got true: a boolean is not a number",),
    ),
    "a number and its text as choices": (
        {**GOOD, "search": {"zoneout_cell": {"type": "categorical", "choices": [0.1, "0.1"]}}},
        ("search.zoneout_cell.choices[1]: must be a number, got the text '0.1'",),
    ),
    "one value twice as choices": (
        {**GOOD, "search": {"hidden_size": {"type": "categorical", "choices": [8, 8.0]}}},
        ("search.hidden_size.choices[1]: 8.0 is the value of choices[0] again",),
    ),
    "exponent YAML reads as text": (
        yaml.safe_dump(GOOD).replace("epochs: 1", "epochs: 1\n  learning_rate: 1e-3"),
        ("base.learning_rate: must be a number, got the text '1e-3'", "write 1.0e-3"),
    ),
    "more threads than a trial's CPUs": (
        {**GOOD, "base": {**GOOD["base"], "threads": 1000}},
        ("base.threads: 1000 threads, but a trial reserves resources.cpu 1 CPU", "os.cpu_count()"),
    ),
    "a 200,000-character choice": (
        {**GOOD, "search": {"zoneout_cell": {"type": "categorical", "choices": ["x" * 200_000]}}},
        ("search.zoneout_cell.choices[0]: must be a number, got the text 'xxx", "xxx'... (200,000"),
    ),
    "a file name longer than NAME_MAX": (
        {**GOOD, "base": {"task": "text-char", "text_path": "x" * 300}},
        ("base.text_path:", "has a name of 300 bytes; a file name has at most 255 (NAME_MAX)"),
    ),
    "validation cut below its streams": (
        {**GOOD, "base": {**GOOD["base"], "task": "ptb-char", "valid_tokens": 1}},
        ("valid_tokens 1 is too few for eval_streams 1", "valid_tokens must be at least 2"),
    ),
    "more evaluation streams than the text holds": (
        {**GOOD, "base": {**GOOD["base"], "task": "ptb-char", "eval_streams": 300_000}},
        (
            "eval_streams: 300,000 streams need at least 600,000 validation tokens",
            "at most 196,521",
        ),
    ),
}

# Every message echoes a value cut to its start and its length: one line, never a 200 KB one.
MAX_MESSAGE_CHARS = 600


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_exits_2_with_one_line_and_writes_nothing(tmp_path: Path, case: str) -> None:
    data, expected = CASES[case]
    database = tmp_path / "store.db"
    result = _run(
        tmp_path, "run", str(_write(tmp_path, data)), "--storage", f"sqlite:///{database}"
    )
    one_line_error(result, *expected)
    assert len(result.output) < MAX_MESSAGE_CHARS + len(str(tmp_path)), result.output[:1000]
    assert not database.exists()


_LONG = "y" * 200_000


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": _LONG}, "name: study name 'yyy"),
        ({_LONG: 1}, "unknown key 'yyy"),
        ({"search": {_LONG: {"type": "float", "low": 0.0, "high": 0.5}}}, "search: 'yyy"),
        ({"sampler": {"name": "tpe", "options": {_LONG: 1}}}, "sampler.options: "),
        ({"base": {**GOOD["base"], "cell": _LONG}}, "base.cell: "),
        ({"base": {**GOOD["base"], "data_dir": "/" + _LONG}}, "base.data_dir: /yyy"),
        ({"points": [{"zoneout_cell": _LONG}]}, "points[0].zoneout_cell: "),
        ({"points": [{"zoneout_cell": 0.1, _LONG: 1}]}, "points[0]: a point gives"),
        ({"resources": {"wait_for_nodes_s": _LONG}}, "resources.wait_for_nodes_s: "),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None,
)
def test_a_long_value_is_echoed_cut(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    """A 200,000-character value is named by its field and echoed by its start and length."""
    result = _run(tmp_path, "run", str(_write(tmp_path, {**GOOD, **change})))
    one_line_error(result, field)
    assert len(result.output) < MAX_MESSAGE_CHARS + len(str(tmp_path)), result.output[:1000]
    if field.endswith("yyy"):
        assert "(200,00" in result.output, result.output  # the value's length, cut to its start


def test_missing_spec_file(tmp_path: Path) -> None:
    result = _run(tmp_path, "run", str(tmp_path / "absent.yaml"))
    one_line_error(result, "no such file")


def test_unreachable_database_names_it_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://zoneout:s3cret-pw@127.0.0.1:1/studies"
    result = _run(tmp_path, "status", "--storage", url)
    one_line_error(result, "127.0.0.1:1")
    assert "s3cret-pw" not in result.output


@pytest.mark.ray
def test_impossible_resources_exit_2_before_the_store(tmp_path: Path, ray_local: None) -> None:
    database = tmp_path / "store.db"
    spec = _write(tmp_path, {**GOOD, "resources": {"cpu": 64}})
    result = _run(tmp_path, "run", str(spec), "--storage", f"sqlite:///{database}")
    one_line_error(result, "resources.cpu is 64", "largest Ray node")
    assert not database.exists()


def test_bad_trial_config_for_train_exits_2(tmp_path: Path) -> None:
    config = _write(tmp_path, {"task": "digits", "zoneout_cell": 1.5}, "config.yaml")
    result = _run(tmp_path, "train", str(config))
    one_line_error(result, "zoneout_cell")


# ------------------------------------------------------------------ a store with one study
INTERRUPTED_ERROR = "interrupted: the driver stopped before the trial finished"


def make_store(directory: Path, *, with_optuna: bool = False, finished: str = "COMPLETE") -> Path:
    """A SQLite store holding study 'known' (plan 3): trials 0 and 1 ``finished`` (COMPLETE),
    trial 2 cut short by Ctrl-C before it started (no parameters, no epochs). Returns the
    database file."""
    import optuna

    from study.runner import INTERRUPTED
    from study.store import Store

    assert INTERRUPTED == INTERRUPTED_ERROR
    database = directory / "studies.db"
    url = f"sqlite:///{database}"
    optuna_id = None
    if with_optuna:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name="known", storage=url)
        optuna_id = study._study_id
    with Store.open(url) as store:
        store.register_study(
            "known",
            spec={**GOOD, "name": "known", "n_trials": 3},
            versions={"python": "3"},
            direction="minimize",
            metric="error",
            optuna_study_id=optuna_id,
        )
        for number, value in ((0, 0.5), (1, 0.4)):
            store.upsert_trial(
                "known",
                number,
                state=finished,
                params={"zoneout_cell": 0.1 * number},
                best_value=value,
                final_value=value,
                epochs=1,
            )
        store.upsert_trial("known", 2, state="FAIL", error=INTERRUPTED, retired="interrupted")
    return database


def _snapshot(directory: Path) -> dict[str, bytes]:
    """Every file's bytes and every directory under ``directory``, leaving out SQLite's -wal and
    -shm files: SQLite makes them while a connection is open (Optuna keeps its engine for the
    process) and removes them when the last one closes; what the database holds is in the
    main file."""
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else b"<dir>"
        for path in sorted(directory.rglob("*"))
        if not path.name.endswith(("-wal", "-shm"))
    }


def test_export_of_an_unknown_study_names_the_studies_there(tmp_path: Path) -> None:
    database = make_store(tmp_path)
    before = _snapshot(tmp_path)
    out = tmp_path / "new" / "exports"
    result = _run(
        tmp_path, "export", "nope", "--storage", f"sqlite:///{database}", "--out", str(out)
    )
    one_line_error(result, "no study named 'nope' in sqlite:///", "studies there: known")
    assert "register_study" not in result.output
    assert _snapshot(tmp_path) == before  # no empty output directory left behind


def test_export_with_nothing_to_export_leaves_no_directory(tmp_path: Path) -> None:
    database = make_store(tmp_path, with_optuna=True, finished="PRUNED")  # none COMPLETE
    before = _snapshot(tmp_path)
    out = tmp_path / "a" / "b"
    result = _run(
        tmp_path, "export", "known", "--storage", f"sqlite:///{database}", "--out", str(out)
    )
    one_line_error(result, "no COMPLETE trial")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "command",
    [["list"], ["status"], ["status", "known"], ["export", "known"], ["report", "known"]],
)
def test_read_only_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "typo.db"
    result = _run(tmp_path, *command, "--storage", f"sqlite:///{missing}", "--out", str(tmp_path))
    if command[0] in ("list", "status"):  # no --out: run again without it
        result = _run(tmp_path, *command, "--storage", f"sqlite:///{missing}")
    one_line_error(result, "no such database", str(missing))
    assert not missing.exists()
    assert sorted(tmp_path.iterdir()) == []


def test_a_database_without_study_tables_is_named_not_migrated(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    before = other.read_bytes()
    result = _run(tmp_path, "list", "--storage", f"sqlite:///{other}")
    one_line_error(result, "holds another program's tables (notes)")
    assert other.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["export", "known", "--out", "{file}"], "exists and is not a directory"),
        (["export", "known", "--out", "{file}/sub"], "is a file, not a directory"),
        (["report", "known", "--no-png", "--out", "{file}"], "exists and is not a directory"),
        (["status", "known", "--csv", "{dir}"], "is a directory; give a file name"),
        (["status", "known", "--csv", "{file}/t.csv"], "is a file, not a directory"),
    ],
)
def test_output_paths_of_the_wrong_kind_exit_2_and_write_nothing(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    database = make_store(tmp_path)
    (tmp_path / "a-file").write_text("keep me", encoding="utf-8")
    (tmp_path / "a-dir").mkdir()
    before = _snapshot(tmp_path)
    filled = [a.format(file=tmp_path / "a-file", dir=tmp_path / "a-dir") for a in args]
    result = _run(tmp_path, *filled, "--storage", f"sqlite:///{database}")
    one_line_error(result, expected)
    assert _snapshot(tmp_path) == before


def test_status_csv_writes_into_a_new_directory(tmp_path: Path) -> None:
    database = make_store(tmp_path)
    csv = tmp_path / "out" / "trials.csv"
    url = f"sqlite:///{database}"
    result = _run(tmp_path, "status", "known", "--storage", url, "--csv", str(csv))
    assert result.exit_code == 0, result.output
    assert csv.is_file() and csv.with_suffix(".epochs.csv").is_file()


def test_status_and_list_say_interrupted_in_words_at_80_columns(tmp_path: Path) -> None:
    database = make_store(tmp_path)
    url = f"sqlite:///{database}"
    listed = _run(tmp_path, "list", "--storage", url)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert all(len(line) <= 80 for line in lines), listed.output
    assert "…" not in listed.output, listed.output
    row = next(line for line in lines if line.split()[:1] == ["known"])
    # plan 3; complete 2, pruned 0, failed 0, interrupted 1, running 0
    assert row.split()[2:] == ["3", "2", "0", "0", "1", "0"], row
    assert "continues each from its last checkpoint" in " ".join(listed.output.split())
    shown = _run(tmp_path, "status", "known", "--storage", url)
    assert shown.exit_code == 0, shown.output
    assert all(len(line) <= 80 for line in shown.output.splitlines()), shown.output
    state = next(line for line in shown.output.splitlines() if line.split()[:1] == ["2"])
    assert state.split()[1] == "interrupted", shown.output
    assert "COMPLETE" in shown.output
    assert "<NA>" not in shown.output and "nan" not in shown.output
    flat = " ".join(shown.output.split())
    assert "it does not count, and a replacement continues it from its last checkpoint" in flat


def test_the_words_for_retired_trials_come_from_the_retired_column() -> None:
    import pandas as pd

    from study.cli._words import FailureWords as _FailureWords

    cut = "cut off by the infrastructure: RayActorError: the actor died"
    frame = pd.DataFrame(
        {
            "number": [0, 1, 2, 3, 4],
            "state": ["FAIL", "FAIL", "FAIL", "FAIL", "COMPLETE"],
            "error": [f"{INTERRUPTED_ERROR} (disk full)", "driver lost", cut, "driver lost", None],
            "retired": ["interrupted", "driver_lost", "infrastructure", None, None],
        },
        index=[10, 11, 12, 13, 14],  # rows are named by their labels
    )
    words = _FailureWords(frame)
    assert words.kinds() == ["interrupted", "driver lost", "cut off", "FAIL", "COMPLETE"]
    assert words.sentence(10, "FAIL", frame.loc[10, "error"]).startswith(
        "interrupted (the driver stopped before it finished); it does not count"
    )
    assert words.sentence(11, "FAIL", "driver lost").startswith("lost its driver while")
    assert words.sentence(12, "FAIL", cut) == (
        f"{cut}; it does not count, and a replacement continues it from its last checkpoint"
    )
    assert words.sentence(13, "FAIL", "driver lost") == "FAIL: driver lost"  # not retired
    # A `status --csv` table of an older version has no such column: its error text decides.
    older = _FailureWords(frame.drop(columns="retired"))
    assert older.kinds() == ["interrupted", "driver lost", "cut off", "driver lost", "COMPLETE"]


def test_a_bug_exits_1_with_its_traceback(tmp_path: Path, monkeypatch: Any) -> None:
    from study.store import Store

    database = make_store(tmp_path)

    def broken(self: Any) -> Any:
        raise KeyError("injected")

    monkeypatch.setattr(Store, "studies_frame", broken)
    result = CliRunner().invoke(app, ["list", "--storage", f"sqlite:///{database}"])
    assert result.exit_code == 1, result.output
    assert "Traceback (most recent call last)" in result.output
    assert "KeyError: 'injected'" in result.output
    assert "internal error" in result.output


def test_an_interrupted_run_ends_with_the_resume_line_only(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Exit 130 and the service's resume line; the interrupted trial is counted as such, not
    as a failure (the run itself is replaced: what is tested is what the CLI prints)."""
    from study.runner import StudyOutcome

    database = make_store(tmp_path)
    spec = _write(tmp_path, {**GOOD, "name": "known", "storage": f"sqlite:///{database}"})

    def interrupted_run(spec: Any, **_: Any) -> StudyOutcome:
        return StudyOutcome(
            name=spec.name, storage="-", status="interrupted", wall_seconds=3, opened=True
        )

    monkeypatch.setattr("study.runner.run_study", interrupted_run)
    result = CliRunner().invoke(app, ["run", str(spec), "--no-report"])
    assert result.exit_code == 130, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    flat = " ".join(result.output.split())
    assert (
        "2 complete, 0 pruned, 0 failed; 1 cut off by the run, not counted (replacements "
        "continue them from their checkpoints)"
    ) in flat
    assert result.output.splitlines()[-1] == f"interrupted; resume with: zoneout-study run {spec}"
    assert "Tuner.restore" not in result.output


def test_a_busy_dashboard_port_is_named_with_the_way_out(tmp_path: Path) -> None:
    import socket

    database = make_store(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(
            tmp_path, "dashboard", "--storage", f"sqlite:///{database}", "--port", str(port)
        )
    one_line_error(result, f"port {port} on 127.0.0.1 is in use", "--port")
    assert "optuna-dashboard on" not in result.output


# ------------------------------------------------------------------ specs: sizes and keys
def test_a_tiny_grid_step_is_refused_by_count_without_building(tmp_path: Path) -> None:
    import time
    import tracemalloc

    spec = {
        **GOOD,
        "sampler": {"name": "grid"},
        "search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 1.0, "step": 1e-12}},
    }
    tracemalloc.start()
    started = time.perf_counter()
    result = _run(tmp_path, "run", str(_write(tmp_path, spec)), "--storage", "sqlite:///x.db")
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    one_line_error(result, "the grid has more than 100,000 points", "search.zoneout_cell")
    assert seconds < 5 and peak < 50e6, (seconds, peak)


def test_a_10_mb_spec_is_refused_by_size_before_parsing(tmp_path: Path) -> None:
    import time

    big = tmp_path / "big.yaml"
    big.write_text("name: x\ndescription: '" + "a" * 10_000_000 + "'\n", encoding="utf-8")
    started = time.perf_counter()
    result = _run(tmp_path, "run", str(big))
    one_line_error(result, "10,000,024 bytes", "at most 262,144 bytes")
    assert time.perf_counter() - started < 2


def test_duplicate_keys_name_the_key_and_line(tmp_path: Path) -> None:
    text = yaml.safe_dump(GOOD) + "n_trials: 5\n"
    result = _run(tmp_path, "run", str(_write(tmp_path, text)))
    line = text.splitlines().index("n_trials: 5") + 1
    one_line_error(result, f"line {line}: duplicate key 'n_trials'")


def test_an_alias_bomb_is_refused_by_its_expanded_size(tmp_path: Path) -> None:
    rows = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        rows.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    result = _run(tmp_path, "run", str(_write(tmp_path, "\n".join([*rows, "name: x"]))))
    one_line_error(result, "once aliases are expanded")


@pytest.mark.parametrize(
    ("base", "resources", "expected"),
    [
        ({}, {"gpu": 1}, "base.device is 'cpu' (the default)"),
        ({"device": "cpu"}, {"gpu": 0.5}, "resources.gpu is 0.5 per trial"),
        ({"device": "cuda"}, {"gpu": 0}, "base.device is 'cuda' but resources.gpu is 0"),
    ],
)
def test_resources_and_device_must_agree(
    tmp_path: Path, base: dict[str, Any], resources: dict[str, Any], expected: str
) -> None:
    spec = {**GOOD, "base": {**GOOD["base"], **base}, "resources": resources}
    database = tmp_path / "s.db"
    result = _run(
        tmp_path, "run", str(_write(tmp_path, spec)), "--storage", f"sqlite:///{database}"
    )
    one_line_error(result, expected)
    assert not database.exists()


def test_device_auto_follows_the_resources() -> None:
    from study.spec import validate_spec

    for gpu, device in ((0, "cpu"), (0.5, "cuda"), (1, "cuda")):
        spec = {**GOOD, "base": {**GOOD["base"], "device": "auto"}, "resources": {"gpu": gpu}}
        assert validate_spec(spec).base.device == device


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"task: digits\n\xff\xfe"), "not UTF-8 text"),
        (lambda p: p.write_text("x" * 300_000), "at most 262,144 bytes"),
    ],
)
def test_train_refuses_config_files_by_kind_size_and_encoding(
    tmp_path: Path, make: Any, expected: str
) -> None:
    config = tmp_path / "config.yaml"
    make(config)
    result = _run(tmp_path, "train", str(config))
    one_line_error(result, expected)


# ------------------------------------------------------------------ make demo: no banners
def test_pyproject_license_installs_without_a_deprecation_banner() -> None:
    """setuptools >= 77 warns (a banner on every install, four times in `make demo`) about a
    TOML-table ``project.license``; an SPDX string reads cleanly."""
    import gc
    import warnings

    import tomllib
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    assert data["project"]["license"] == "MIT"
    assert "setuptools>=77" in data["build-system"]["requires"]
    gc.collect()  # earlier tests' unclosed objects warn when collected, not setuptools
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        apply_configuration(Distribution(), pyproject)  # what every install runs
    # A ResourceWarning here is the garbage collector finishing another test's connection
    # during this call (seen in CI: psycopg's "deleted while still open"), not the install.
    assert [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)] == []


def test_train_with_a_batch_larger_than_its_data_exits_2(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        {"task": "ptb-char", "train_tokens": 2000, "batch_size": 4000, "hidden_size": 8},
        "config.yaml",
    )
    result = _run(tmp_path, "train", str(config))
    # Named by the fields to change, not by the batch the data is too small for.
    one_line_error(result, "train_tokens 2000 is too few for batch_size 4000", "at least 8,000")


def test_rays_notices_are_silenced_where_ray_logs_them() -> None:
    """The service quiets two Ray loggers by name: the token-authentication notice of a local Ray
    it starts, and Tune's Tuner.restore() advice on Ctrl-C. Both names must be the loggers Ray
    actually uses, or the notices come back unnoticed after a Ray upgrade."""
    import logging

    import ray.tune.tune as tune_module
    from ray._private.authentication import authentication_token_setup as auth

    from study import ray_session

    assert auth.logger.name == ray_session.RAY_AUTH_LOGGER
    assert tune_module.logger.name == "ray.tune.tune"
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    auth.logger.addHandler(handler)  # Ray's loggers do not propagate to pytest's root handler
    try:
        with ray_session.quiet_logger(ray_session.RAY_AUTH_LOGGER, logging.ERROR):
            auth._warn_token_auth_enabled()
        assert records == []
        auth._warn_token_auth_enabled()  # outside the block the logger is as it was
        assert ["Token authentication" in r.getMessage() for r in records] == [True]
    finally:
        auth.logger.removeHandler(handler)


def test_markup_in_a_path_is_printed_as_text(tmp_path: Path) -> None:
    """Names and paths come from the user's files and databases: a `[bold red]` in a directory
    name is text (rich would swallow it as a style tag)."""
    database = make_store(tmp_path, with_optuna=True)
    out = tmp_path / "[bold red]reports d["
    result = _run(
        tmp_path, "report", "known", "--storage", f"sqlite:///{database}", "--out", str(out),
        "--no-png",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"report: {out}" in result.output.replace("\n", ""), result.output
