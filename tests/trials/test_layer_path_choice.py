"""The layer path as a trial config's choice (issue 21): ``TrialConfig.implementation``, the
errors of an explicit choice that cannot run, "auto" and its recorded fallbacks, the Triton
self-check (run under Triton's interpreter in a child process), and what `train()` reports."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

from trials.config import ConfigError, TrialConfig, validate_config
from trials.errors import UserError
from trials.models import LAYER_IMPLEMENTATIONS, build_model
from trials.train import train
from trials.zoneout import LayerPath, LayerPathError, ZoneoutLSTM, _cpu_ext, _paths

REPO = Path(__file__).resolve().parents[2]
T, B, IN, H = 5, 3, 4, 6


def _x() -> torch.Tensor:
    return torch.randn(T, B, IN, generator=torch.Generator().manual_seed(0))


def _digits(**changes: Any) -> TrialConfig:
    base: dict[str, Any] = {
        "task": "digits",
        "hidden_size": 8,
        "batch_size": 32,
        "eval_batch_size": 256,
        "learning_rate": 0.02,
        "max_batches_per_epoch": 4,
        "epochs": 2,
        "threads": 1,
        "seed": 0,
    }
    return TrialConfig(**{**base, **changes})


@pytest.fixture
def extension_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU extension unavailable in this process, as with ZONEOUT_CPU_EXTENSION=0."""
    monkeypatch.setattr(_cpu_ext, "_loaded", None)
    monkeypatch.setenv(_cpu_ext.ENV_SWITCH, "0")


# ---------------------------------------------------------------------------- the config field
def test_the_field_names_the_layer_paths_and_auto() -> None:
    field = TrialConfig.model_fields["implementation"]
    assert field.default == "auto"
    assert set(LAYER_IMPLEMENTATIONS) == {"auto", *(p.value for p in LayerPath)}
    for name in LAYER_IMPLEMENTATIONS:
        TrialConfig(
            task="digits", implementation=name, device="cpu" if name != "triton" else "cuda"
        )


def test_auto_is_left_out_of_a_dumped_config_and_a_choice_is_kept() -> None:
    assert "implementation" not in _digits().to_dict()
    config = _digits(implementation="fused")
    assert config.to_dict()["implementation"] == "fused"
    assert TrialConfig.model_validate(config.to_dict()) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"implementation": "triton", "recurrent_batch_norm": True, "device": "cuda"},
         "only the 'reference' loop"),
        ({"implementation": "fused", "recurrent_batch_norm": True}, "recurrent_batch_norm"),
        ({"implementation": "triton"}, "CUDA only"),
        ({"implementation": "cpu_extension", "device": "cuda"}, "CPU only"),
        ({"implementation": "nn_lstm", "zoneout_cell": 0.1}, "needs zoneout_cell"),
        ({"implementation": "nn_lstm", "recurrent_dropout": 0.1}, "recurrent_dropout"),
        ({"implementation": "cpu_extension", "cell": "gru"}, "reference loop"),
        ({"implementation": "cudnn"}, "implementation"),
    ],
)  # fmt: skip
def test_an_explicit_choice_the_config_cannot_run_is_a_config_error(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config({"task": "digits", **changes}, source="test")


@pytest.mark.parametrize("name", ["auto", "nn_lstm", "cpu_extension", "fused", "reference"])
def test_the_model_carries_the_choice_to_its_layer(name: str) -> None:
    model = build_model(_digits(implementation=name), input_size=8, steps=8)
    layer = model.recurrent
    assert isinstance(layer, ZoneoutLSTM)
    implementation, required = LAYER_IMPLEMENTATIONS[name]
    assert layer.implementation == implementation and layer.required_path is required


# ---------------------------------------------------------------------------- the layer
def _layer(required: LayerPath | None, implementation: str, **rates: float) -> ZoneoutLSTM:
    layer = ZoneoutLSTM(IN, H, **rates)
    layer.implementation, layer.required_path = implementation, required
    return layer


def test_auto_on_cpu_takes_the_extension_without_a_fallback() -> None:
    assert _cpu_ext.load(), "the zoneout CPU extension did not build"
    layer = _layer(None, "auto", zoneout_cell=0.5)
    layer(_x())
    assert layer.last_path is LayerPath.CPU_EXTENSION and layer.last_fallback is None


def test_auto_without_the_extension_runs_fused_and_says_why(extension_off: None) -> None:
    layer = _layer(None, "auto", zoneout_cell=0.5)
    layer(_x())
    assert layer.last_path is LayerPath.FUSED
    assert layer.last_fallback == "the CPU extension is turned off (ZONEOUT_CPU_EXTENSION=0)"


def test_a_failed_build_is_the_fallbacks_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cpu_ext, "_loaded", None)
    monkeypatch.setattr(_paths, "_extension_problem", None)

    def failing_load() -> bool:
        import warnings

        warnings.warn(
            "the zoneout CPU extension could not be built (OSError: no g++); ZoneoutLSTM uses "
            "its pure-PyTorch fused path on CPU",
            RuntimeWarning,
            stacklevel=2,
        )
        _cpu_ext._loaded = False
        return False

    monkeypatch.setattr(_cpu_ext, "load", failing_load)
    layer = _layer(None, "auto", zoneout_cell=0.5)
    with pytest.warns(RuntimeWarning, match="could not be built"):
        layer(_x())
    assert layer.last_path is LayerPath.FUSED
    assert layer.last_fallback == "the zoneout CPU extension could not be built (OSError: no g++)"


