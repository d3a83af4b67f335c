"""Helpers shared by several test directories (plain functions; fixtures live in conftest.py).

* PostgreSQL: the admin engine (skip locally / fail in CI when the server is down), CREATE and
  DROP DATABASE retried while a fault-injection test restarts the server, and database URLs.
* Subprocess drivers: a short RAY_TMPDIR whose processes are killed afterwards, and the
  environment a driver subprocess runs with.
* A tiny real PTB-char study spec, a free TCP port and a JSON GET for optuna-dashboard's API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

# ------------------------------------------------------------------ PostgreSQL
PG_ADMIN_URL = os.environ.get(
    "ZONEOUT_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def connect_pg_admin() -> sa.Engine:
    """An AUTOCOMMIT engine on the maintenance database. An unreachable server skips the test
    locally and fails it when ``$CI`` is set: in CI the PostgreSQL promise is tested, never
    skipped."""
    admin = make_url(PG_ADMIN_URL)
    # pool_pre_ping: a server restarted by a fault-injection test must not break teardown.
    engine = sa.create_engine(
        admin,
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=True,
        connect_args={"connect_timeout": 5},
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        msg = (
            f"PostgreSQL is not reachable at {admin.render_as_string(hide_password=True)} "
            f"({reason}); set ZONEOUT_TEST_PG_ADMIN_URL or start the server"
        )
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return engine


def _admin_sql(engine: sa.Engine, statement: str, seconds: float) -> None:
    """Run ``statement``, retried for ``seconds`` while the server is unreachable: other tests
    restart PostgreSQL on purpose while the suite runs."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text(statement))
            return
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def create_database(engine: sa.Engine, name: str, seconds: float = 60.0) -> None:
    """CREATE DATABASE ``name``, riding out a server restart."""
    _admin_sql(engine, f'CREATE DATABASE "{name}"', seconds)


