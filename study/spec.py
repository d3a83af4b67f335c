"""`StudySpec`: what a user writes to run a study (YAML, validated by pydantic).

A spec is a base `TrialConfig` plus a search space over any of its fields, the sampler, the
early-stopping scheduler, how many trials, how many seeds per configuration, resources per trial
and where it all runs and is stored. Every error names the field and what is allowed.

Sizes are checked before anything is allocated: a spec file over ``MAX_SPEC_BYTES`` is refused
by its size before it is parsed, a parsed document over ``MAX_SPEC_NODES`` values before it is
validated, and a grid is counted (never built) against ``MAX_GRID_POINTS``.

Resources and device agree: ``resources.gpu > 0`` needs ``base.device`` 'cuda' or 'auto';
``base.device: cuda`` needs ``resources.gpu > 0``. ``device: auto`` follows the resources: it
becomes 'cuda' when trials reserve a GPU and 'cpu' when they do not, in the validated spec, so
every trial config (and every export) names the device it ran on. (Left to torch, 'auto' would
see every GPU of the node: Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone for a trial that reserved
none, so such a trial would compute on a GPU that others have reserved.) A trial computes on one
device, so ``resources.gpu`` is at most 1. ``resources.wait_for_nodes_s`` bounds how long a run
on a Ray cluster waits for a node that fits one trial (study.ray_session).

Paths are resolved once, here: ``base.data_dir``, ``base.text_path`` and a local
``checkpoint_path`` (not a URI such as ``s3://...``) are made absolute against the spec file's
directory when the spec is read from a file (:func:`load_spec`), else against the working
directory, ``~`` expanded. Trials run in Ray's trial directory, so a path left relative would be
looked up there. ``storage`` is a URL and is left as given.

What validation accepts, the run can do: seeds lie in the range the store and every random
generator take unchanged (trials.config.SEED_MAX; with ``repeats: k`` the seeds
``base.seed .. base.seed + k - 1`` all do), the sampler seed in numpy's RandomState range,
resources at Ray's precision, and integer search bounds where Optuna's float64 parameter column
holds them exactly.

Values are of the type declared (trials.config.check_declared), in the base, the search space,
the points and every other section: a YAML boolean, a text ("0.1") or NaN / infinity where a
number is declared is refused, and so is a number where a boolean is; a categorical parameter
lists each value once (0.1 and 0.10 would be two configurations of one), and torch threads fit
the CPUs a trial reserves (``base.threads <= resources.cpu``). A value echoed in a message is cut
to its start and its length (trials.config.shown).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from study.errors import UserError
from study.space import build_sampler
from trials.config import (
    BASE_DIR_CONTEXT,
    SEED_MAX,
    TASKS,
    ConfigError,
    TrialConfig,
    absolute_path,
    check_declared,
    check_seed,
    cut_text,
    declared_kind,
    did_you_mean,
    read_yaml,
    shown,
)

__all__ = [
    "CategoricalParam",
    "FailureSpec",
    "FloatParam",
    "IntParam",
    "ResourcesSpec",
    "SamplerSpec",
    "SchedulerSpec",
    "SearchParam",
    "SpecError",
    "StudySpec",
    "load_spec",
    "read_spec_file",
    "validate_spec",
]

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SEARCHABLE = frozenset(TrialConfig.model_fields) - {
    "seed",  # frame-contract: not a column (a TrialConfig key)
    "device",
    "data_dir",
    "text_path",
}

# Caps on what a spec may imply, far above any study a person runs, far below what hurts a
# machine. A real spec is 1-3 KB; YAML parses about 150 KB/s in pure Python.
MAX_SPEC_BYTES = 256 * 1024
MAX_SPEC_NODES = 20_000  # values in the parsed document, aliases counted at every use
MAX_GRID_POINTS = 100_000  # configurations a grid may enumerate (each one is a training run)
MAX_CHOICES = 1_000  # choices of one categorical parameter
MAX_TRIALS = 100_000
MAX_REPEATS = 100
MAX_CONCURRENT_TRIALS = 1_024
# How long a run on a Ray cluster waits for a node that fits one trial (resources).
DEFAULT_WAIT_FOR_NODES_S = 600.0

# Optuna's samplers draw from numpy.random.RandomState(seed) (optuna/samplers/
# _lazy_random_state.py), which takes seeds 0 .. 2**32 - 1.
SAMPLER_SEED_MAX = 2**32 - 1
# Ray keeps resource quantities as fixed-point integers in units of 1/10000:
# ray._raylet.RESOURCE_UNIT_SCALING is 10000 in Ray 2.60, and ray/_common/ray_option_utils.py
# (_validate_resource_quantity) refuses a quantity with int(quantity * 10000) == 0 ("The
# precision of the fractional quantity of resource ... cannot go beyond 0.0001"); a finer
# fraction would be truncated.
RAY_RESOURCE_UNITS = 10_000
# Optuna stores every parameter value as a float64 (trial_params.param_value, FLOAT precision
# 53 in optuna/storages/_rdb/models.py): integers beyond 2**53 would come back changed.
MAX_EXACT_INT = 2**53


class SpecError(UserError, ValueError):
    """A spec that cannot run; the message names the field and the allowed values."""


def _as_declared(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    # Types as declared, before pydantic's lax conversion (trials.config.check_declared): a YAML
    # true is no count of 1, the text "2" no number, NaN or infinity no bound or step.
    field = model.model_fields.get(info.field_name or "")
    return check_declared(value, declared_kind(field.annotation) if field else None)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _declared(cls, value: Any, info: ValidationInfo) -> Any:
        # A model's own 'before' validators run first (wait_for_nodes_s: 'forever').
        return _as_declared(cls, value, info)


class _Param(BaseModel):
    """A search parameter: its fields are named for the check of their types, since a 'before'
    validator of every field would cover 'type', the discriminator, which pydantic refuses."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("low", "high", "log", "step", mode="before", check_fields=False)
    @classmethod
    def _declared(cls, value: Any, info: ValidationInfo) -> Any:
        return _as_declared(cls, value, info)


