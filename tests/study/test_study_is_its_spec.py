"""A study is exactly what its spec says, end to end on a local Ray with real PTB characters:
TPE + ASHA + repeats completes configurations and prunes whole configurations; a rerun with
another spec under the same name is refused (or recorded, for plan settings with
--accept-change); SIGTERM and SIGHUP stop a driver like Ctrl-C, in a pty and under a pipe, and
the next run holds every grid point exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from optuna.trial import TrialState

from study import keys
from study import optuna_study as ostudy
from study.export import ExportError, export_best
from study.identity import SpecSnapshot, differences, snapshot_of
from study.plan import StudyPlan
from study.runner import StudyRunError, run_study
from study.spec import validate_spec
from study.store import Store
from tests.reliability.conftest import record_external
from tests.support import TINY_PTB_BASE, driver_env, kill_process_tree, tiny_ptb_spec, write_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]

CLI = [sys.executable, "-m", "study.cli"]


def test_tpe_asha_and_repeats_complete_and_prune_configurations(
    store_url: str, ray_local: None, tmp_path: Path
) -> None:
    """The issue's study: PTB-char (20k characters, hidden 16, 4 epochs), TPE + ASHA (grace 1,
    reduction 2), repeats 2, 3 trials ended '0 complete, 3 pruned', every seed 1 stopped at
    epoch 1 against its own seed 0."""
    spec = validate_spec(
        tiny_ptb_spec(
            "tpe-asha-repeats",
            tmp_path,
            base={**TINY_PTB_BASE, "train_tokens": 20_000, "epochs": 4},
            sampler={"name": "tpe", "seed": 0},
            scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
            n_trials=3,
            repeats=2,
        )
    )
    outcome = run_study(spec, storage=store_url)
    assert outcome.status == "finished"
    trials = ostudy.trials(ostudy.load_study(store_url, spec.name))
    assert len(trials) == 3
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(complete) + len(pruned) == 3
    # The first configuration to reach a rung has nothing to be compared with there, so some
    # configuration completes (which one depends on the order two concurrent trials reach
    # their rungs: timing, not the spec).
    assert complete
    with Store(store_url) as store:
        runs = store.runs_frame(spec.name)
    seed_epochs = {
        n: list(group.sort_values("seed")["epochs"]) for n, group in runs.groupby("number")
    }
    for trial in complete:
        assert seed_epochs[trial.number] == [4, 4]
    for trial in pruned:
        rung = trial.user_attrs[keys.PRUNED_AT]
        assert rung in (1, 2)
        # Both seeds reached the rung the configuration was judged at.
        assert min(seed_epochs[trial.number]) >= rung
        assert rung in trial.intermediate_values  # the seed mean it was judged on
    record_external(
        f"tests/study/test_study_is_its_spec.py::"
        f"test_tpe_asha_and_repeats_complete_and_prune_configurations[{_backend(store_url)}]",
        f"TPE + ASHA + repeats, a real study ({_backend(store_url)})",
        "PTB-char (20k characters, hidden 16, 4 epochs), TPE + ASHA (grace 1, reduction 2), "
        "repeats 2, 3 trials (before: 0 complete, 3 pruned, every seed 1 stopped against its "
        "own seed 0)",
        f"{len(complete)} complete (both seeds 4 epochs), {len(pruned)} pruned as whole "
        f"configurations (rungs {[t.user_attrs[keys.PRUNED_AT] for t in pruned]}, seeds' "
        f"epochs {[seed_epochs[t.number] for t in pruned]})",
    )


def _tiny_digits(name: str, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "base": {"task": "digits", "hidden_size": 8, "epochs": 1, "batch_size": 64, "seed": 0},
        "search": {"zoneout_cell": {"type": "categorical", "choices": [0.0, 0.2]}},
        "sampler": {"name": "grid"},
        "scheduler": {"name": "none"},
        "n_trials": 2,
        "checkpoint_path": str(tmp_path / "runs"),
    }
    data.update(overrides)
    return data


def test_a_rerun_with_another_spec_is_refused_or_recorded(
    store_url: str, ray_local: None, tmp_path: Path
) -> None:
    first = validate_spec(_tiny_digits("tiny", tmp_path))
    assert run_study(first, storage=store_url).status == "finished"

    # The merge: the same name, PTB-char, searching zoneout_hidden.
    other = validate_spec(
        tiny_ptb_spec(
            "tiny",
            tmp_path,
            search={"zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.3}},
        )
    )
    with pytest.raises(StudyRunError) as refused:
        run_study(other, storage=store_url)
    message = str(refused.value)
    for field in ("base.task", "search", "metric"):
        assert field in message
    assert "new name" in message

    # More trials is a plan setting: refused without the flag, recorded with it.
    more = validate_spec(
        _tiny_digits(
            "tiny",
            tmp_path,
            search={"zoneout_cell": {"type": "categorical", "choices": [0.0, 0.2]}},
            n_trials=3,
        )
    )
    with pytest.raises(StudyRunError, match="--accept-change"):
        run_study(more, storage=store_url)
    run_study(more, storage=store_url, accept_changes=True)
    study = ostudy.load_study(store_url, "tiny")
    (change,) = ostudy.study_attrs(study)[keys.SPEC_CHANGES]
    assert change["changes"] == [{"field": "n_trials", "stored": 2, "given": 3}]
    # The command line's --n-trials caps one run and changes nothing.
    run_study(more, storage=store_url, n_trials=1)
    assert len(ostudy.study_attrs(study)[keys.SPEC_CHANGES]) == 1
    # Nothing of the refused runs entered the study.
    assert {t.params["zoneout_cell"] for t in ostudy.trials(study)} == {0.0, 0.2}
    record_external(
        f"tests/study/test_study_is_its_spec.py::"
        f"test_a_rerun_with_another_spec_is_refused_or_recorded[{_backend(store_url)}]",
        f"A rerun under the same name with another spec ({_backend(store_url)})",
        "study 'tiny' (digits, grid over zoneout_cell) rerun as PTB-char searching "
        "zoneout_hidden; then with n_trials 2 -> 3, without and with --accept-change; then "
        "--n-trials 1",
        "the other spec refused before any trial, naming base.task, search and metric; the "
        "n_trials change refused without the flag and recorded with it (spec_changes); "
        "--n-trials recorded nothing; no trial of a refused run in the study",
    )


def test_export_refuses_a_trial_its_spec_did_not_make(
    store_url: str, ray_local: None, tmp_path: Path
) -> None:
    """A database from before reruns were refused: the study row's spec says PTB-char, the
    trial ran digits. The export would not retrain it."""
    spec = validate_spec(_tiny_digits("merged", tmp_path))
    run_study(spec, storage=store_url)
    with Store(store_url) as store:
        stored = store.study_spec("merged")
        stored["base"] = {**stored["base"], "task": "ptb-char"}
        store.register_study("merged", spec=stored, versions={}, direction="minimize", metric="bpc")
        with pytest.raises(ExportError, match=r"trial \d ran task 'digits' \(spec: 'ptb-char'\)"):
            export_best(store, "merged", out_dir=tmp_path / "export")
    assert not (tmp_path / "export").exists() or not list((tmp_path / "export").iterdir())
    record_external(
        f"tests/study/test_study_is_its_spec.py::"
        f"test_export_refuses_a_trial_its_spec_did_not_make[{_backend(store_url)}]",
        f"Export of a trial its spec did not make ({_backend(store_url)})",
        "a study whose stored spec says PTB-char while its trials ran digits (a database from "
        "before reruns were refused); `export`",
        "ExportError naming the trial and the field (task 'digits', spec 'ptb-char'); no file "
        "written",
    )


def _backend(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "sqlite"


# ------------------------------------------------------------------ signals
BASE = {**TINY_PTB_BASE, "train_tokens": 40_000, "max_batches_per_epoch": 30, "epochs": 3}


def _grid_spec(tmp_path: Path) -> Path:
    data = tiny_ptb_spec(
        "signals",
        tmp_path,
        base=BASE,
        search={"zoneout_cell": {"type": "categorical", "choices": [0.0, 0.25, 0.5]}},
        sampler={"name": "grid"},
        n_trials=3,
        max_concurrent_trials=2,
    )
    return write_spec(data, tmp_path)


def _epochs_stored(url: str) -> int:
    try:
        with Store(url) as store:
            return len(store.epochs_frame("signals"))
    except Exception:
        return 0


def _run_until_an_epoch(
    command: list[str], env: dict[str, str], cwd: Path, url: str, terminal: bool
):  # type: ignore[no-untyped-def]
    if terminal:
        controller, device = pty.openpty()
        driver = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=device,
            stdout=device,
            stderr=device,
            start_new_session=True,
        )
        os.close(device)
    else:
        controller = None
        driver = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 240
    output = bytearray()
    while _epochs_stored(url) < 1:
        assert driver.poll() is None, "the driver ended before its first epoch"
        assert time.monotonic() < deadline
        if controller is not None and select.select([controller], [], [], 0.2)[0]:
            with contextlib.suppress(OSError):
                output += os.read(controller, 65536)
        time.sleep(0.2)
    return driver, controller, output


@pytest.mark.parametrize(
    ("how", "terminal", "expected"),
    [
        pytest.param(signal.SIGTERM, False, 143, id="sigterm-pipe"),
        pytest.param(signal.SIGTERM, True, 143, id="sigterm-pty"),
        pytest.param(signal.SIGHUP, True, 129, id="sighup-pty"),
    ],
)
def test_sigterm_and_sighup_stop_like_ctrl_c(
    how: signal.Signals, terminal: bool, expected: int, tmp_path: Path, own_ray_tmpdir: str
) -> None:
    url = f"sqlite:///{tmp_path / 'signals.db'}"
    spec_path = _grid_spec(tmp_path)
    env = driver_env(own_ray_tmpdir, ZONEOUT_STUDY_STORAGE=url)
    command = [*CLI, "run", str(spec_path), "--no-report"]
    started = time.monotonic()
    driver, controller, output = _run_until_an_epoch(command, env, tmp_path, url, terminal)
    # What docker stop and Kubernetes do: the signal to the driver's process alone.
    os.kill(driver.pid, how)
    try:
        if controller is not None:
            while driver.poll() is None:
                if select.select([controller], [], [], 0.5)[0]:
                    try:
                        chunk = os.read(controller, 65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    output += chunk
            code = driver.wait(timeout=120)
            os.close(controller)
        else:
            out, _ = driver.communicate(timeout=120)
            output += out
            code = driver.returncode
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        kill_process_tree(own_ray_tmpdir)
    text = output.decode(errors="replace")
    assert code == expected, text[-3000:]
    assert "interrupted; resume with: zoneout-study run" in text, text[-3000:]
    assert "PC: @" not in text and "SIGTERM received" not in text and "Traceback" not in text
    with Store(url) as store:
        status = store.studies_frame().set_index("name").loc["signals", "status"]
    assert status == "interrupted"
    study = ostudy.load_study(url, "signals")
    cut = [t.number for t in ostudy.trials(study) if ostudy.is_retired(t)]
    assert cut, "the open trials are retired to be continued"

    resumed = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    kill_process_tree(own_ray_tmpdir)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    trials = ostudy.trials(study)
    held = [t for t in trials if not ostudy.is_retired(t)]
    assert sorted(t.params["zoneout_cell"] for t in held) == [0.0, 0.25, 0.5]
    assert all(t.state == TrialState.COMPLETE for t in held)
    plan = StudyPlan.from_spec(validate_spec(yaml.safe_load(spec_path.read_text())), sampler="grid")
    assert len({plan.key(t.params) for t in held}) == 3
    case = f"{how.name.lower()}-{'pty' if terminal else 'pipe'}"
    record_external(
        f"{__name__.replace('.', '/')}.py::test_sigterm_and_sighup_stop_like_ctrl_c[{case}]",
        f"{how.name} to the driver ({'in a pty' if terminal else 'under a pipe'})",
        f"`kill -{how.name.removeprefix('SIG')} <driver pid>` after the first epoch was stored, "
        "3-point grid, 2 trials at a time",
        f"exit {code}; the resume line printed, no Ray stack dump, no traceback; study "
        f"'interrupted' in `list`; trials {cut} retired; the rerun exit 0 with the 3 grid points "
        f"COMPLETE once each ({time.monotonic() - started:.0f} s in all)",
    )


# Each kind of change a rerun can make, and what happens to it (study.identity).
IDENTITY_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("base.hidden_size", {"base": {"hidden_size": 16}}),
    (
        "base.task",
        {
            "base": {
                "task": "ptb-char",
                **{k: TINY_PTB_BASE[k] for k in ("train_tokens", "valid_tokens")},
            }
        },
    ),
    ("search", {"search": {"zoneout_cell": {"type": "categorical", "choices": [0.0, 0.3]}}}),
    ("points", {"points": [{"zoneout_cell": 0.2}]}),
    ("sampler", {"sampler": {"name": "random"}}),
    ("repeats", {"repeats": 2}),
]
SETTING_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("n_trials", {"n_trials": 3}),
    ("scheduler", {"scheduler": {"name": "asha"}}),
    ("sampler_seed", {"sampler": {"name": "grid", "seed": 7}}),
    ("failure", {"failure": {"max_retries": 0}}),
]
FREE_CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("description", {"description": "moved to the cluster"}),
    ("resources", {"resources": {"cpu": 0.5}}),
    ("max_concurrent_trials", {"max_concurrent_trials": 1}),
    ("base.threads", {"base": {"threads": 1}}),
]


def _changed(tmp_path: Path, change: dict[str, Any]) -> Any:
    data = _tiny_digits("kinds", tmp_path)
    for key, value in change.items():
        data[key] = {**data[key], **value} if key == "base" else value
    return validate_spec(data)


def test_every_kind_of_spec_change_is_refused_recorded_or_free(
    ray_local: None, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'kinds.db'}"
    run_study(validate_spec(_tiny_digits("kinds", tmp_path)), storage=url)
    study = ostudy.load_study(url, "kinds")
    before = len(ostudy.trials(study))
    for field, change in IDENTITY_CHANGES:
        with pytest.raises(StudyRunError, match="new name") as refused:
            run_study(_changed(tmp_path, change), storage=url, accept_changes=True)
        assert field.split(".")[0] in str(refused.value), (field, str(refused.value))
    for field, change in SETTING_CHANGES:
        with pytest.raises(StudyRunError, match="--accept-change") as refused:
            run_study(_changed(tmp_path, change), storage=url)
        assert field.split("_")[0] in str(refused.value)
    for _field, change in FREE_CHANGES:
        run_study(_changed(tmp_path, change), storage=url)
    assert ostudy.study_attrs(study).get(keys.SPEC_CHANGES) is None  # nothing recorded yet
    accepted = _changed(tmp_path, SETTING_CHANGES[0][1])
    run_study(accepted, storage=url, accept_changes=True)
    (record,) = ostudy.study_attrs(study)[keys.SPEC_CHANGES]
    assert [c["field"] for c in record["changes"]] == ["n_trials"]
    # A grid of 2 points holds 2 configurations whatever n_trials says: nothing more ran.
    assert len(ostudy.trials(study)) == before
    record_external(
        "tests/study/test_study_is_its_spec.py::"
        "test_every_kind_of_spec_change_is_refused_recorded_or_free",
        "Every kind of spec change on a rerun",
        f"a stored study rerun with one change each: {len(IDENTITY_CHANGES)} of its identity "
        f"({', '.join(f for f, _ in IDENTITY_CHANGES)}), {len(SETTING_CHANGES)} plan settings "
        f"({', '.join(f for f, _ in SETTING_CHANGES)}), {len(FREE_CHANGES)} of where or how it "
        f"runs ({', '.join(f for f, _ in FREE_CHANGES)})",
        "identity changes refused even with --accept-change, naming the field; plan settings "
        "refused without the flag, recorded in spec_changes with it; run settings accepted "
        "silently; no refused run added a trial",
    )


def test_sigterm_while_ray_starts_stops_cleanly(tmp_path: Path, own_ray_tmpdir: str) -> None:
    """docker stop right after `docker compose up`: SIGTERM while ray.init runs. Before, the
    driver exited 15 without a word, or Ray's native handler dumped a stack and aborted."""
    spec_path = _grid_spec(tmp_path)
    command = [*CLI, "run", str(spec_path), "--no-report"]
    seen = []
    for index, delay in enumerate((0.3, 1.0, 2.0, 3.5)):
        url = f"sqlite:///{tmp_path / f'early-{delay}.db'}"
        ray_tmpdir = Path(own_ray_tmpdir) / str(index)  # a fresh one: its session is this run's
        ray_tmpdir.mkdir()
        env = driver_env(str(ray_tmpdir), ZONEOUT_STUDY_STORAGE=url)
        driver = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        # Ray has begun to start once its session directory appears under RAY_TMPDIR.
        while not any(ray_tmpdir.rglob("session_*")):
            assert driver.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(delay)
        driver.send_signal(signal.SIGTERM)
        out, _ = driver.communicate(timeout=120)
        kill_process_tree(own_ray_tmpdir)
        text = out.decode(errors="replace")
        assert driver.returncode == 143, text[-3000:]
        assert "PC: @" not in text and "SIGTERM received" not in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        opened = "was opened; nothing was run" not in text
        if opened:
            assert "interrupted; resume with: zoneout-study run" in text, text[-3000:]
        seen.append(f"{delay} s: {'after' if opened else 'before'} the study was opened")
    record_external(
        "tests/study/test_study_is_its_spec.py::test_sigterm_while_ray_starts_stops_cleanly",
        "SIGTERM while Ray starts",
        "`kill -TERM <driver pid>` 0.3, 1, 2 and 3.5 s after Ray's session directory appeared",
        f"exit 143 each time, no Ray stack dump, no traceback ({'; '.join(seen)}); a driver "
        "stopped before the study was opened says nothing was run or written",
    )


def test_a_snapshot_from_before_a_base_field_existed_is_no_change(tmp_path: Path) -> None:
    """A study stored by an older program (its snapshot lacks base fields added since, such as
    ``implementation`` and ``matmul_precision``) reruns under the new program as the same study:
    each missing field reads as its default, which is what the older program computed with."""
    spec = validate_spec(_tiny_digits("older", tmp_path))
    given = snapshot_of(spec.model_dump(mode="json"))
    older = given.to_json()
    older["identity"] = {**older["identity"], "base": dict(older["identity"]["base"])}
    for added in ("implementation", "matmul_precision"):
        assert added in older["identity"]["base"]
        del older["identity"]["base"][added]
    stored = SpecSnapshot.from_json(json.loads(json.dumps(older)))
    assert differences(stored.identity, given.identity) == []
    # A field that was stored with another value is still a change.
    older["identity"]["base"]["learning_rate"] = 123.0
    changed = differences(SpecSnapshot.from_json(older).identity, given.identity)
    assert [c.field for c in changed] == ["base.learning_rate"]
