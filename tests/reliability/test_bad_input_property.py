"""Generated bad input, by class, thrown at the command line in-process (typer's CliRunner).

Every example must end with exit status 2, one line starting 'error:', no traceback, and
nothing written: the database file and the working directory are byte-for-byte what they were.
A study or a training run that starts by mistake (an input the generator meant to be bad was
accepted) fails the test instead of running: ``run_study`` and ``train`` are replaced by stubs
that raise.
"""

from __future__ import annotations

import contextlib
import math
import os
import string
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from study.cli import app
from study.spec import MAX_GRID_POINTS, MAX_SPEC_BYTES, MAX_TRIALS, StudySpec
from tests.study.test_cli_errors import GOOD, make_store
from trials.config import TrialConfig

# Examples per class: every class is tried, each with this many generated inputs (fewer where a
# class has fewer distinct values).
PER_CLASS = int(os.environ.get("ZONEOUT_BAD_INPUT_EXAMPLES", "6"))
SETTINGS = settings(
    max_examples=PER_CLASS,
    deadline=None,
    derandomize=True,  # the same examples in every run: CI never meets a new one by chance
    suppress_health_check=[HealthCheck.too_slow],
)


class _Accepted(AssertionError):
    """A generated input meant to be bad was accepted and work would have started."""


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("bad-input-store")
    make_store(directory, with_optuna=True)
    with pytest.MonkeyPatch.context() as patch:

        def refuse(*_: Any, **__: Any) -> Any:
            raise _Accepted("a bad input started a study or a training run")

        patch.setattr("study.runner.run_study", refuse)
        patch.setattr("trials.train.train", refuse)
        patch.delenv("ZONEOUT_STUDY_STORAGE", raising=False)
        yield directory