class FloatParam(_Param):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        # low, high and step are finite: _Param refuses NaN and infinity.
        if self.low >= self.high:
            raise ValueError(f"empty or inverted range: low {self.low} >= high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.step is not None:
            steps = (self.high - self.low) / self.step
            if math.isfinite(steps) and abs(steps - round(steps)) > 1e-9 * max(1.0, steps):
                # Optuna would silently move high to the last step below it.
                below = self.low + math.floor(steps) * self.step
                raise ValueError(
                    f"step {self.step:g} does not divide the range {self.low:g}..{self.high:g}: "
                    f"use high {below:g} or {below + self.step:g}, or another step"
                )
        return self

    def grid_count(self) -> int | None:
        """How many points ``grid()`` would return (None: no grid), computed, not built; a
        count past any representable size is ``MAX_GRID_POINTS + 1``."""
        if self.step is None:
            return None
        steps = (self.high - self.low) / self.step + 1e-9
        if not math.isfinite(steps) or steps >= MAX_GRID_POINTS:
            return MAX_GRID_POINTS + 1
        return math.floor(steps) + 1

    def grid(self) -> list[float] | None:
        count = self.grid_count()
        if count is None:
            return None
        _check_grid_count(count)
        assert self.step is not None
        return [round(self.low + index * self.step, 12) for index in range(count)]


class IntParam(_Param):
    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, gt=0)

    @field_validator("low", "high", "step")
    @classmethod
    def _exact_in_optuna(cls, value: int) -> int:
        if abs(value) > MAX_EXACT_INT:
            raise ValueError(
                f"{shown(value)} is beyond 2**53 in magnitude: Optuna stores parameter values as "
                "64-bit floats, which hold integers exactly only up to 2**53"
            )
        return value

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        if self.low >= self.high:
            raise ValueError(f"empty or inverted range: low {self.low} >= high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be combined")
        if (self.high - self.low) % self.step:
            below = self.low + (self.high - self.low) // self.step * self.step
            raise ValueError(
                f"step {self.step} does not divide the range {self.low}..{self.high}: use high "
                f"{below} or {below + self.step}, or another step"
            )
        return self

    def grid_count(self) -> int | None:
        return None if self.log else (self.high - self.low) // self.step + 1

    def grid(self) -> list[int] | None:
        count = self.grid_count()
        if count is None:
            return None
        _check_grid_count(count)
        return list(range(self.low, self.high + 1, self.step))


