"""A GPU cluster's first day: trials that need a node the cluster does not have yet.

A real Ray cluster on this machine: `ray start --head` offering no GPU (as a KubeRay or `ray
up` head whose GPU workers scale up from zero). A study whose trials ask for `gpu: 1` (and
`base.device: cuda`) must

* wait, saying once what for, and give up with one line (exit 2) when
  `resources.wait_for_nodes_s` runs out;
* start as soon as a node with a GPU joins (`ray start --address ... --num-gpus 1`: a logical
  GPU; scheduling is real, CUDA is not), place the trial on that node, and, CUDA being absent
  here, record it as FAIL with torch's "no CUDA GPU" reason.

The driver is given its PostgreSQL URL with a password in `--storage` (trust authentication
accepts any): the password must appear nowhere Ray records (its job table, as `ray list jobs`
and the dashboard show it, the actors, the nodes) nor in any file under the cluster's temp dir
(its session logs) or the run's directory.

Every Ray process started here is killed at the end by the marker in its command line (this
module's Ray temp dir) plus its descendants (tests/support.py), never by `ray stop`.
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

from study import ray_session
from study.store import Store
from tests.reliability.test_postgres import _database_dump, _files_containing
from tests.support import (
    TINY_PTB_BASE,
    connect_pg_admin,
    create_database,
    driver_env,
    driver_ray_tmpdir,
    drop_database,
    free_port,
    pg_url,
    tiny_ptb_spec,
    write_spec,
)

CLI = [sys.executable, "-m", "study.cli"]
RAY = str(Path(sys.executable).parent / "ray")
PASSWORD = "L4teN0deS3cret"
NAME = "late-gpu"
WAITING = "waiting for a Ray node"

# What Ray's GCS holds about the cluster, read by a separate driver with the cluster's
# environment (token authentication): the job table (each driver's entrypoint, its address and
# pid: what `ray list jobs` and the dashboard show; the whole JobTableData records too), every
# actor with its node, the nodes. (The state API's HTTP side, `ray.util.state.list_jobs`, needs
# Ray's dashboard, whose packages this environment lacks; it reads the same job table.)
STATE = """
import json, sys
import ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False,
         logging_level="ERROR")
from ray._private import state, worker
jobs = state.state.job_table()
records = [str(info) for info in worker.global_worker.gcs_client.get_all_job_info().values()]
print(json.dumps({"jobs": jobs, "job_records": records, "actors": list(state.actors().values()),
                  "nodes": ray.nodes()}, default=str))
"""

NODES = """
import json, sys, time
import ray
ray.init(address=sys.argv[1], include_dashboard=False, log_to_driver=False,
         logging_level="ERROR")
