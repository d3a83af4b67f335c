"""A run's checkpoint files, read back only when they can resume the run that asks.

`trials.train.train` writes two files into a run's checkpoint directory after every epoch:
``checkpoint.pt`` (everything needed to continue: weights, optimizer, scheduler and RNG states,
the history, the config and its fingerprint) and ``best_model.pt`` (the best weights so far).
Resuming reads them back through this module, which refuses with a :class:`CheckpointError`
(one line naming the file) a file that is not a readable checkpoint (garbage, truncated, a
directory) and a checkpoint made with a config that does not resume as the one given.

Which config fields must match (:func:`config_fingerprint`): every field of
:class:`trials.config.TrialConfig` except :data:`NOT_FINGERPRINTED`, the ones that say how far a
run goes or where and on which kernels the same computation runs; a change to any other field
(a rate, a size, the optimizer, the seed, the data) would continue a different run from this
one's weights and states, or fail on their shapes.

Old checkpoints: one written before fingerprints has its config stored (``config``), from which
the fingerprint is computed the same way; one written before configs were stored has neither
and is resumed as before, its weights still checked against the model's shapes on loading.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from trials.config import TrialConfig
from trials.errors import UserError

__all__ = [
    "BEST_MODEL_FILE",
    "CHECKPOINT_FILE",
    "CONFIG_KEY",
    "FINGERPRINT_KEY",
    "NOT_FINGERPRINTED",
    "CheckpointError",
    "check_resumable",
    "config_fingerprint",
    "read_checkpoint",
    "read_weights",
    "restoring",
]

CHECKPOINT_FILE = "checkpoint.pt"
BEST_MODEL_FILE = "best_model.pt"
# checkpoint.pt's keys for the run's config (TrialConfig.to_dict()) and its fingerprint.
CONFIG_KEY = "config"
FINGERPRINT_KEY = "config_fingerprint"
# The keys train() reads back from checkpoint.pt (``scheduler`` is None without a plateau).
_RESUME_KEYS = (
    "epoch",
    "model",
    "optimizer",
    "scheduler",
    "rng",
    "history",
    "best_epoch",
    "best_valid_metric",
)

NOT_FINGERPRINTED: frozenset[str] = frozenset(
    {
        # How far the run goes, not what it trained so far: extending a run's budget is a
        # legitimate resume (a run that converged stays ended even under a larger ``epochs``),
        # and so is adding or changing early stopping, which train() reads against the whole
        # history. ``test_tokens`` only sizes the test split evaluated once at the end (compare
        # resumes a finished study's checkpoint to evaluate the whole test text).
        "epochs",
        "patience",
        "min_delta",
        "test_tokens",
        # Where and on which kernels the same computation runs: a Ray trial's threads follow the
        # CPUs it was given, a checkpoint resumes on a node with another device (or none;
        # trials.reproducibility), and every layer path computes the same function.
        "device",
        "threads",
        "implementation",
        "matmul_precision",
        "deterministic",
        # Where the data lies, not which data: nodes mount it at different paths (trials.config).
        # A corpus with another vocabulary still fails on the model's shapes.
        "data_dir",
        "text_path",
    }
)
# The fingerprint's scheme: a checkpoint whose fingerprint has another prefix was fingerprinted
# over another set of fields, and its stored config is compared instead.
_SCHEME = "v1:"
# A field left out of the fingerprint while at its default: a field added to TrialConfig later
# (with a default that keeps old configs' meaning) leaves old checkpoints' fingerprints as they
# were. Fields without a default (``task``) are always in.
_DEFAULTS: dict[str, Any] = {
    name: field.get_default(call_default_factory=True)
    for name, field in TrialConfig.model_fields.items()
    if not field.is_required()
}
_FINGERPRINTED = tuple(name for name in TrialConfig.model_fields if name not in NOT_FINGERPRINTED)
_NO_DEFAULT = object()


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot resume this run: not a readable checkpoint file, or made with a
    config that differs from this run's in a fingerprinted field; the message names the file."""


def _fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprinted fields of a config as ``TrialConfig.to_dict()`` gives it, those at their
    default left out."""
    return {
        name: config[name]
        for name in _FINGERPRINTED
        if name in config and config[name] != _DEFAULTS.get(name, _NO_DEFAULT)
    }


def _digest(fields: Mapping[str, Any]) -> str:
    text = json.dumps(dict(fields), sort_keys=True, separators=(",", ":"), default=str)
    return _SCHEME + hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_fingerprint(config: TrialConfig) -> str:
    """The digest of the fields a checkpoint must share with the config that resumes it."""
    return _digest(_fields(config.to_dict()))


def _value(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _differences(made: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """'name: checkpoint X, this config Y' for each fingerprinted field that differs."""
    lines = []
    for name in _FINGERPRINTED:
        before = made.get(name, _DEFAULTS.get(name))
        after = current.get(name, _DEFAULTS.get(name))
        if before != after:
            lines.append(f"{name}: checkpoint {_value(before)}, this config {_value(after)}")
    return lines


def _short_error(error: BaseException) -> str:
    """An exception as a few words for a one-line message: its name and first useful line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    # load_state_dict: "Error(s) in loading state_dict for X:" then a line per problem.
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading"):
        lines = lines[1:]
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    text = re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", text)  # torch.Size([8, 1]) -> [8, 1]
    return text if len(text) <= 200 else text[:199] + "…"