class CategoricalParam(_Param):
    type: Literal["categorical"] = "categorical"
    choices: list[Any] = Field(min_length=1, max_length=MAX_CHOICES)

    def grid_count(self) -> int:
        return len(self.choices)

    def grid(self) -> list[Any]:
        return list(self.choices)


def _check_grid_count(count: int) -> None:
    if count > MAX_GRID_POINTS:
        raise ValueError(f"the grid would have more than {MAX_GRID_POINTS:,} points")


SearchParam = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SamplerSpec(_Strict):
    name: Literal["tpe", "gp", "cmaes", "qmc", "random", "grid"] = "tpe"
    seed: int | None = 0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("seed")  # frame-contract: not a column (a SamplerSpec field)
    @classmethod
    def _seed_range(cls, value: int | None) -> int | None:
        if value is None:
            return None
        return check_seed(
            value,
            SAMPLER_SEED_MAX,
            "Optuna's samplers pass it to numpy's RandomState",
        )


class SchedulerSpec(_Strict):
    name: Literal["asha", "none"] = "asha"
    grace_period: int = Field(default=1, gt=0)
    reduction_factor: float = Field(default=2.0, gt=1.0)


class ResourcesSpec(_Strict):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(
        default=0.0,
        ge=0,
        description="GPUs per trial: at most 1 (a trial computes on one device, cuda:0); a "
        "fraction shares a GPU between trials",
    )
    wait_for_nodes_s: float | None = Field(
        default=DEFAULT_WAIT_FOR_NODES_S,
        ge=0,
        description="seconds a run on a Ray cluster waits for a node that fits one trial "
        "(cpu and gpu above) to join, e.g. while an autoscaler (KubeRay, `ray up`) adds GPU "
        "nodes; null or 'forever' waits without a limit, 0 refuses at once. A Ray the run "
        "starts itself cannot grow: a trial that does not fit it is refused at once",
    )

    @field_validator("cpu", "gpu")
    @classmethod
    def _ray_precision(cls, value: float) -> float:
        """A multiple of Ray's resource unit (see RAY_RESOURCE_UNITS), rounded to it exactly; a
        positive quantity is at least one unit."""
        step = 1 / RAY_RESOURCE_UNITS  # value is finite: _Strict refuses NaN and infinity
        units = value * RAY_RESOURCE_UNITS
        whole = round(units)
        # Tolerance: 0.3 * 10000 is 2999.9999999999995 in binary floating point.
        if abs(units - whole) > 1e-6 * max(1.0, abs(units)) or (value > 0 and whole == 0):
            nearest = max(whole, 1) / RAY_RESOURCE_UNITS
            raise ValueError(
                f"{value:g} is not a multiple of {step:g}, Ray's resource precision (the "
                f"smallest step, and the smallest quantity above 0); e.g. {nearest:g}"
            )
        return whole / RAY_RESOURCE_UNITS

    @field_validator("gpu")
    @classmethod
    def _one_device(cls, value: float) -> float:
        # trials.train computes on one device (torch.device("cuda"): the first GPU Ray made
        # visible); a second reserved GPU would sit idle while other trials wait for it.
        if value > 1:
            raise ValueError(
                f"{value:g} GPUs per trial, but a trial computes on one device (cuda:0): use "
                "at most 1 (or a fraction to share a GPU), and max_concurrent_trials to use "
                "more GPUs at once"
            )
        return value

    @field_validator("wait_for_nodes_s", mode="before")
    @classmethod
    def _forever(cls, value: Any) -> Any:
        # Runs before _Strict's check: 'forever' is the one text, and the refusals of YAML's
        # yes/no (1 / 0 seconds), other texts and infinity say how to ask for no limit.
        if isinstance(value, str) and value.strip().lower() == "forever":
            return None
        if isinstance(value, (bool, str)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise ValueError(
                f"must be a number of seconds, or null / 'forever' for no limit, got {shown(value)}"
            )
        return value


class FailureSpec(_Strict):
    max_retries: int = Field(default=1, ge=0, description="Ray restarts of a crashed trial")


class PromoteSpec(_Strict):
    """Configurations carried from a (smaller) study in the same storage into this one: the
    source's ``top`` configurations by score plus the named ``points``, each run with this
    study's seeds on this study's base (study.ladder)."""

    study: str = Field(min_length=1, description="the source study, in this study's storage")
    top: int = Field(default=3, ge=0, le=MAX_TRIALS)
    points: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_TRIALS)