def _state(directory: Path) -> dict[str, bytes]:
    """Files (bytes) and directories under ``directory``, without SQLite's -wal/-shm files
    (made while a connection is open, removed when the last one closes)."""
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else b"<dir>"
        for path in sorted(directory.rglob("*"))
        if not path.name.endswith(("-wal", "-shm"))
    }


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    """A fresh working directory for one example (defaults such as ./reports land there)."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="zs-bad-input-") as directory:
        os.chdir(directory)
        try:
            yield Path(directory)
        finally:
            os.chdir(previous)


def _refused(
    args: list[str], store_dir: Path, workdir: Path, prepare: Callable[[], None] = lambda: None
) -> str:
    """Run the CLI on ``args``; assert the refusal contract; return the one line."""
    prepare()
    store_before, work_before = _state(store_dir), _state(workdir)
    result = CliRunner().invoke(app, args)
    output = result.output.strip()
    assert not isinstance(result.exception, _Accepted), args
    assert result.exit_code == 2, (args, result.output)
    assert "\n" not in output, (args, output)
    assert output.startswith("error:") and "Traceback" not in output, (args, output)
    assert _state(store_dir) == store_before, args
    assert _state(workdir) == work_before, args
    return output


# ------------------------------------------------------------------ specs
_NAME_CHARS = string.ascii_lowercase + "_"
_not_integer_float = st.floats(allow_nan=True, allow_infinity=True).filter(
    lambda f: not (math.isfinite(f) and f.is_integer())
)
_not_int = st.one_of(
    st.text(alphabet=string.ascii_letters + " ", min_size=1, max_size=8),
    st.lists(st.integers(), max_size=2),
    _not_integer_float,
)


def _spec_with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def _search(param: dict[str, Any]) -> dict[str, Any]:
    return {"zoneout_cell": {"type": "float", **param}}


_SPEC_CLASSES: dict[str, st.SearchStrategy[Any]] = {
    "unknown key": st.text(_NAME_CHARS, min_size=1, max_size=12)
    .filter(lambda k: k not in StudySpec.model_fields)
    .map(lambda k: _spec_with(**{k: 1})),
    "not a number": st.tuples(
        st.sampled_from(["n_trials", "repeats", "max_concurrent_trials"]), _not_int
    ).map(lambda kv: _spec_with(**{kv[0]: kv[1]})),
    "size over its cap": st.tuples(
        st.sampled_from(["n_trials", "repeats", "max_concurrent_trials"]),
        st.integers(min_value=MAX_TRIALS + 1, max_value=10**30),
    ).map(lambda kv: _spec_with(**{kv[0]: kv[1]})),
    "count not positive": st.tuples(
        st.sampled_from(["n_trials", "repeats", "max_concurrent_trials"]),
        st.integers(max_value=0),
    ).map(lambda kv: _spec_with(**{kv[0]: kv[1]})),
    "empty or inverted range": st.tuples(st.floats(0, 1), st.floats(0, 1))
    .filter(lambda lh: lh[0] >= lh[1])
    .map(lambda lh: _spec_with(search=_search({"low": lh[0], "high": lh[1]}))),
    "rate outside [0, 1]": st.floats(1.001, 1e6).map(
        lambda h: _spec_with(search=_search({"low": 0.0, "high": h}))
    ),
    "grid too large": st.floats(1e-300, 1.0 / MAX_GRID_POINTS).map(
        lambda s: _spec_with(
            sampler={"name": "grid"}, search=_search({"low": 0.0, "high": 1.0, "step": s})
        )
    ),
    "gpu with device cpu": st.floats(0.01, 8).map(
        lambda g: _spec_with(resources={"gpu": float(round(g)) if g > 1 else g})
    ),
    "device cuda without gpu": st.just(
        _spec_with(base={**GOOD["base"], "device": "cuda"}, resources={"gpu": 0})
    ),
    "not a mapping": st.one_of(
        st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=10), st.none()
    ),
    "required field missing": st.sampled_from(["name", "base", "base.task"]).map(
        lambda field: (
            {k: v for k, v in GOOD.items() if k != field}
            if "." not in field
            else {**GOOD, "base": {k: v for k, v in GOOD["base"].items() if k != "task"}}
        )
    ),
    "bad study name": st.text(string.printable, min_size=1, max_size=10).map(
        lambda s: _spec_with(name="../" + s)
    ),
}


def _text(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


_good_text = _text(GOOD)
_lines = _good_text.splitlines()

_SPEC_TEXTS: dict[str, st.SearchStrategy[bytes]] = {
    "duplicate key": st.integers(0, len(_lines)).map(
        lambda i: "\n".join([*_lines[:i], "n_trials: 3", *_lines[i:], "n_trials: 4"]).encode()
    ),
    "malformed YAML": st.tuples(
        st.integers(0, len(_lines)),
        st.sampled_from(["x: [1, 2", "y: {a: 1", "\tz: 1", "w: 'open", "- item", "k: v: w"]),
    ).map(lambda ix: "\n".join([*_lines[: ix[0]], ix[1], *_lines[ix[0] :]]).encode()),
    "file over the size cap": st.integers(1, 4096).map(
        lambda extra: (_good_text + "#" * (MAX_SPEC_BYTES + extra)).encode()
    ),
    "not UTF-8": st.tuples(
        st.integers(0, len(_good_text)), st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])
    ).map(lambda ib: _good_text.encode()[: ib[0]] + ib[1] + _good_text.encode()[ib[0] :]),
    "alias bomb": st.tuples(st.integers(4, 9), st.integers(4, 7))
    .filter(lambda wl: wl[0] ** wl[1] > 20_000)
    .map(
        lambda wl: "\n".join(
            [f"a0: &a0 [{', '.join(['x'] * wl[0])}]"]
            + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * wl[0])}]" for i in range(1, wl[1] + 1)]
            + ["name: x"]
        ).encode()
    ),
}


def _each_class(
    classes: dict[str, st.SearchStrategy[Any]], check: Callable[[str, Any], None]
) -> int:
    """Run ``check(class name, generated value)`` on up to PER_CLASS values of every class;
    returns how many examples ran."""
    ran = [0]

    def runner(name: str, strategy: st.SearchStrategy[Any]) -> Callable[[], None]:
        @SETTINGS
        @given(value=strategy)
        def run(value: Any) -> None:
            check(name, value)
            ran[0] += 1

        return run

    for name, strategy in classes.items():
        runner(name, strategy)()
    return ran[0]


def _record(record: Any, kind: str, where: str, classes: list[str], examples: int) -> None:
    record(
        f"Bad input, generated: {kind}",
        f"hypothesis, {examples} examples over {len(classes)} classes, {where}: "
        + ", ".join(classes),
        "every example: exit 2, one line, no traceback; database file and working directory "
        "byte-for-byte unchanged",
    )


@pytest.mark.slow
def test_generated_bad_specs_are_refused(store_dir: Path, reliability_record: Any) -> None:
    database = store_dir / "studies.db"
    classes = {
        **{name: s.map(lambda data: _text(data).encode()) for name, s in _SPEC_CLASSES.items()},
        **_SPEC_TEXTS,
    }

    def check(_: str, raw: bytes) -> None:
        with _workdir() as workdir:
            spec = workdir / "spec.yaml"
            spec.write_bytes(raw)
            _refused(["run", str(spec), "--storage", f"sqlite:///{database}"], store_dir, workdir)
            # Without --storage: the default database would be made in the working directory.
            _refused(["run", str(spec)], store_dir, workdir)

    examples = _each_class(classes, check)
    _record(
        reliability_record,
        "specs",
        "`zoneout-study run SPEC` (with and without --storage)",
        list(classes),
        examples,
    )


# ------------------------------------------------------------------ trial configs (train)
_CONFIG = {"task": "digits", "hidden_size": 8, "epochs": 1}
_CONFIG_CASES: dict[str, st.SearchStrategy[Any]] = {
    "unknown key": st.text(_NAME_CHARS, min_size=1, max_size=12)
    .filter(lambda k: k not in TrialConfig.model_fields)
    .map(lambda k: _text({**_CONFIG, k: 1})),
    "rate outside [0, 1]": st.tuples(
        st.sampled_from(["zoneout_cell", "zoneout_hidden"]), st.floats(1.001, 1e9)
    ).map(lambda kv: _text({**_CONFIG, kv[0]: kv[1]})),
    "not a number": st.tuples(
        st.sampled_from(["hidden_size", "epochs", "batch_size"]), _not_int
    ).map(lambda kv: _text({**_CONFIG, kv[0]: kv[1]})),
    "unknown task": st.text(_NAME_CHARS, min_size=1, max_size=10).map(
        lambda t: _text({**_CONFIG, "task": t})
    ),
    "not a mapping": st.one_of(st.lists(st.integers(), min_size=1, max_size=3), st.integers()).map(
        _text
    ),
    "malformed YAML": st.sampled_from(["task: [digits", "task: 'digits", "a: b: c"]),
}


@pytest.mark.slow
def test_generated_bad_configs_are_refused(store_dir: Path, reliability_record: Any) -> None:
    def check(_: str, text: str) -> None:
        with _workdir() as workdir:
            config = workdir / "config.yaml"
            config.write_text(text, encoding="utf-8")
            _refused(["train", str(config)], store_dir, workdir)

    examples = _each_class(_CONFIG_CASES, check)
    _record(
        reliability_record,
        "configs",
        "`zoneout-study train CONFIG`",
        list(_CONFIG_CASES),
        examples,
    )


# ------------------------------------------------------------------ paths
_file_name = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8)
_PATH_LIST = [
    ("export --out: a file", ["export", "known", "--out", "{file}"]),
    ("export --out: under a file", ["export", "known", "--out", "{file}/{name}"]),
    ("report --out: a file", ["report", "known", "--no-png", "--out", "{file}"]),
    ("report --out: under a file", ["report", "known", "--no-png", "--out", "{file}/{name}"]),
    ("status --csv: a directory", ["status", "known", "--csv", "{dir}"]),
    ("status --csv: under a file", ["status", "known", "--csv", "{file}/{name}.csv"]),
    ("train: a directory as config", ["train", "{dir}"]),
    ("train --checkpoint-dir: a file", ["train", "{config}", "--checkpoint-dir", "{file}"]),
    ("run: a directory as spec", ["run", "{dir}"]),
    ("run --report-dir: a file", ["run", "{spec}", "--report-dir", "{file}"]),
    ("export: unknown study", ["export", "{name}", "--out", "{dir}/{name}"]),
    ("export --out: a name too long", ["export", "known", "--out", "{dir}/{long}"]),
    ("status --csv: a name too long", ["status", "known", "--csv", "{dir}/{long}.csv"]),
]


@pytest.mark.slow
def test_generated_bad_paths_are_refused(store_dir: Path, reliability_record: Any) -> None:
    database = store_dir / "studies.db"
    templates = dict(_PATH_LIST)

    def check(label: str, name: str) -> None:
        with _workdir() as workdir:
            (workdir / "a-file").write_text("keep", encoding="utf-8")
            (workdir / "a-dir").mkdir()
            (workdir / "config.yaml").write_text(_text(_CONFIG), encoding="utf-8")
            (workdir / "spec.yaml").write_text(_text(GOOD), encoding="utf-8")
            fill = {
                "file": str(workdir / "a-file"),
                "dir": str(workdir / "a-dir"),
                "config": str(workdir / "config.yaml"),
                "spec": str(workdir / "spec.yaml"),
                "name": "zz" + name,  # never 'known'
                "long": (name * 300)[:300],  # past NAME_MAX (255 on Linux)
            }
            args = [part.format(**fill) for part in templates[label]]
            if args[0] in ("export", "report", "status"):
                args += ["--storage", f"sqlite:///{database}"]
            elif args[0] == "run":
                args += ["--storage", f"sqlite:///{workdir / 'new.db'}"]
            _refused(args, store_dir, workdir)

    examples = _each_class(dict.fromkeys(templates, _file_name), check)
    _record(
        reliability_record,
        "paths",
        "output and input paths of export, report, status, train, run",
        list(templates),
        examples,
    )


# ------------------------------------------------------------------ database URLs
_URL_CASES: dict[str, st.SearchStrategy[str]] = {
    "garbage": st.text(
        st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=24
    ).filter(lambda s: "://" not in s),
    "unsupported backend": st.tuples(
        st.sampled_from(["mysql", "oracle", "mssql", "foo", "http"]), _file_name
    ).map(lambda bn: f"{bn[0]}://user@localhost/{bn[1]}"),
    "missing SQLite file": _file_name.map(lambda n: f"sqlite:///missing-{n}.db"),
    "SQLite path is a directory": st.just("sqlite:///a-dir"),
    "in-memory SQLite": st.sampled_from(["sqlite://", "sqlite:///:memory:"]),
    "not a SQLite file": st.just("sqlite:///a-file"),
    "SQLite path unusable": _file_name.map(
        lambda n: f"sqlite:///{(n * 300)[:300]}.db" if len(n) % 2 else f"sqlite:///a-file/{n}.db"
    ),
    "unreachable PostgreSQL": _file_name.map(
        lambda n: f"postgresql+psycopg://u:pw-{n}@127.0.0.1:1/{n}"
    ),
}
_READ_ONLY = st.sampled_from(
    [
        ["list"],
        ["status"],
        ["status", "known"],
        ["export", "known", "--out", "out"],
        ["report", "known", "--no-png", "--out", "out"],
        ["dashboard", "--port", "1"],
    ]
)


@pytest.mark.slow
def test_generated_bad_urls_are_refused(store_dir: Path, reliability_record: Any) -> None:
    classes = {name: st.tuples(strategy, _READ_ONLY) for name, strategy in _URL_CASES.items()}

    def check(_: str, case: tuple[str, list[str]]) -> None:
        url, command = case
        with _workdir() as workdir:
            (workdir / "a-file").write_text("not a database", encoding="utf-8")
            (workdir / "a-dir").mkdir()
            output = _refused([*command, "--storage", url], store_dir, workdir)
            assert "pw-" not in output  # a password never shows

    examples = _each_class(classes, check)
    _record(
        reliability_record,
        "database URLs",
        "--storage of list, status, export, report, dashboard",
        list(classes),
        examples,
    )


_RUN_URL_CASES: dict[str, st.SearchStrategy[str]] = {
    "garbage": _URL_CASES["garbage"],
    "unsupported backend": _URL_CASES["unsupported backend"],
    "in-memory SQLite": _URL_CASES["in-memory SQLite"],
    "SQLite path is a directory": _URL_CASES["SQLite path is a directory"],
    "not a SQLite file": _URL_CASES["not a SQLite file"],
    "SQLite file in a missing directory": _file_name.map(lambda n: f"sqlite:///no-{n}/s.db"),
    "SQLite path unusable": _URL_CASES["SQLite path unusable"],
    "unreachable PostgreSQL": _URL_CASES["unreachable PostgreSQL"],
}


@pytest.mark.slow
def test_generated_bad_urls_for_run_are_refused_before_ray(
    store_dir: Path, reliability_record: Any
) -> None:
    """`run` may create its database, so its bad URLs are another set; each is refused before
    Ray starts (``run_study`` is the stub that raises)."""

    def check(_: str, url: str) -> None:
        with _workdir() as workdir:
            (workdir / "a-file").write_text("not a database", encoding="utf-8")
            (workdir / "a-dir").mkdir()
            spec = workdir / "spec.yaml"
            spec.write_text(_text(GOOD), encoding="utf-8")
            output = _refused(["run", str(spec), "--storage", url], store_dir, workdir)
            assert "pw-" not in output

    examples = _each_class(_RUN_URL_CASES, check)
    _record(
        reliability_record,
        "database URLs for run",
        "`zoneout-study run SPEC --storage URL`, refused before Ray starts",
        list(_RUN_URL_CASES),
        examples,
    )