def drop_database(engine: sa.Engine, name: str, seconds: float = 60.0) -> None:
    """DROP DATABASE ``name`` WITH (FORCE) if it exists, riding out a server restart."""
    _admin_sql(engine, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', seconds)


def pg_url(name: str, password: str | None = None) -> str:
    """URL of database ``name`` on the admin server (optionally with a password), in clear."""
    url = make_url(PG_ADMIN_URL).set(database=name)
    if password is not None:
        url = url.set(password=password)
    return url.render_as_string(hide_password=False)


# ------------------------------------------------------------------ subprocess drivers
def kill_process_tree(marker: str) -> None:
    """SIGKILL every process (not ours) whose command line mentions ``marker``, and their
    descendants: Ray's workers rename themselves to ``ray::...`` and lose the marker. Never
    ``ray stop``, which would stop other tests' Ray instances too."""
    parents: dict[int, int] = {}
    hits: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        if marker in cmdline:
            hits.add(pid)
    grown = True
    while grown:
        children = {pid for pid, ppid in parents.items() if ppid in hits} - hits
        grown = bool(children)
        hits |= children
    for pid in hits:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def driver_ray_tmpdir(prefix: str = "zs-drv-") -> Iterator[str]:
    """A short RAY_TMPDIR under /tmp for a Ray started outside this process (its unix sockets
    must stay under 108 characters); afterwards every process naming it is killed."""
    path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        yield path
    finally:
        kill_process_tree(path)
        shutil.rmtree(path, ignore_errors=True)


def driver_env(ray_tmpdir: str, **extra: str) -> dict[str, str]:
    """Environment of a driver subprocess: its own Ray temp dir, no usage stats; ``extra`` on
    top."""
    return {
        **os.environ,
        "RAY_TMPDIR": ray_tmpdir,
        "RAY_USAGE_STATS_ENABLED": "0",
        **extra,
    }


# ------------------------------------------------------------------ studies
# Real PTB characters, small enough for a trial to take seconds.
TINY_PTB_BASE: dict[str, Any] = {
    "task": "ptb-char",
    "train_tokens": 12_000,
    "valid_tokens": 3_000,
    "test_tokens": 3_000,
    "hidden_size": 16,
    "bptt": 40,
    "batch_size": 16,
    "eval_batch_size": 16,
    "max_batches_per_epoch": 6,
    "epochs": 3,
    "seed": 1,
}
ZONEOUT_SEARCH: dict[str, Any] = {
    "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.7},
    "zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.3},
}

# Tiny SGD on PTB characters without gradient clipping: a learning rate of 1e12 drives the loss
# to nan/inf (a diverging trial). Callers add train_tokens / valid_tokens.
UNCLIPPED_SGD_PTB_BASE: dict[str, Any] = {
    "task": "ptb-char",
    "hidden_size": 8,
    "bptt": 20,
    "batch_size": 8,
    "eval_batch_size": 8,
    "max_batches_per_epoch": 3,
    "epochs": 2,
    "optimizer": "sgd",
    "clip_norm": None,
}


def tiny_ptb_spec(name: str, directory: Path, **overrides: Any) -> dict[str, Any]:
    """A study spec dict on tiny real PTB-char trials: 4 random trials over the two zoneout
    probabilities, 2 at a time, no scheduler, checkpoints under ``directory / "runs"``. Each
    override replaces a top-level key whole (``base={**TINY_PTB_BASE, ...}`` to change sizes)."""
    data: dict[str, Any] = {
        "name": name,
        "base": dict(TINY_PTB_BASE),
        "search": dict(ZONEOUT_SEARCH),
        "sampler": {"name": "random", "seed": 0},
        "scheduler": {"name": "none"},
        "n_trials": 4,
        "max_concurrent_trials": 2,
        "checkpoint_path": str(directory / "runs"),
    }
    data.update(overrides)
    return data


def write_spec(data: dict[str, Any], directory: Path) -> Path:
    """Write a spec dict as ``directory / "<name>.yaml"`` for `zoneout-study run`."""
    path = directory / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# ------------------------------------------------------------------ HTTP
def one_line_error(result: Any, *expected: str, single_line: bool = False) -> str:
    """A CLI result that refused: exit 2, ``error:`` first, no traceback, each of ``expected``
    in the message; returned with its whitespace folded (the terminal may wrap it).
    ``single_line``: the output must also be one physical line."""
    output = result.output.strip()
    assert result.exit_code == 2, output
    assert output.startswith("error:") and "Traceback" not in output, output
    if single_line:
        assert len(output.splitlines()) == 1, output
    flat = " ".join(output.split())
    for text in expected:
        assert text in flat, flat
    return flat


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for optuna-dashboard, Ray's ports)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> Any:
    """GET ``url`` and decode its JSON body (optuna-dashboard's API)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


# ------------------------------------------------------------------ the one score
def assert_one_score(url: str, name: str) -> dict[Any, int]:
    """Every finished trial of study ``name`` holds the one score (study.score), read against
    the epochs table: a COMPLETE trial's Optuna value is the mean over its seeds of each seed's
    minimum; a PRUNED one's, the same up to its last intermediate step; each intermediate value
    is the score at that epoch; ``zs_trials.best_value`` is the value. Returns trials checked
    by state."""
    import math as _math

    from optuna.trial import TrialState

    from study import keys
    from study import optuna_study as ostudy
    from study.store import Store

    study = ostudy.load_study(url, name)
    with Store(url) as store:
        epochs = store.epochs_frame(name)
        rows = store.trials_frame(name).set_index("number")
    checked: dict[Any, int] = {TrialState.COMPLETE: 0, TrialState.PRUNED: 0}
    for trial in ostudy.trials(study):
        if trial.state not in checked:
            continue
        mine = epochs[epochs["number"] == trial.number]
        seeds = trial.user_attrs.get(keys.SEEDS) or sorted(set(mine["seed"]))
        per_seed = {
            int(s): mine[mine["seed"] == s].set_index("epoch")["valid_metric"] for s in seeds
        }
        last = max(trial.intermediate_values) if trial.state == TrialState.PRUNED else None
        bests = [
            float(curve[curve.index <= last].min() if last is not None else curve.min())
            for curve in per_seed.values()
        ]
        expected = sum(bests) / len(bests)
        assert trial.value is not None and _math.isclose(
            trial.value, expected, rel_tol=1e-12, abs_tol=1e-12
        ), (trial.number, trial.state, trial.value, expected)
        for step, value in trial.intermediate_values.items():
            at_step = [float(c[c.index <= step].min()) for c in per_seed.values()]
            assert _math.isclose(value, sum(at_step) / len(at_step), rel_tol=1e-12), (
                trial.number, step, value, at_step
            )  # fmt: skip
        stored = rows.loc[trial.number, "best_value"]
        assert _math.isclose(float(stored), expected, rel_tol=1e-12), (trial.number, stored)
        checked[trial.state] += 1
    return checked