class StudySpec(_Strict):
    name: str
    description: str = ""
    base: TrialConfig
    search: dict[str, SearchParam] = Field(default_factory=dict)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    n_trials: int = Field(default=20, gt=0, le=MAX_TRIALS)
    max_concurrent_trials: int = Field(default=2, gt=0, le=MAX_CONCURRENT_TRIALS)
    repeats: int = Field(default=1, gt=0, le=MAX_REPEATS, description="seeds per configuration")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    storage: str | None = None
    ray_address: str | None = None
    checkpoint_path: str | None = None
    failure: FailureSpec = Field(default_factory=FailureSpec)
    # Configurations run first, each exactly once (e.g. the unregularized one and the paper's):
    # every searched field, a value of its search range. A grid runs them before its other points.
    points: list[dict[str, Any]] = Field(default_factory=list, max_length=MAX_TRIALS)
    # A study on a larger scale that runs another study's best configurations (study.ladder):
    # its plan is exactly the promoted configurations, resolved once by its first run.
    promote: PromoteSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _require_task(cls, data: Any) -> Any:
        # Without these a spec would silently train the config's default task.
        if isinstance(data, dict):
            tasks = ", ".join(repr(task) for task in TASKS)
            if data.get("base") is None:
                raise ValueError(
                    f"base: required: the trial config every trial starts from, with at least "
                    f"'task' (one of {tasks})"
                )
            if isinstance(data["base"], dict) and "task" not in data["base"]:
                raise ValueError(f"base.task: required (one of {tasks})")
        return data

    @field_validator("checkpoint_path")
    @classmethod
    def _absolute_checkpoints(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Ray Tune writes trial checkpoints under this root; a relative root would depend on the
        # directory the driver happens to run in. URIs (s3://, gs://, file://) pass as given.
        if value is None or "://" in value:
            return value
        context = info.context if isinstance(info.context, dict) else {}
        return str(absolute_path(value, context.get(BASE_DIR_CONTEXT)))

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        # The name becomes a directory and file name: nothing that escapes the output directory.
        if not STUDY_NAME.match(value) or ".." in value:
            raise ValueError(
                f"study name {shown(value)} must be 1-100 letters, digits, '_', '-' or '.', "
                "start with a letter or digit, and contain no '..'"
            )
        return value

    @model_validator(mode="after")
    def _check_seeds(self) -> StudySpec:
        # Configuration seeds are base.seed, base.seed + 1, ... (study.searcher): the last one
        # must be a seed too, not a value the store overflows on.
        last = self.base.seed + self.repeats - 1
        if last > SEED_MAX:
            raise ValueError(
                f"base.seed: {self.base.seed} with repeats {self.repeats} would use seeds up to "
                f"{last}, past the largest seed 2**63 - 1 = {SEED_MAX}; use base.seed <= "
                f"{SEED_MAX - self.repeats + 1}"
            )
        return self

    @model_validator(mode="after")
    def _check_search(self) -> StudySpec:
        for key, param in self.search.items():
            if key not in SEARCHABLE:
                hint = did_you_mean(key, sorted(SEARCHABLE))
                raise ValueError(f"search: {shown(key)} is not a searchable config field{hint}")
            if key in ("zoneout_cell", "zoneout_hidden", "recurrent_dropout", "dropout") and not (
                isinstance(param, CategoricalParam)
            ):
                upper = 1.0 if key.startswith("zoneout") else 1.0 - 1e-9
                if param.low < 0 or param.high > upper:
                    raise ValueError(f"search: {key} is a rate; its range must lie in [0, 1]")
            self._check_values(key, param)
        if self.sampler.name == "grid":
            points = 1
            for key, param in self.search.items():
                count = param.grid_count()
                if count is None:
                    raise ValueError(
                        f"sampler 'grid' needs a finite grid: give search.{key} a 'step' "
                        "(float/int without log) or make it categorical"
                    )
                points *= count
                if points > MAX_GRID_POINTS:
                    # Counted, never built: Optuna's GridSampler would hold every point.
                    values = (
                        f"more than {MAX_GRID_POINTS:,}"
                        if count > MAX_GRID_POINTS
                        else f"{count:,}"
                    )
                    raise ValueError(
                        f"search: the grid has more than {MAX_GRID_POINTS:,} points (at "
                        f"search.{key}, {values} values); use a larger step or fewer values"
                    )
        try:
            build_sampler(self)
        except (TypeError, ValueError) as error:
            # Optuna's sentence names the option: long enough to hold it, cut past that.
            raise ValueError(f"sampler.options: {cut_text(str(error), 200)}") from None
        if self.resources.gpu == 0 and self.base.device == "cuda":
            raise ValueError(
                "base.device is 'cuda' but resources.gpu is 0: each trial would compute on a "
                "GPU Ray did not reserve for it (or find none on a CPU node); set resources.gpu "
                "(e.g. 1) or base.device 'auto'"
            )
        if self.resources.gpu > 0 and self.base.device == "cpu":
            raise ValueError(
                f"resources.gpu is {self.resources.gpu:g} per trial but base.device is 'cpu' "
                "(the default): set base.device to 'cuda' or 'auto', or resources.gpu to 0"
            )
        if self.base.device == "auto":
            device = "cuda" if self.resources.gpu > 0 else "cpu"
            self.base = self.base.model_copy(update={"device": device})
        return self

    def _check_values(self, key: str, param: FloatParam | IntParam | CategoricalParam) -> None:
        """Every point of the space is a valid trial config (its range's ends, each choice), its
        threads fit a trial's CPUs, and a categorical parameter lists each value once: 0.1 and
        0.1 (or 1 and 1.0 for a rate) would be two choices, and so two configurations, of one."""
        seen: dict[Any, int] = {}
        for index, value in enumerate(_corner_values(param)):
            where = (
                f"search.{key}.choices[{index}]"
                if isinstance(param, CategoricalParam)
                else f"search.{key}"
            )
            try:
                config = TrialConfig.model_validate({**self.base.to_dict(), key: value})
            except ValidationError as error:
                message = _first_message(error)
                if isinstance(param, CategoricalParam):
                    raise ValueError(f"{where}: {message}") from None
                raise ValueError(
                    f"search: {key}={shown(value)} is not a valid config ({message})"
                ) from None
            if key == "threads":  # searched threads; the base's own: _check_base_threads
                self._check_threads(config.threads, where)
            if isinstance(param, CategoricalParam):
                same = seen.setdefault(getattr(config, key), index)
                if same != index:
                    raise ValueError(
                        f"{where}: {shown(value)} is the value of choices[{same}] again; list "
                        "each value once"
                    )

    def _check_threads(self, threads: int | None, where: str) -> None:
        # Torch threads run on the CPUs Ray reserves for a trial (resources.cpu, itself checked
        # against the largest node when Ray starts): more threads than that oversubscribe the
        # node, and 1000 of them end in a MemoryError.
        limit = max(1, math.ceil(self.resources.cpu))
        if threads is not None and threads > limit:
            raise ValueError(
                f"{where}: {shown(threads)} threads, but a trial reserves resources.cpu "
                f"{self.resources.cpu:g} CPU: use at most {limit} (or leave threads out: a trial "
                "then uses the CPUs Ray gives it), or raise resources.cpu, up to the CPUs of a "
                f"node ({os.cpu_count()} on this machine, os.cpu_count())"
            )

    @model_validator(mode="after")
    def _check_base_threads(self) -> StudySpec:
        self._check_threads(self.base.threads, "base.threads")
        return self

    @model_validator(mode="after")
    def _check_points(self) -> StudySpec:
        if self.promote is not None:
            if self.points:
                raise ValueError(
                    "points: a promoted study lists its extra points under promote.points"
                )
            if self.promote.study == self.name:
                raise ValueError("promote.study: a study cannot promote from itself")
            if not self.search:
                raise ValueError("promote: the study needs the source's search space")
            if self.promote.top + len(self.promote.points) == 0:
                raise ValueError("promote: give top > 0 or at least one point")
            self.check_points(self.promote.points, "promote.points")
            return self
        self.check_points(self.points, "points")
        if len(self.points) > self.n_trials:
            raise ValueError(
                f"points: {len(self.points)} configurations but n_trials is {self.n_trials}; "
                "raise n_trials or list fewer points"
            )
        return self

    def check_points(self, points: list[dict[str, Any]], field: str) -> None:
        """Each point: every searched field and nothing else, of the field's type, in range, a
        valid config on the base that fits a trial's CPUs, and distinct as a configuration (0.1
        and 0.10 are one point). Raises ValueError naming ``field[index]``."""
        seen: dict[tuple[tuple[str, Any], ...], int] = {}
        for index, point in enumerate(points):
            where = f"{field}[{index}]"
            if set(point) != set(self.search):
                missing = sorted(set(self.search) - set(point))
                extra = sorted(shown(key) for key in set(point) - set(self.search))
                raise ValueError(
                    f"{where}: a point gives every searched field and nothing else"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; not searched: {', '.join(extra)}" if extra else "")
                )
            for key, value in point.items():
                param = self.search[key]
                try:
                    check_declared(value, declared_kind(TrialConfig.model_fields[key].annotation))
                except ValueError as error:
                    raise ValueError(f"{where}.{key}: {error}") from None
                if not isinstance(param, CategoricalParam) and not isinstance(value, (int, float)):
                    raise ValueError(f"{where}.{key}: {shown(value)} is not a number")
                if not _in_range(param, value):
                    raise ValueError(f"{where}.{key}: {shown(value)} is outside search.{key}")
            try:
                config = TrialConfig.model_validate({**self.base.to_dict(), **point})
            except ValidationError as error:
                raise ValueError(f"{where}: not a valid config ({_first_message(error)})") from None
            if "threads" in point:
                self._check_threads(config.threads, f"{where}.threads")
            # As validated: 1 and 1.0 for a rate are one configuration.
            configuration = tuple((name, getattr(config, name)) for name in sorted(point))
            same = seen.setdefault(configuration, index)
            if same != index:
                raise ValueError(f"{where}: the same point as {field}[{same}]")

    @property
    def metric(self) -> str:
        # trials.tasks imports torch: read commands that only load a spec do not pay for it.
        from trials.tasks import metric_for_task

        return metric_for_task(self.base.task)

    @property
    def max_epochs(self) -> int:
        return self.base.epochs

    def grid_size(self) -> int | None:
        if not self.search:
            return 1
        size = 1
        for param in self.search.values():
            values = param.grid()
            if values is None:
                return None
            size *= len(values)
        return size


def _first_message(error: ValidationError) -> str:
    """The first problem of a trial config's ValidationError, as its own validator worded it."""
    item = error.errors()[0]
    message = str(item["msg"]).removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        return f"unknown key {shown(item['loc'][-1])}"
    return message


def _in_range(param: FloatParam | IntParam | CategoricalParam, value: Any) -> bool:
    """``value`` is a value the parameter's search can take (a grid point when it steps)."""
    if isinstance(param, CategoricalParam):
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(param, IntParam) and value != int(value):
        return False
    if not param.low <= value <= param.high:
        return False
    if param.step is None or param.log:
        return True
    steps = (value - param.low) / param.step  # counted, never built: a range may be huge
    return abs(steps - round(steps)) <= 1e-9 * max(1.0, abs(steps))


def _corner_values(param: FloatParam | IntParam | CategoricalParam) -> list[Any]:
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    return [param.low, param.high]


def _format(error: ValidationError, source: str) -> str:
    parts = []
    for item in error.errors():
        loc = _user_location(item["loc"])
        location = ".".join(cut_text(str(part)) for part in loc)
        if item["type"] == "extra_forbidden":
            key = str(loc[-1])
            parent = loc[:-1]
            hint = did_you_mean(key, _known_keys(parent))
            parts.append(f"unknown key '{location}'{hint}")  # each part cut to its start
        elif item["type"] == "union_tag_invalid" or item["type"] == "union_tag_not_found":
            parts.append(f"{location}: type must be one of 'float', 'int', 'categorical'")
        else:
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"{location}: {message}" if location else message)
    return f"{source}: " + "; ".join(parts)