deadline = time.monotonic() + 120
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(json.dumps([{"id": n["NodeID"], "gpu": n["Resources"].get("GPU", 0)} for n in alive]))
"""


# ------------------------------------------------------------------ the wait, without Ray
def _node(cpu: float, gpu: float = 0.0, node_id: str = "ab" * 28) -> dict[str, Any]:
    return {"Alive": True, "NodeID": node_id, "Resources": {"CPU": cpu, "GPU": gpu}}


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> list[list[dict[str, Any]]]:
    """``ray.nodes()`` as a script: each read takes the next list (the last one repeats)."""
    script: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(ray_session, "NODE_POLL_S", 0.01)
    monkeypatch.setattr(ray_session, "_request_a_node", lambda bundle: None)
    monkeypatch.setattr(
        ray_session, "_alive_nodes", lambda: script.pop(0) if len(script) > 1 else script[0]
    )
    return script


def test_a_trial_waits_for_a_node_that_fits_and_says_so_once(
    fake_cluster: list[list[dict[str, Any]]],
) -> None:
    head = _node(4)
    fake_cluster.extend([[head], [head], [head], [head, _node(1, 1, "cd" * 28)]])
    lines: list[str] = []
    ray_session._wait_for_a_node(1, 1, wait_s=600, grows=True, say=lines.append)
    assert len(lines) == 2, lines
    waiting, started = lines
    assert waiting.startswith(WAITING), waiting
    for words in (
        "1 CPU and 1 GPU for one trial",
        "the largest Ray node has 0 GPUs",
        "1 node alive",
        "up to 10 min",
        "resources.wait_for_nodes_s",
        "Ctrl-C",
    ):
        assert words in waiting, (words, waiting)
    assert "cdcdcdcd fits a trial" in started, started


def test_the_wait_runs_out_with_one_line(fake_cluster: list[list[dict[str, Any]]]) -> None:
    fake_cluster.append([_node(4), _node(0.5, 1)])
    lines: list[str] = []
    with pytest.raises(ray_session.RaySessionError) as raised:
        ray_session._wait_for_a_node(1, 1, wait_s=0.05, grows=True, say=lines.append)
    message = str(raised.value)
    assert "\n" not in message and "no Ray node that fits a trial joined in 0.05 s" in message
    assert "no Ray node has both" in message and "resources.wait_for_nodes_s" in message
    assert len(lines) == 1


@pytest.mark.parametrize(("grows", "wait_s"), [(False, None), (True, 0.0)])
def test_refused_at_once_where_no_node_can_join_or_no_wait_is_wanted(
    fake_cluster: list[list[dict[str, Any]]], grows: bool, wait_s: float | None
) -> None:
    fake_cluster.append([_node(2)])
    lines: list[str] = []
    with pytest.raises(ray_session.RaySessionError) as raised:
        ray_session._wait_for_a_node(4, 0, wait_s=wait_s, grows=grows, say=lines.append)
    assert "resources.cpu is 4 per trial but the largest Ray node has 2 CPUs" in str(raised.value)
    assert ("cannot grow" in str(raised.value)) is not grows
    assert not lines


def test_a_node_that_fits_needs_both_resources_on_itself(
    fake_cluster: list[list[dict[str, Any]]],
) -> None:
    fake_cluster.append([_node(4), _node(0.5, 1)])
    with pytest.raises(ray_session.RaySessionError, match="no Ray node has both"):
        ray_session._wait_for_a_node(1, 1, wait_s=0, grows=True, say=lambda line: None)
    fake_cluster[:] = [[_node(4), _node(1, 1)]]
    ray_session._wait_for_a_node(1, 1, wait_s=0, grows=True, say=pytest.fail)


# ------------------------------------------------------------------ a real cluster
@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    temp_dir: str
    log: Path


def _ray_start(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(
            [RAY, "start", *args], env=env, stdout=out, stderr=subprocess.STDOUT, timeout=180
        )
    if result.returncode != 0:
        pytest.fail(f"ray start {args[0]} failed:\n{log.read_text()[-3000:]}", pytrace=False)


def _nodes(cluster: Cluster, count: int) -> list[dict[str, Any]]:
    waited = subprocess.run(
        [sys.executable, "-c", NODES, cluster.address, str(count)],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert waited.returncode == 0, waited.stderr[-3000:]
    return json.loads(waited.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def head() -> Iterator[Cluster]:
    """A head without a GPU (one CPU), token auth on."""
    with driver_ray_tmpdir("zs-late-") as temp_dir:
        env = driver_env(temp_dir, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
        port = free_port()
        log = Path(temp_dir) / "ray-start.log"
        _ray_start(
            [
                "--head",
                f"--port={port}",
                "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}",
                "--num-cpus=1",
                "--num-gpus=0",
                f"--temp-dir={temp_dir}",
                "--disable-usage-stats",
            ],
            env,
            log,
        )
        cluster = Cluster(f"127.0.0.1:{port}", env, temp_dir, log)
        assert [node["gpu"] for node in _nodes(cluster, 1)] == [0]
        yield cluster


def _spec(directory: Path, **resources: Any) -> Path:
    data = tiny_ptb_spec(
        NAME,
        directory,
        base={**TINY_PTB_BASE, "epochs": 1, "device": "cuda"},
        resources={"cpu": 1, "gpu": 1, **resources},
        n_trials=1,
        max_concurrent_trials=1,
        failure={"max_retries": 0},
    )
    return write_spec(data, directory)


def _driver(cluster: Cluster, spec: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    command = [*CLI, "run", str(spec), "--ray-address", cluster.address, "--storage", url]
    with log.open("wb") as out:
        return subprocess.Popen(
            [*command, "--no-report"],
            cwd=spec.parent,
            env=cluster.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def _running(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def _wait_for_text(process: subprocess.Popen[bytes], log: Path, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = log.read_text(errors="replace")
        if text in output:
            return output
        if process.poll() is not None:
            pytest.fail(f"driver ended (exit {process.returncode}) before {text!r}:\n{output}")
        time.sleep(0.5)
    pytest.fail(f"no {text!r} after {seconds:.0f} s:\n{log.read_text(errors='replace')}")


@pytest.mark.slow
@pytest.mark.ray
def test_the_wait_runs_out_with_exit_2(head: Cluster, tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    log = tmp_path / "driver.log"
    spec = _spec(tmp_path, wait_for_nodes_s=3)
    with _running(_driver(head, spec, f"sqlite:///{database}", log)) as driver:
        driver.wait(timeout=240)
    output = log.read_text(errors="replace")
    assert driver.returncode == 2, output
    assert output.count(WAITING) == 1, output
    error = output.strip().splitlines()[-1]
    assert error.startswith("error: "), output
    assert "no Ray node that fits a trial joined in 3 s" in error, error
    assert "resources.gpu is 1 per trial but the largest Ray node has 0 GPUs" in error, error
    assert "Traceback" not in output, output
    assert not database.exists()  # refused before the store was opened


@dataclass
class LateRun:
    url: str
    directory: Path
    output: str
    returncode: int
    waited_s: float
    gpu_node: str
    state: dict[str, Any]


@pytest.fixture(scope="module")
def late_run(head: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LateRun]:
    """The study started on the GPU-less head; a GPU node started once the driver waits."""
    directory = tmp_path_factory.mktemp("late")
    admin = connect_pg_admin()
    database = f"zs_late_{secrets.token_hex(6)}"
    create_database(admin, database)
    try:
        url = pg_url(database, password=PASSWORD)
        log = directory / "driver.log"
        with _running(_driver(head, _spec(directory, wait_for_nodes_s=300), url, log)) as driver:
            _wait_for_text(driver, log, WAITING, 180)
            asked = time.monotonic()
            time.sleep(3)  # still waiting: nothing fits yet
            assert driver.poll() is None, log.read_text()
            assert "fits a trial" not in log.read_text()
            _ray_start(
                [
                    f"--address={head.address}",
                    f"--dashboard-agent-listen-port={free_port()}",
                    "--num-cpus=1",
                    "--num-gpus=1",
                    f"--temp-dir={head.temp_dir}",
                    "--disable-usage-stats",
                ],
                head.env,
                head.log,
            )
            gpu_nodes = [node["id"] for node in _nodes(head, 2) if node["gpu"] == 1]
            assert len(gpu_nodes) == 1
            try:
                driver.wait(timeout=300)
            except subprocess.TimeoutExpired:
                pytest.fail(f"driver still running:\n{log.read_text()[-3000:]}")
            waited_s = time.monotonic() - asked
        read = subprocess.run(
            [sys.executable, "-c", STATE, head.address],
            env=head.env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert read.returncode == 0, read.stderr[-3000:]
        yield LateRun(
            url=url,
            directory=directory,
            output=log.read_text(errors="replace"),
            returncode=driver.returncode,
            waited_s=waited_s,
            gpu_node=gpu_nodes[0],
            state=json.loads(read.stdout.strip().splitlines()[-1]),
        )
    finally:
        drop_database(admin, database)
        admin.dispose()


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.postgres
def test_the_study_waits_then_fails_its_trial_on_the_gpu_node(late_run: LateRun) -> None:
    output = late_run.output
    # The plan ran and no trial completed: exit 3 with the reasons (study/cli/_run.py).
    assert late_run.returncode == 3, output
    assert output.count(WAITING) == 1, output
    waiting = next(line for line in output.splitlines() if WAITING in line)
    for words in ("1 CPU and 1 GPU", "0 GPUs", "resources.wait_for_nodes_s", "Ctrl-C"):
        assert words in waiting, (words, waiting)
    assert f"Ray node {late_run.gpu_node[:8]} fits a trial" in output, output

    trials = optuna.load_study(study_name=NAME, storage=late_run.url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL], trials
    reason = str(trials[0].user_attrs.get("fail_reason"))
    assert "torch sees no CUDA GPU" in reason, reason
    with Store(late_run.url) as store:
        frame = store.trials_frame(NAME)
    assert list(frame["state"]) == ["FAIL"], frame
    assert "torch sees no CUDA GPU" in str(frame["error"].iloc[0])
    node = frame["node"].iloc[0]
    if node is not None and str(node) not in ("", "nan", "None"):
        assert str(node).rsplit("/", 1)[-1] == late_run.gpu_node[:8], node

    # Where Ray placed it: every trainable actor of the study ran on the GPU node.
    trainables = [
        actor
        for actor in late_run.state["actors"]
        if "ImplicitFunc" in str(actor.get("ActorClassName"))
    ]
    assert trainables, late_run.state["actors"]
    assert {actor["Address"]["NodeID"] for actor in trainables} == {late_run.gpu_node}, trainables


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.postgres
def test_the_storage_password_is_nowhere_ray_records(late_run: LateRun, head: Cluster) -> None:
    assert PASSWORD in late_run.url
    assert PASSWORD not in late_run.output, late_run.output
    assert "ZONEOUT_STUDY_STORAGE=" in late_run.output  # told how to pass it safely
    drivers = [
        job
        for job in late_run.state["jobs"]
        if "study.cli run" in job["Entrypoint"] and str(late_run.directory) in job["Entrypoint"]
    ]
    assert len(drivers) == 1, [job["Entrypoint"] for job in late_run.state["jobs"]]
    assert "--storage" in drivers[0]["Entrypoint"] and ":***@" in drivers[0]["Entrypoint"]
    assert drivers[0]["DriverPid"] > 0, drivers[0]
    assert any(":***@" in record for record in late_run.state["job_records"])
    leaks = [
        f"Ray state: {part}"
        for part, records in late_run.state.items()
        if PASSWORD in json.dumps(records, default=str)
    ]
    if PASSWORD in _database_dump(late_run.url):
        leaks.append("a table of the study database")
    counts = {}
    for label, root in (
        ("Ray temp dir (session logs)", Path(head.temp_dir)),
        ("run directory (Ray experiment dir, spec, driver log)", late_run.directory),
    ):
        counts[label], hits = _files_containing(root, PASSWORD.encode())
        leaks += hits
    assert all(counts.values()), counts
    assert any(Path(head.temp_dir).glob("session_*/logs/*")), "no Ray session logs searched"
    assert not leaks, leaks
