"""Bad input is refused (exit 2, one line, nothing written, no password), and the dashboard
listens on loopback only by default."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from dashboards import serve_dashboard
from study.cli import app
from tests.study.test_cli_errors import CASES, GOOD, make_store
from tests.support import free_port, one_line_error

PASSWORD = "s3cret-pw"
UNREACHABLE = f"postgresql+psycopg://zoneout:{PASSWORD}@127.0.0.1:1/studies"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_is_refused(tmp_path: Path, case: str, reliability_record: Any) -> None:
    data, expected = CASES[case]
    spec = tmp_path / "spec.yaml"
    spec.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    database = tmp_path / "store.db"
    result = CliRunner().invoke(app, ["run", str(spec), "--storage", f"sqlite:///{database}"])
    message = one_line_error(result)
    assert all(text in message for text in expected), message
    assert not database.exists()
    message = message.replace(str(spec), "spec.yaml").replace(str(tmp_path), "<tmp>")
    reliability_record(
        f"Bad spec: {case}",
        "`zoneout-study run` on the spec",
        f"exit {result.exit_code}, nothing written; {message[:160]}",
    )


@pytest.mark.ray
def test_unreachable_database_for_run(
    ray_local: None, tmp_path: Path, reliability_record: Any
) -> None:
    spec = tmp_path / "spec.yaml"
    runs = tmp_path / "runs"
    spec.write_text(yaml.safe_dump({**GOOD, "checkpoint_path": str(runs)}), encoding="utf-8")
    before = sorted(tmp_path.iterdir())
    result = CliRunner().invoke(app, ["run", str(spec), "--storage", UNREACHABLE])
    message = one_line_error(result)
    assert "127.0.0.1:1" in message and "***" in message
    assert PASSWORD not in result.output
    assert sorted(tmp_path.iterdir()) == before and not runs.exists()
    reliability_record(
        "Unreachable database (run)",
        "`zoneout-study run --storage postgresql+psycopg://zoneout:<pw>@127.0.0.1:1/studies`",
        f"exit {result.exit_code}, no password in the output, nothing written; {message[:200]}",
    )


def test_unreachable_database_for_status(tmp_path: Path, reliability_record: Any) -> None:
    result = CliRunner().invoke(app, ["status", "--storage", UNREACHABLE])
    message = one_line_error(result)
    assert PASSWORD not in result.output
    reliability_record(
        "Unreachable database (status)",
        "`zoneout-study status --storage <same URL>`",
        f"exit {result.exit_code}, no password in the output; {message[:120]}",
    )


def test_read_only_commands_never_create_a_database(
    tmp_path: Path, reliability_record: Any
) -> None:
    typo = tmp_path / "studeis.db"
    outputs = []
    for command in (["list"], ["status"], ["export", "known"], ["dashboard"]):
        result = CliRunner().invoke(app, [*command, "--storage", f"sqlite:///{typo}"])
        outputs.append(one_line_error(result))
    assert all("no such database" in output for output in outputs), outputs
    assert list(tmp_path.iterdir()) == []
    reliability_record(
        "Mistyped SQLite path (read-only commands)",
        "`list`, `status`, `export`, `dashboard` with `--storage sqlite:///<missing file>`",
        f"exit 2 each, no file created; {outputs[0].replace(str(tmp_path), '<tmp>')[:140]}",
    )


def test_missing_study_is_named_with_the_studies_there(
    tmp_path: Path, reliability_record: Any
) -> None:
    database = make_store(tmp_path)
    before = database.read_bytes()
    result = CliRunner().invoke(
        app, ["status", "nope", "--storage", f"sqlite:///{database}", "--csv", "x/t.csv"]
    )
    message = one_line_error(result)
    assert "no study named 'nope'" in message and "studies there: known" in message
    assert database.read_bytes() == before and not (tmp_path / "x").exists()
    reliability_record(
        "Unknown study",
        "`zoneout-study status nope --csv x/t.csv` on a database holding study 'known'",
        f"exit 2, no CSV or directory written; {message.replace(str(tmp_path), '<tmp>')[:140]}",
    )


def test_busy_dashboard_port(tmp_path: Path, reliability_record: Any) -> None:
    database = make_store(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(
            app, ["dashboard", "--storage", f"sqlite:///{database}", "--port", str(port)]
        )
    message = one_line_error(result)
    assert f"port {port}" in message and "--port" in message
    reliability_record(
        "Dashboard port in use",
        "`zoneout-study dashboard --port P` while another socket listens on 127.0.0.1:P",
        f"exit 2 before optuna-dashboard starts; {message.replace(str(port), 'P')}",
    )


def test_a_bug_is_not_dressed_as_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability_record: Any
) -> None:
    from study.store import Store

    database = make_store(tmp_path)

    def broken(self: Any) -> Any:
        raise KeyError("injected")

    monkeypatch.setattr(Store, "studies_frame", broken)
    result = CliRunner().invoke(app, ["list", "--storage", f"sqlite:///{database}"])
    assert result.exit_code == 1, result.output
    assert "Traceback (most recent call last)" in result.output
    assert "KeyError: 'injected'" in result.output
    reliability_record(
        "A bug, not bad input",
        "`Store.studies_frame` patched to raise KeyError; `zoneout-study list`",
        f"exit {result.exit_code} with the full traceback "
        f"({len(result.output.splitlines())} lines) ending in KeyError: 'injected'",
    )


def _non_loopback_addresses() -> list[str]:
    """This machine's IPv4 addresses other than loopback (by name, and the default route's)."""
    found = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(str(info[4][0]))
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP: picks a route, sends nothing
            found.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


def _listening(port: int) -> list[str]:
    """Local addresses of sockets listening on ``port`` (IPv4 and IPv6)."""
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if len(address) == 8:
                    octets = bytes.fromhex(address)[::-1]
                    addresses.append(".".join(str(b) for b in octets))
                else:
                    addresses.append(address)
    return addresses


@pytest.mark.slow
def test_dashboard_binds_loopback_by_default(tmp_path: Path, reliability_record: Any) -> None:
    port = free_port()
    url = f"sqlite:///{tmp_path / 'd.db'}"
    optuna.create_study(study_name="exposure", storage=url)
    with serve_dashboard(url, port=port, timeout=90) as server:  # type: ignore[union-attr]
        listening = _listening(port)
        refused = []
        for address in _non_loopback_addresses():
            with socket.socket() as probe:
                probe.settimeout(2)
                if probe.connect_ex((address, port)) != 0:
                    refused.append(address)
        assert server.host == "127.0.0.1"
    assert listening == ["127.0.0.1"], listening
    assert refused == _non_loopback_addresses()
    reliability_record(
        "Dashboard exposure",
        "`serve_dashboard(url, port=...)` with the default host (what `zoneout-study "
        "dashboard` uses unless --host is given)",
        f"listening only on {', '.join(listening)}:{port} (/proc/net/tcp); connections to "
        f"{', '.join(refused) or 'no other address (none configured)'} refused",
    )
