"""What a GPU cluster's first day needs of the trials side (issue 21), checked on CPU.

- one float32 matmul precision per trial, for every layer path alike (`matmul_precision`);
- the Triton CUDA-graph cache bounded, least recently used first out, cleared per trial;
- checkpoints keep the trial's own device's RNG state only, and old ones still load;
- ZoneoutLSTM.flatten_parameters does nn.LSTM's job for cuDNN and nothing on CPU;
- a JIT-build lock left by a killed compile is waited on for a bounded time only.

No GPU here: the CUDA branches run with torch.cuda's calls monkeypatched, the graph cache with
stand-in entries, the extension build with a stand-in for torch's compile.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import sys
import time
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn

import trials.trainable as trainable
import trials.zoneout._triton_lstm as triton_package
from trials.config import TrialConfig
from trials.reproducibility import (
    CUDA_RNG_KEY,
    LEGACY_CUDA_RNG_KEY,
    matmul_precision,
    rng_state,
    set_rng_state,
)
from trials.train import CHECKPOINT_FILE, TrainResult, train
from trials.zoneout import ZoneoutLSTM, _cpu_ext, clear_caches
from trials.zoneout._triton_lstm import cache

CPU = torch.device("cpu")
CUDA = torch.device("cuda")


def _flags() -> tuple[bool, bool, str]:
    return (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.get_float32_matmul_precision(),
    )


@pytest.fixture(autouse=True)
def _restore_global_state() -> Iterator[None]:
    threads = torch.get_num_threads()
    flags = _flags()
    yield
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(flags[2])
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags[:2]


def digits_config(**changes: Any) -> TrialConfig:
    base: dict[str, Any] = {
        "task": "digits",
        "hidden_size": 8,
        "batch_size": 32,
        "eval_batch_size": 256,
        "max_batches_per_epoch": 3,
        "epochs": 1,
        "threads": 1,
    }
    return TrialConfig(**{**base, **changes})


# ----------------------------------------------------------------- 1. matmul precision


def test_the_default_is_full_float32_and_the_field_round_trips() -> None:
    config = digits_config()
    assert config.matmul_precision == "highest"
    assert TrialConfig.model_validate(config.to_dict()).matmul_precision == "highest"
    assert digits_config(matmul_precision="high").to_dict()["matmul_precision"] == "high"
    with pytest.raises(ValueError):
        digits_config(matmul_precision="medium")


@pytest.mark.parametrize(
    ("precision", "during"),
    [("highest", (False, False, "highest")), ("high", (True, True, "high"))],
)
def test_train_sets_the_flags_from_the_field_and_restores_them(
    precision: str, during: tuple[bool, bool, str]
) -> None:
    # Start from the opposite of what the field asks, and from torch's mixed default (cuDNN
    # TF32 on, cuBLAS off) for "highest": the trial must override both.
    if precision == "highest":
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    before = _flags()
    seen: list[tuple[bool, bool, str]] = []
    train(
        digits_config(matmul_precision=precision),
        report=lambda *_: seen.append(_flags()),
        evaluate_test=False,
    )
    assert seen == [during]
    assert _flags() == before


def test_the_precision_context_restores_after_an_error() -> None:
    before = _flags()
    with pytest.raises(RuntimeError, match="boom"), matmul_precision("high"):
        assert _flags() == (True, True, "high")
        raise RuntimeError("boom")
    assert _flags() == before
    with pytest.raises(ValueError, match="highest"), matmul_precision("medium"):  # type: ignore[arg-type]
        pass


# ----------------------------------------------------------------- 2. CUDA-graph cache


def test_lru_lookup_and_insert_evict_the_least_recently_used() -> None:
    entries: dict[str, str] = {}
    evicted: list[str] = []
    for key in "abc":
        assert cache.insert(entries, key, key.upper(), limit=3, on_evict=evicted.append) == 0
    assert cache.lookup(entries, "a") == "A"  # a is now the most recently used
    assert cache.lookup(entries, "zz") is None
    assert cache.insert(entries, "d", "D", limit=3, on_evict=evicted.append) == 1
    assert evicted == ["B"] and list(entries) == ["c", "a", "d"]
    assert cache.insert(entries, "e", "E", limit=2, on_evict=evicted.append) == 2
    assert evicted == ["B", "C", "A"] and list(entries) == ["d", "e"]


def test_graph_book_captures_at_the_second_sighting_and_stays_bounded() -> None:
    book = cache.GraphBook(capture_at=2, max_evictions=3)
    entries: dict[int, str] = {}
    built: list[int] = []

    def get(key: int) -> str | None:
        return book.get(entries, key, lambda: built.append(key) or f"graph {key}", limit=2)

    assert get(1) is None and get(1) == "graph 1" and get(1) == "graph 1"
    assert built == [1]  # the hit builds nothing
    for key in (2, 3, 4):
        get(key), get(key)
    assert list(entries) == [3, 4] and book.evictions == 2  # 1 then 2 went, oldest first
    get(1)  # seen twice before: captured again at once, evicting 3
    assert list(entries) == [4, 1] and book.evictions == 3
    # The eviction budget is spent: no new capture, the held graphs still replay.
    assert get(5) is None and get(5) is None and get(5) is None
    assert list(entries) == [4, 1] and get(4) == "graph 4"
    book.clear()
    assert book.evictions == 0 and not book.sightings and get(5) is None and get(5) == "graph 5"


def test_graph_book_remembers_failures_and_a_bounded_number_of_keys() -> None:
    book = cache.GraphBook(capture_at=1, max_evictions=10)

    def refuse() -> str:
        raise RuntimeError("capture refused")

    with pytest.raises(RuntimeError, match="refused"):
        book.get({}, "bad", refuse, limit=4)
    assert "bad" in book.failed and book.get({}, "bad", lambda: "never", limit=4) is None
    for key in range(cache.MAX_TRACKED_KEYS + 50):
        book.should_capture(("k", key))
    assert len(book.sightings) == cache.MAX_TRACKED_KEYS
    assert ("k", 0) not in book.sightings  # the least recently seen were forgotten


@pytest.fixture
def graphs(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The real graphs module (it imports triton) with empty caches of its own."""
    if importlib.util.find_spec("triton") is None:
        if os.environ.get("CI"):
            pytest.fail("triton is missing, and CI must provide it (the `test` extra)")
        pytest.skip("triton is not installed")
    from trials.zoneout._triton_lstm import graphs as module

    monkeypatch.setattr(module, "_forward_graphs", {})
    monkeypatch.setattr(module, "_backward_graphs", {})
    book = cache.GraphBook(module.CAPTURE_AT_SIGHTING, module.MAX_EVICTIONS)
    monkeypatch.setattr(module, "_book", book)
    monkeypatch.setattr(module, "_failed", book.failed)
    return module