def _user_location(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The location as the user wrote it: pydantic puts the chosen parameter type in it
    (search.zoneout_cell.float.low), which is no key of the spec."""
    if len(loc) > 2 and loc[0] == "search" and loc[2] in ("float", "int", "categorical"):
        return (*loc[:2], *loc[3:])
    return tuple(loc)


def _known_keys(parent: tuple[Any, ...]) -> list[str]:
    models: dict[str, type[BaseModel]] = {
        "base": TrialConfig,
        "sampler": SamplerSpec,
        "scheduler": SchedulerSpec,
        "resources": ResourcesSpec,
        "failure": FailureSpec,
    }
    if not parent:
        return list(StudySpec.model_fields)
    model = models.get(str(parent[0]))
    if model is not None and len(parent) == 1:
        return list(model.model_fields)
    if parent and parent[0] == "search":
        return ["type", "low", "high", "log", "step", "choices"]
    return []


def validate_spec(data: Any, source: str = "spec", base_dir: Path | str | None = None) -> StudySpec:
    """Validate a parsed spec; any problem becomes one SpecError naming the field. Relative
    paths (base.data_dir, base.text_path, a local checkpoint_path) are made absolute against
    ``base_dir``, by default the working directory."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: expected a mapping with at least 'name', got {type(data).__name__}"
        )
    try:
        return StudySpec.model_validate(data, context={BASE_DIR_CONTEXT: base_dir})
    except ValidationError as error:
        raise SpecError(_format(error, source)) from None