def test_a_required_extension_that_cannot_load_is_an_error(extension_off: None) -> None:
    layer = _layer(LayerPath.CPU_EXTENSION, "fused", zoneout_cell=0.5)
    with pytest.raises(LayerPathError, match=r"'cpu_extension' cannot run .*turned off") as error:
        layer(_x())
    assert isinstance(error.value, UserError) and layer.last_path is None


def test_a_required_path_still_runs_nn_lstm_where_no_rate_acts() -> None:
    for required in (LayerPath.CPU_EXTENSION, LayerPath.TRITON, LayerPath.FUSED):
        layer = _layer(required, LAYER_IMPLEMENTATIONS[required.value][0])
        layer(_x())
        assert layer.last_path is LayerPath.NN_LSTM


def test_required_paths_that_cannot_run_this_pass() -> None:
    with pytest.raises(LayerPathError, match="needs a CUDA tensor"):
        _layer(LayerPath.TRITON, "triton", zoneout_cell=0.5)(_x())
    nn_lstm = _layer(LayerPath.NN_LSTM, "fused-pytorch", recurrent_dropout=0.5)
    nn_lstm.eval()(_x())  # recurrent dropout does not act in evaluation
    assert nn_lstm.last_path is LayerPath.NN_LSTM
    with pytest.raises(LayerPathError, match=r"'nn_lstm' cannot run .*a rate perturbs it"):
        nn_lstm.train()(_x())
    batch_norm = _layer(LayerPath.FUSED, "fused-pytorch", recurrent_batch_norm=True)
    with pytest.raises(LayerPathError, match="recurrent batch norm runs on the reference loop"):
        batch_norm(_x())
    fused = _layer(LayerPath.FUSED, "fused-pytorch", zoneout_hidden=0.5)
    fused(_x())
    assert fused.last_path is LayerPath.FUSED and fused.last_fallback is None


def test_auto_on_cuda_without_triton_runs_fused_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The CUDA branch of rule 4, on CPU: the device type counted as a Triton device.
    monkeypatch.setattr(_paths, "AUTO_TRITON_DEVICES", ("cpu",))
    monkeypatch.setattr(_paths, "triton_available", lambda device: False)
    layer = _layer(None, "auto", zoneout_cell=0.5)
    layer(_x())
    assert layer.last_path is LayerPath.FUSED
    assert layer.last_fallback == "the triton package is not installed"