def test_graphs_hold_at_most_max_graphs_per_direction(graphs: types.ModuleType) -> None:
    for key in range(graphs.MAX_GRAPHS + 3):
        for _ in range(graphs.CAPTURE_AT_SIGHTING):
            graphs._get(graphs._forward_graphs, ("fwd", key), lambda key=key: f"graph {key}")
    assert len(graphs._forward_graphs) == graphs.MAX_GRAPHS
    assert list(graphs._forward_graphs) == [("fwd", k) for k in range(3, graphs.MAX_GRAPHS + 3)]
    with pytest.warns(RuntimeWarning, match="capture failed"):
        for _ in range(graphs.CAPTURE_AT_SIGHTING):
            graphs._get(graphs._backward_graphs, "bad", _refused)
    assert graphs._failed and not graphs._backward_graphs
    clear_caches()  # the public entry point reaches the imported module
    assert not graphs._forward_graphs and not graphs._failed and graphs._book.evictions == 0


def _refused() -> object:
    raise RuntimeError("not permitted when stream is capturing")


def test_clear_caches_imports_nothing_new(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"{triton_package.__name__}.graphs"
    monkeypatch.delitem(sys.modules, name, raising=False)
    clear_caches()
    assert name not in sys.modules  # no triton import on a CPU worker


def test_a_trial_start_clears_the_previous_trials_graphs(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray import tune

    held = {"fwd": "a graph of the previous trial's rates"}
    fake = types.ModuleType("graphs")
    fake.clear = held.clear  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, f"{triton_package.__name__}.graphs", fake)
    reports: list[dict[str, Any]] = []
    at_start: list[dict[str, str]] = []

    def fake_train(config: TrialConfig, report: Any, **_: Any) -> TrainResult:
        at_start.append(dict(held))
        report(_epoch(), None)
        return TrainResult(status="completed", metric="error")

    monkeypatch.setattr(trainable, "train", fake_train)
    monkeypatch.setattr(trainable, "_node_name", lambda: "test-node")
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    config = digits_config(matmul_precision="high")
    trainable.run_trial({trainable.TRIAL_CONFIG_KEY: config.to_dict()})
    assert at_start == [{}]
    assert reports[0][trainable.MATMUL_PRECISION_KEY] == "high"
    assert set(trainable.report_keys()) <= set(reports[0])


def _epoch() -> Any:
    from trials.train import EpochResult

    return EpochResult(1, 1.0, 1.0, 0.5, "error", 0.5, 0.01, 1.0, 1.0)


# ----------------------------------------------------------------- 3. RNG state


def test_a_cpu_trials_checkpoint_holds_no_cuda_state(tmp_path: Path) -> None:
    train(digits_config(), checkpoint_dir=tmp_path, evaluate_test=False)
    saved = torch.load(tmp_path / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    assert set(saved["rng"]) == {"python", "numpy", "torch"}


def test_an_old_checkpoint_with_every_gpus_state_resumes_on_cpu(tmp_path: Path) -> None:
    # Written by the old format on a machine with two GPUs: "cuda" is a list of their states.
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    whole = train(digits_config(epochs=2), checkpoint_dir=fresh, evaluate_test=False)
    train(digits_config(epochs=1), checkpoint_dir=resumed, evaluate_test=False)
    path = resumed / CHECKPOINT_FILE
    saved = torch.load(path, map_location="cpu", weights_only=False)
    saved["rng"][LEGACY_CUDA_RNG_KEY] = [torch.zeros(16, dtype=torch.uint8)] * 2
    torch.save(saved, path)
    continued = train(digits_config(epochs=2), checkpoint_dir=resumed, evaluate_test=False)
    assert [e.valid_metric for e in continued.epochs] == [e.valid_metric for e in whole.epochs]


def test_the_cuda_state_is_the_trials_own_device(monkeypatch: pytest.MonkeyPatch) -> None:
    got: list[tuple[str, object]] = []

    def get_state(device: object) -> torch.Tensor:
        got.append(("get", device))
        return torch.full((4,), 7, dtype=torch.uint8)

    def set_state(state: torch.Tensor, device: object) -> None:
        got.append(("set", (int(state[0]), device)))

    monkeypatch.setattr(torch.cuda, "get_rng_state", get_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", _never)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", _never)

    assert set(rng_state(CPU)) == {"python", "numpy", "torch"} and not got
    state = rng_state(CUDA)  # "cuda" means the current device: 1
    assert got == [("get", 1)] and int(state[CUDA_RNG_KEY][0]) == 7
    assert LEGACY_CUDA_RNG_KEY not in state

    got.clear()
    set_rng_state(state, CPU)  # a CPU trial ignores CUDA states
    set_rng_state(state, torch.device("cuda", 0))
    legacy = {**rng_state(CPU), LEGACY_CUDA_RNG_KEY: [torch.full((4,), k) for k in (10, 11, 12)]}
    set_rng_state(legacy, CUDA)  # the entry of device 1; the others ignored
    set_rng_state(legacy, torch.device("cuda", 5))  # no entry for it: left as seeded
    set_rng_state(legacy, CPU)
    assert got == [("set", (7, 0)), ("set", (11, 1))]


def _never(*_: object) -> None:
    raise AssertionError("touched every GPU's RNG")


# ----------------------------------------------------------------- 4. flatten_parameters


def test_flatten_parameters_is_harmless_on_cpu() -> None:
    torch.manual_seed(0)
    layer = ZoneoutLSTM(3, 5, num_layers=2)
    reference = nn.LSTM(3, 5, num_layers=2)
    reference.load_state_dict(layer.state_dict())
    pointers = [p.data_ptr() for p in layer.parameters()]
    layer.flatten_parameters()
    assert [p.data_ptr() for p in layer.parameters()] == pointers
    x = torch.randn(4, 2, 3)
    assert torch.equal(layer(x)[0], reference(x)[0])


def test_flatten_parameters_hands_cudnn_nn_lstms_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.backends.cudnn.rnn as cudnn_rnn

    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(ZoneoutLSTM, "_cudnn_weights", lambda self: _weights(self))
    monkeypatch.setattr(torch, "_use_cudnn_rnn_flatten_weight", lambda: True)
    monkeypatch.setattr(torch, "_cudnn_rnn_flatten_weight", lambda *args: calls.append(args))
    monkeypatch.setattr(cudnn_rnn, "get_cudnn_mode", lambda mode: f"mode {mode}")
    layer = ZoneoutLSTM(3, 5, num_layers=2, zoneout_cell=0.5)
    layer.flatten_parameters()
    (args,) = calls
    weights, *rest = args
    names = nn.LSTM(3, 5, num_layers=2)._flat_weights_names
    assert [w is getattr(layer, n) for w, n in zip(weights, names, strict=True)] == [True] * 8
    assert rest == [4, 3, "mode LSTM", 5, 0, 2, False, False]
    layer.double()  # as nn.LSTM: every move lays the weights out again
    assert len(calls) == 2
    ZoneoutLSTM(3, 5, bias=False).flatten_parameters()
    assert calls[-1][1] == 2


def _weights(layer: ZoneoutLSTM) -> list[torch.Tensor]:
    return [getattr(layer, name) for name in layer._rnn_parameter_names]


def test_cpu_weights_are_not_for_cudnn() -> None:
    assert ZoneoutLSTM(3, 5)._cudnn_weights() is None


# ----------------------------------------------------------------- 5. the JIT-build lock


@pytest.fixture
def build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Build:
    """A fresh extensions directory, `load()` not yet tried, torch's compile stood in for: it
    would wait forever on its lock, so it fails the test if the lock is still there."""
    from torch.utils import cpp_extension

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    monkeypatch.delenv(_cpu_ext.ENV_SWITCH, raising=False)
    monkeypatch.setattr(_cpu_ext, "_loaded", None)
    monkeypatch.setattr(_cpu_ext, "POLL_SECONDS", 0.02)
    directory = _cpu_ext.build_directory(_cpu_ext.extension_name())
    builds: list[Path] = []

    def fake_load(*, build_directory: str, **_: object) -> None:
        lock = Path(build_directory) / _cpu_ext.TORCH_LOCK_FILE
        assert not lock.exists(), "torch's FileBaton would wait on this lock forever"
        builds.append(Path(build_directory))

    monkeypatch.setattr(cpp_extension, "load", fake_load)
    return Build(directory, builds)


class Build(NamedTuple):
    directory: Path
    builds: list[Path]  # the directories the stand-in compile ran for


def _torch_lock(directory: Path, age: float) -> Path:
    lock = directory / _cpu_ext.TORCH_LOCK_FILE
    lock.touch()
    when = time.time() - age
    os.utime(lock, (when, when))
    return lock


def test_a_lock_older_than_the_limit_is_removed_and_the_build_runs(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_cpu_ext.ENV_LOCK_SECONDS, "60")
    lock = _torch_lock(build.directory, age=120)
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match="killed while compiling"):
        assert _cpu_ext.load() is True
    assert time.monotonic() - started < 5 and not lock.exists()
    assert build.builds == [build.directory]
    assert (build.directory / _cpu_ext.BUILD_LOCK_FILE).read_text() == ""  # released cleanly


def test_a_fresh_lock_is_waited_on_only_up_to_the_limit(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_cpu_ext.ENV_LOCK_SECONDS, "0.5")
    _torch_lock(build.directory, age=0)
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match="removing a build lock"):
        assert _cpu_ext.load() is True
    assert 0.4 < time.monotonic() - started < 5 and build.builds == [build.directory]


