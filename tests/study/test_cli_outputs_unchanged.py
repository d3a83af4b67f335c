"""The CLI's outputs on the README's commands, byte for byte, against outputs recorded before the
CLI was split into modules (issue 23: a refactor with no behaviour change).

The commands run, as a user runs them (the installed console script, a subprocess), on copies
of two committed databases: the ladder's (the demo's ``quickstart`` study and its promotion) and
the mid-scale one (a study with interrupted, retired trials). The recorded outputs live in
``tests/study/cli_golden/``; the temporary directory is written there as ``<tmp>``.

Recording them again (``ZONEOUT_RECORD_CLI_GOLDEN=1``) is a deliberate change of what users
see; do it only with a commit that says so.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).with_name("cli_golden")
LADDER_DB = REPO / "docs/results/ptb-char/ladder/ladder.db"
MIDSCALE_DB = REPO / "docs/results/ptb-char/midscale/midscale.db"

# (command line, files it writes that are compared too)
COMMANDS: list[tuple[str, list[str]]] = [
    ("list", []),
    ("status", []),
    ("status quickstart", []),
    ("status quickstart-promoted --csv t.csv", ["t.csv", "t.epochs.csv", "t.runs.csv"]),
    (
        "export quickstart --top 3 --out best",
        [
            "best/quickstart-rank1-trial0.yaml",
            "best/quickstart-rank2-trial3.yaml",
            "best/quickstart-rank3-trial6.yaml",
        ],
    ),
    ("promote quickstart --top 3 --set epochs=20 --out big.yaml", ["big.yaml"]),
    ("status ptb-char-midscale-figure3 --storage sqlite:///<tmp>/mid.db", []),
    ("export nope --out x", []),
    ("status nope", []),
]


def _snapshot(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, even while a study writes to it (WAL)."""
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _run_all(tmp: Path) -> dict[str, str]:
    _snapshot(LADDER_DB, tmp / "demo.db")
    _snapshot(MIDSCALE_DB, tmp / "mid.db")
    env = dict(os.environ, COLUMNS="120", RAY_USAGE_STATS_ENABLED="0")
    env["ZONEOUT_STUDY_STORAGE"] = f"sqlite:///{tmp}/demo.db"
    env.pop("NO_COLOR", None)
    env.pop("FORCE_COLOR", None)
    script = Path(sys.executable).with_name("zoneout-study")
    transcript = []
    for line, _files in COMMANDS:
        args = [a.replace("<tmp>", str(tmp)) for a in line.split()]
        proc = subprocess.run(
            [str(script), *args],
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = proc.stdout + proc.stderr
        transcript.append(f"$ zoneout-study {line}\n{output}exit {proc.returncode}\n")
    outputs = {"transcript.txt": "".join(transcript)}
    for _line, files in COMMANDS:
        for name in files:
            outputs[name] = (tmp / name).read_text()
    return {name: text.replace(str(tmp), "<tmp>") for name, text in outputs.items()}


def test_readme_commands_print_and_write_what_they_did_before(tmp_path: Path) -> None:
    outputs = _run_all(tmp_path)
    if os.environ.get("ZONEOUT_RECORD_CLI_GOLDEN") == "1":
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for name, text in outputs.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_text(text)
        pytest.fail("recorded the CLI outputs afresh; rerun without ZONEOUT_RECORD_CLI_GOLDEN")
    recorded = sorted(p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file())
    assert recorded == sorted(outputs), "the commands write other files than were recorded"
    for name, text in outputs.items():
        assert text == (GOLDEN / name).read_text(), f"{name} differs from the recorded output"