def _numpy_rng_globals() -> list[Any]:
    """What unpickling numpy's RNG state (``numpy.random.get_state()``: a tuple with a uint32
    array) needs beyond torch's weights-only allowlist: the array's class, its dtype's, and the
    function an array pickles through (taken from the array's own ``__reduce__``: its module
    is private to numpy and moved between numpy 1 and 2)."""
    import numpy as np

    state = np.zeros(1, dtype=np.uint32)
    return [np.dtype, np.ndarray, state.__reduce__()[0], type(state.dtype)]


def _load(path: Path, *, weights_only: bool, map_location: Any) -> Any:
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        archive = zipfile.is_zipfile(path)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None
    if not archive:
        # torch.save writes a zip archive whose directory is at its end: a truncated or
        # overwritten file fails this (as study.resume checks a resume point's checkpoint).
        raise CheckpointError(
            f"{path}: not a readable checkpoint (truncated, or not a file torch.save wrote); "
            "move it away to start this run afresh"
        )
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise  # the machine's memory, not the file
    except Exception as error:
        # torch.load raises what the zip reader, the unpickler or the storage code raise on a
        # truncated, overwritten or foreign file (RuntimeError, UnpicklingError, EOFError,
        # ValueError, ...): all say the same thing here, the file is not a checkpoint.
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({_short_error(error)}); move it away to start "
            "this run afresh"
        ) from None


def read_checkpoint(path: Path, config: TrialConfig) -> dict[str, Any]:
    """``checkpoint.pt`` at ``path``, loaded on the CPU, if it holds a training checkpoint made
    with a config that resumes as ``config``; else :class:`CheckpointError`."""
    # Loaded on the CPU: the RNG states must stay CPU ByteTensors (torch.set_rng_state rejects
    # a CUDA tensor); the model and optimizer copy their tensors onto the device themselves.
    # weights_only: a checkpoint is a file from a directory anyone may have written to (a
    # shared checkpoint_path, one copied from elsewhere); a full unpickle would run whatever
    # code it names before any check here could refuse it. Beside tensors and plain containers
    # a checkpoint holds numpy's RNG state, whose three classes are allowed by name.
    with torch.serialization.safe_globals(_numpy_rng_globals()):
        saved = _load(path, weights_only=True, map_location="cpu")
    if not isinstance(saved, dict):
        raise CheckpointError(
            f"{path}: not a training checkpoint (it holds a {type(saved).__name__}); move it "
            "away to start this run afresh"
        )
    missing = [key for key in _RESUME_KEYS if key not in saved]
    if missing:
        raise CheckpointError(
            f"{path}: not a training checkpoint (it lacks {', '.join(map(repr, missing))}); "
            "move it away to start this run afresh"
        )
    _check_config(path, saved, config)
    return saved


def _check_config(path: Path, saved: Mapping[str, Any], config: TrialConfig) -> None:
    stored = saved.get(CONFIG_KEY)
    fingerprint = saved.get(FINGERPRINT_KEY)
    if stored is not None and not isinstance(stored, dict):
        raise CheckpointError(
            f"{path}: not a training checkpoint (its {CONFIG_KEY!r} is a "
            f"{type(stored).__name__}); move it away to start this run afresh"
        )
    if not (isinstance(fingerprint, str) and fingerprint.startswith(_SCHEME)):
        fingerprint = None  # none yet, or of another scheme: the stored config tells
    if fingerprint is None and stored is None:
        return  # written before configs were kept: nothing to compare (shapes are on load)
    current = _fields(config.to_dict())
    made = _fields(stored) if stored is not None else None
    expected = fingerprint if fingerprint is not None else _digest(made or {})
    if expected == _digest(current):
        return
    differences = _differences(made, current) if made is not None else []
    more = f"; and {len(differences) - 4} more" if len(differences) > 4 else ""
    what = "; ".join(differences[:4]) + more
    what = what or f"its config fingerprint {expected[:15]} is not this config's"
    raise CheckpointError(
        f"{path} was made with another config: {what}; resume with the checkpoint's values, or "
        "start afresh in another checkpoint directory"
    )


def read_weights(path: Path, map_location: Any = "cpu") -> dict[str, torch.Tensor]:
    """The model weights kept in ``best_model.pt`` at ``path``; :class:`CheckpointError` when
    the file holds none."""
    saved = _load(path, weights_only=True, map_location=map_location)
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        raise CheckpointError(
            f"{path}: not a saved model (no 'model' weights in it); move it away to start this "
            "run afresh"
        )
    return saved["model"]


def check_resumable(directory: Path, config: TrialConfig) -> None:
    """Refuse, before anything runs, a checkpoint directory whose files ``train(config,
    checkpoint_dir=directory)`` could not resume from (see :func:`read_checkpoint`); a
    directory without a checkpoint is a fresh start and passes. The weights' shapes are checked
    when train() loads them into its model."""
    path = Path(directory) / CHECKPOINT_FILE
    if not path.exists() and not path.is_symlink():
        return
    read_checkpoint(path, config)
    best = Path(directory) / BEST_MODEL_FILE
    if best.exists() or best.is_symlink():
        read_weights(best)


@contextlib.contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Restoring a run's states from the file ``path`` holds: what the states do not fit (a
    weight of another shape, an optimizer of other parameter groups, a history of other
    fields) is a :class:`CheckpointError` naming the file."""
    try:
        yield
    except (CheckpointError, torch.cuda.OutOfMemoryError):
        raise  # already named; or the device's memory, not the file
    except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(
            f"{path}: does not fit this run's model or states ({_short_error(error)}); resume "
            "with the config it was made with, or move it away to start afresh"
        ) from None