def test_the_lock_of_a_build_whose_process_died_goes_at_once(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dead builder's record is still in our lock file (its flock went with it), its torch
    # lock is fresh: no need to wait out the limit.
    monkeypatch.setenv(_cpu_ext.ENV_LOCK_SECONDS, "300")
    (build.directory / _cpu_ext.BUILD_LOCK_FILE).write_text("node-7 pid 4242\n")
    lock = _torch_lock(build.directory, age=0)
    started = time.monotonic()
    with pytest.warns(RuntimeWarning, match="node-7 pid 4242 died while compiling"):
        assert _cpu_ext.load() is True
    assert time.monotonic() - started < 5 and not lock.exists()
    assert build.builds == [build.directory]


def test_a_holder_past_the_limit_is_not_waited_on_forever(
    build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_cpu_ext.ENV_LOCK_SECONDS, "0.5")
    path = build.directory / _cpu_ext.BUILD_LOCK_FILE
    holder = os.open(path, os.O_RDWR | os.O_CREAT)  # another open file: flock conflicts
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(holder, b"node-3 pid 99\n")
        started = time.monotonic()
        with pytest.warns(RuntimeWarning, match="held by node-3 pid 99"):
            assert _cpu_ext.load() is True
        assert 0.4 < time.monotonic() - started < 5 and build.builds == [build.directory]
        assert path.read_text() == "node-3 pid 99\n"  # the holder's record stays
    finally:
        os.close(holder)


def test_a_build_that_still_fails_falls_back(build: Build, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch.utils import cpp_extension

    def broken(**_: object) -> None:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(cpp_extension, "load", broken)
    monkeypatch.setenv(_cpu_ext.ENV_LOCK_SECONDS, "60")
    _torch_lock(build.directory, age=120)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _cpu_ext.load() is False
    assert any("pure-PyTorch fused path" in str(w.message) for w in caught)
    assert (build.directory / _cpu_ext.BUILD_LOCK_FILE).read_text() == ""


def test_the_staleness_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_cpu_ext.ENV_LOCK_SECONDS, raising=False)
    assert _cpu_ext.stale_lock_seconds() == _cpu_ext.STALE_LOCK_SECONDS
    monkeypatch.setenv(_cpu_ext.ENV_LOCK_SECONDS, "42.5")
    assert _cpu_ext.stale_lock_seconds() == 42.5
    for bad in ("soon", "0", "-3", "nan", "inf"):
        monkeypatch.setenv(_cpu_ext.ENV_LOCK_SECONDS, bad)
        with pytest.warns(RuntimeWarning, match="not a positive number"):
            assert _cpu_ext.stale_lock_seconds() == _cpu_ext.STALE_LOCK_SECONDS
