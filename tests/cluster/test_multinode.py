"""A real two-node Ray cluster on this machine, with token authentication, driven by the CLI.

`ray start --head` and `ray start --address=...` give two Ray nodes of one CPU each (the head
offers a CPU here so that two nodes suffice); studies on a fresh PostgreSQL database must use
both nodes, keep every trial and epoch once, be readable by optuna-dashboard, and two drivers
on the same study must share its budget. Every process started here is killed at the end by
the marker in its command line (this test's Ray temp dir) plus its descendants, never by
`ray stop`, which would stop other tests' Ray instances too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from study.store import Store
from tests.support import (
    TINY_PTB_BASE,
    driver_env,
    driver_ray_tmpdir,
    free_port,
    get_json,
    tiny_ptb_spec,
    write_spec,
)

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.postgres]

CLI = [sys.executable, "-m", "study.cli"]
RAY = str(Path(sys.executable).parent / "ray")
EPOCHS = 2


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    node_ids: list[str]
    temp_dir: str


WAIT_FOR_NODES = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False,
         logging_level="ERROR")
deadline = time.monotonic() + 120
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= 2 or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps([{"id": n["NodeID"], "cpu": n["Resources"].get("CPU", 0)} for n in alive]))
"""


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(
            [RAY, "start", *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=180
        )
    if result.returncode != 0:
        pytest.fail(f"ray start {args[0]} failed:\n{log.read_text()[-3000:]}", pytrace=False)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Cluster]:
    # Short path (Ray's unix sockets live under it); every process started here is killed on
    # the way out by this marker in its command line, plus its descendants.
    with driver_ray_tmpdir("zs-mn-") as temp_dir:
        # Token authentication on, with one explicit token for every process of the cluster.
        env = driver_env(temp_dir, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        port = free_port()
        address = f"127.0.0.1:{port}"
        log = Path(temp_dir) / "ray-start.log"
        common = ["--num-cpus=1", "--num-gpus=0", f"--temp-dir={temp_dir}", "--disable-usage-stats"]
        _ray_start(
            [
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                *common,
            ],
            env,
            log,
        )
        _ray_start(
            [
                f"--address={address}",
                f"--dashboard-agent-listen-port={free_port()}",
                *common,
            ],
            env,
            log,
        )
        # The compose file's head health check, against this cluster (token required).
        health = subprocess.run(
            [RAY, "health-check", "--address", address],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert health.returncode == 0, health.stdout + health.stderr
        waited = subprocess.run(
            [sys.executable, "-c", WAIT_FOR_NODES, address],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert waited.returncode == 0, waited.stderr[-3000:]
        nodes = json.loads(waited.stdout.strip().splitlines()[-1])
        assert len(nodes) == 2, nodes
        assert all(node["cpu"] == 1 for node in nodes), nodes
        yield Cluster(address, env, [node["id"] for node in nodes], temp_dir)


def _spec(directory: Path, name: str, **overrides: Any) -> Path:
    """The tiny PTB-char study of tests/study/test_runner.py: 4 trials, 2 at a time, 1 CPU each."""
    data = tiny_ptb_spec(
        name,
        # Both nodes live on this machine, so a local directory is shared storage here.
        directory,
        base={**TINY_PTB_BASE, "epochs": EPOCHS},
        resources={"cpu": 1},
        **overrides,
    )
    return write_spec(data, directory)


def _start_driver(cluster: Cluster, spec: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    command = [
        *CLI,
        "run",
        str(spec),
        "--ray-address",
        cluster.address,
        "--storage",
        url,
        "--no-report",
    ]
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            cwd=spec.parent,
            env=cluster.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def _drivers(cluster: Cluster, runs: list[tuple[Path, str, Path]]) -> Iterator[list[Any]]:
    processes = [_start_driver(cluster, spec, url, log) for spec, url, log in runs]
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _wait(processes: list[subprocess.Popen[bytes]], logs: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for process, log in zip(processes, logs, strict=True):
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"driver still running after {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        assert process.returncode == 0, log.read_text()[-4000:]


def _counted(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [
        t
        for t in trials
        if t.state in finished
        and not t.user_attrs.get("requeued")
        and not t.user_attrs.get("surplus")
    ]


def _check_store(url: str, name: str, numbers: list[int]) -> Any:
    store = Store(url)
    try:
        frame = store.trials_frame(name)
        epochs = store.epochs_frame(name)
    finally:
        store.close()
    assert not frame["number"].duplicated().any()
    assert not epochs.duplicated(["number", "seed", "epoch"]).any()
    for number in numbers:
        assert sorted(epochs[epochs["number"] == number]["epoch"]) == list(range(1, EPOCHS + 1))
    return frame


def test_study_uses_both_nodes_and_dashboard_reads_it(
    ray_cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    from dashboards import serve_dashboard

    spec = _spec(tmp_path, "multinode")
    log = tmp_path / "driver.log"
    with _drivers(ray_cluster, [(spec, postgres_url, log)]) as processes:
        _wait(processes, [log], timeout=420)

    study = optuna.load_study(study_name="multinode", storage=postgres_url)
    trials = study.get_trials()
    counted = _counted(trials)
    assert len(counted) == 4
    assert all(t.state == TrialState.COMPLETE for t in counted)  # no scheduler: full budgets

    frame = _check_store(postgres_url, "multinode", [t.number for t in counted])
    assert set(frame["number"]) >= {t.number for t in counted}
    assert (frame.set_index("number").loc[[t.number for t in counted], "state"] == "COMPLETE").all()
    # Each node has one CPU and two trials ran at once: both nodes trained trials.
    node_ids = {str(node).rsplit("/", 1)[-1] for node in frame["node"]}
    assert len(node_ids) == 2, frame[["number", "node"]]
    assert node_ids == {node_id[:8] for node_id in ray_cluster.node_ids}

    with serve_dashboard(postgres_url, port=free_port(), timeout=90) as server:  # type: ignore[union-attr]
        summaries = get_json(f"{server.url}/api/studies")["study_summaries"]
        (summary,) = [s for s in summaries if s["study_name"] == "multinode"]
        detail = get_json(f"{server.url}/api/studies/{summary['study_id']}")
        assert len(detail["trials"]) == 4
        assert {t["state"] for t in detail["trials"]} == {"Complete"}
        for trial in detail["trials"]:
            steps = [v["step"] for v in trial["intermediate_values"]]
            assert steps == list(range(1, EPOCHS + 1))
    assert not server.running()


def test_two_drivers_share_one_study_on_the_cluster(
    ray_cluster: Cluster, postgres_url: str, tmp_path: Path
) -> None:
    runs = []
    for index in (1, 2):
        directory = tmp_path / f"driver{index}"
        directory.mkdir()
        # Both drivers' checkpoints in one place, as on a cluster's shared storage.
        spec = _spec(directory, "shared", checkpoint_path=str(tmp_path / "runs"))
        runs.append((spec, postgres_url, directory / "driver.log"))
    with _drivers(ray_cluster, runs) as processes:
        _wait(processes, [log for _, _, log in runs], timeout=480)

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    counted = _counted(trials)
    assert len(counted) == 4, [(t.number, t.state.name, t.user_attrs) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    frame = _check_store(
        postgres_url, "shared", [t.number for t in counted if t.state.name == "COMPLETE"]
    )
    assert len(frame) == len(trials)