def _count_nodes(data: Any, limit: int) -> int:
    """Values in ``data`` counting an aliased value at each use, stopping past ``limit``: an
    alias 'bomb' is a small file whose values, expanded, do not fit in memory."""
    count = 0
    stack = [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def read_spec_file(path: Path | str) -> Any:
    """The parsed YAML document of a spec file, refused (SpecError) before parsing when the file
    is larger than ``MAX_SPEC_BYTES`` or not UTF-8, and after it when it has duplicate keys or
    malformed YAML (both named with their line by trials.config.read_yaml), or more than
    ``MAX_SPEC_NODES`` values."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise SpecError(f"{path}: is a directory, not a spec file")
        if size > MAX_SPEC_BYTES:
            raise SpecError(
                f"{path}: {size:,} bytes; a spec may be at most {MAX_SPEC_BYTES:,} bytes"
            )
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(f"{path}: no such file") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot read ({error.strerror})") from None
    if len(raw) > MAX_SPEC_BYTES:  # a file that grew (or a device that streams)
        raise SpecError(f"{path}: a spec may be at most {MAX_SPEC_BYTES:,} bytes")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not UTF-8 text (byte {error.start})") from None
    try:
        # trials' reader: malformed YAML and duplicate keys are refused naming the line.
        data = read_yaml(path)
    except ConfigError as error:
        raise SpecError(str(error)) from None
    except RecursionError:
        raise SpecError(f"{path}: malformed YAML (nested too deeply)") from None
    except ValueError as error:  # e.g. an integer longer than Python converts
        raise SpecError(
            f"{path}: malformed YAML value ({cut_text(str(error).splitlines()[0])})"
        ) from None
    if _count_nodes(data, MAX_SPEC_NODES) > MAX_SPEC_NODES:
        raise SpecError(
            f"{path}: more than {MAX_SPEC_NODES:,} values once aliases are expanded; "
            "a spec is a few dozen"
        )
    return data


def load_spec(path: Path | str) -> StudySpec:
    """Read and validate a YAML spec file (see :func:`read_spec_file` for what is refused);
    relative paths in it are taken against the file's directory."""
    return validate_spec(
        read_spec_file(path), source=str(path), base_dir=absolute_path(path).parent
    )