# ---------------------------------------------------------------------------- train() reports
def test_train_reports_the_extension_path() -> None:
    assert _cpu_ext.load(), "the zoneout CPU extension did not build"
    reports = []
    result = train(_digits(zoneout_cell=0.2), report=lambda r, d: reports.append(r.as_dict()))
    assert [r["layer_path"] for r in reports] == ["cpu_extension"] * 2
    assert [r["layer_fallback"] for r in reports] == [None, None]
    assert result.epochs[-1].layer_path == "cpu_extension"


def test_train_reports_the_eval_path_when_it_differs() -> None:
    result = train(_digits(recurrent_dropout=0.25, epochs=1))
    assert result.epochs[0].layer_path == "cpu_extension (eval nn_lstm)"
    result = train(_digits(epochs=1))
    assert result.epochs[0].layer_path == "nn_lstm"


def test_train_reports_a_fallback_with_its_reason(extension_off: None) -> None:
    result = train(_digits(zoneout_hidden=0.2, epochs=1))
    epoch = result.epochs[0]
    assert epoch.layer_path == "fused"
    assert epoch.layer_fallback == "the CPU extension is turned off (ZONEOUT_CPU_EXTENSION=0)"


def test_an_explicit_extension_that_cannot_load_fails_the_run(extension_off: None) -> None:
    with pytest.raises(LayerPathError, match="turned off"):
        train(_digits(zoneout_hidden=0.2, epochs=1, implementation="cpu_extension"))


# ---------------------------------------------------------------------------- the self-check
_CHILD = textwrap.dedent(
    """
    import warnings
    import torch
    from trials.zoneout import LayerPath, ZoneoutLSTM, _paths, _selfcheck, triton_selfcheck

    rng = torch.get_rng_state()
    assert triton_selfcheck("cpu") is None, triton_selfcheck("cpu")
    assert torch.equal(torch.get_rng_state(), rng), "the self-check drew from the global RNG"

    _paths.AUTO_TRITON_DEVICES = ("cpu",)  # the CUDA rule, on the interpreter
    layer = ZoneoutLSTM(3, 4, zoneout_cell=0.5)
    layer.implementation = "auto"
    x = torch.randn(3, 2, 3)
    layer(x)
    assert layer.last_path is LayerPath.TRITON and layer.last_fallback is None

    # A forced failure: the Triton layer's output off by 1e-2.
    _selfcheck.clear_selfchecks()
    real = _selfcheck.triton_layer
    def broken(args, noise, seed):
        out, h, c = real(args, noise, seed)
        return out + 1e-2, h, c
    _selfcheck.triton_layer = broken
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(x)
        layer(x)  # answered from the cache: one warning
    assert layer.last_path is LayerPath.FUSED, layer.last_path
    assert layer.last_fallback.startswith("the Triton layer failed its self-check: training "
                                          "with rates 0: output differs"), layer.last_fallback
    assert len([w for w in caught if "self-check" in str(w.message)]) == 1

    # Masks that keep the wrong fraction fail it too.
    _selfcheck.clear_selfchecks()
    _selfcheck.triton_layer = real
    masks = _selfcheck.zoneout_masks
    _selfcheck.zoneout_masks = lambda *a, **k: tuple(~m for m in masks(*a, **k))
    failure = _selfcheck.run_selfcheck(torch.device("cpu"))
    assert failure is not None and "training with rates > 0" in failure, failure
    print("SELFCHECK-OK")
    """
)


def test_the_triton_selfcheck_passes_and_a_failure_falls_back_under_the_interpreter() -> None:
    if importlib.util.find_spec("triton") is None:
        message = "triton is not installed (it is in the `test` extra)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_INTERPRET"] = "1"  # set before triton is imported: hence a child process
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    child = subprocess.run(
        [sys.executable, "-c", _CHILD],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0 and "SELFCHECK-OK" in child.stdout, child.stderr[-4000:]
