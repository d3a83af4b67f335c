"""`StudySpec`: what a user writes to run a study (YAML, validated by pydantic).

A spec is a base `TrialConfig` plus a search space over any of its fields, the sampler, the
early-stopping scheduler, how many trials, how many seeds per configuration, resources per trial
and where it all runs and is stored. Every error names the field and what is allowed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from study.space import build_sampler
from trials.config import ConfigError, TrialConfig, did_you_mean, read_yaml
from trials.tasks import metric_for_task

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
    "validate_spec",
]

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
SEARCHABLE = frozenset(TrialConfig.model_fields) - {"seed", "device", "data_dir", "text_path"}


class SpecError(ValueError):
    """A spec that cannot run; the message names the field and the allowed values."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatParam(_Strict):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> FloatParam:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError("low and high must be finite numbers")
        if self.low >= self.high:
            raise ValueError(f"empty or inverted range: low {self.low} >= high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        return self

    def grid(self) -> list[float] | None:
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        return [round(self.low + index * self.step, 12) for index in range(count)]


class IntParam(_Strict):
    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, gt=0)

    @model_validator(mode="after")
    def _check_range(self) -> IntParam:
        if self.low >= self.high:
            raise ValueError(f"empty or inverted range: low {self.low} >= high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low > 0, got {self.low}")
        if self.log and self.step != 1:
            raise ValueError("log and step cannot be combined")
        return self

    def grid(self) -> list[int] | None:
        return None if self.log else list(range(self.low, self.high + 1, self.step))


class CategoricalParam(_Strict):
    type: Literal["categorical"] = "categorical"
    choices: list[Any] = Field(min_length=1)

    def grid(self) -> list[Any]:
        return list(self.choices)


SearchParam = Annotated[FloatParam | IntParam | CategoricalParam, Field(discriminator="type")]


class SamplerSpec(_Strict):
    name: Literal["tpe", "gp", "cmaes", "qmc", "random", "grid"] = "tpe"
    seed: int | None = Field(default=0, ge=0, le=2**32 - 1)
    options: dict[str, Any] = Field(default_factory=dict)


class SchedulerSpec(_Strict):
    name: Literal["asha", "none"] = "asha"
    grace_period: int = Field(default=1, gt=0)
    reduction_factor: float = Field(default=2.0, gt=1.0)


class ResourcesSpec(_Strict):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)

    @field_validator("gpu")
    @classmethod
    def _whole_or_fraction(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError("more than one GPU per trial must be a whole number")
        return value


class FailureSpec(_Strict):
    max_retries: int = Field(default=1, ge=0, description="Ray restarts of a crashed trial")


class StudySpec(_Strict):
    name: str
    description: str = ""
    base: TrialConfig = Field(default_factory=TrialConfig)
    search: dict[str, SearchParam] = Field(default_factory=dict)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    n_trials: int = Field(default=20, gt=0)
    max_concurrent_trials: int = Field(default=2, gt=0)
    repeats: int = Field(default=1, gt=0, description="seeds per configuration")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    storage: str | None = None
    ray_address: str | None = None
    checkpoint_path: str | None = None
    failure: FailureSpec = Field(default_factory=FailureSpec)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        # The name becomes a directory and file name: nothing that escapes the output directory.
        if not STUDY_NAME.match(value) or ".." in value:
            raise ValueError(
                f"study name {value!r} must be 1-100 letters, digits, '_', '-' or '.', "
                "start with a letter or digit, and contain no '..'"
            )
        return value

    @model_validator(mode="after")
    def _check_search(self) -> StudySpec:
        for key, param in self.search.items():
            if key not in SEARCHABLE:
                hint = did_you_mean(key, sorted(SEARCHABLE))
                raise ValueError(f"search: {key!r} is not a searchable config field{hint}")
            if key in ("zoneout_cell", "zoneout_hidden", "recurrent_dropout", "dropout") and not (
                isinstance(param, CategoricalParam)
            ):
                upper = 1.0 if key.startswith("zoneout") else 1.0 - 1e-9
                if param.low < 0 or param.high > upper:
                    raise ValueError(f"search: {key} is a rate; its range must lie in [0, 1]")
            # Every point of the space must be a valid trial config.
            for value in _corner_values(param):
                try:
                    TrialConfig.model_validate({**self.base.to_dict(), key: value})
                except ValidationError as error:
                    message = error.errors()[0]["msg"]
                    raise ValueError(
                        f"search: {key}={value!r} is not a valid config ({message})"
                    ) from None
        if self.sampler.name == "grid":
            for key, param in self.search.items():
                if param.grid() is None:
                    raise ValueError(
                        f"sampler 'grid' needs a finite grid: give search.{key} a 'step' "
                        "(float/int without log) or make it categorical"
                    )
        try:
            build_sampler(self)
        except (TypeError, ValueError) as error:
            raise ValueError(f"sampler.options: {error}") from None
        if self.resources.gpu == 0 and self.base.device == "cuda":
            raise ValueError("base.device is 'cuda' but resources.gpu is 0: give trials a GPU")
        return self

    @property
    def metric(self) -> str:
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


def _corner_values(param: FloatParam | IntParam | CategoricalParam) -> list[Any]:
    if isinstance(param, CategoricalParam):
        return list(param.choices)
    return [param.low, param.high]


def _format(error: ValidationError, source: str) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            key = str(item["loc"][-1])
            parent = item["loc"][:-1]
            hint = did_you_mean(key, _known_keys(parent))
            parts.append(f"unknown key {location!r}{hint}")
        elif item["type"] == "union_tag_invalid" or item["type"] == "union_tag_not_found":
            parts.append(f"{location}: type must be one of 'float', 'int', 'categorical'")
        else:
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"{location}: {message}" if location else message)
    return f"{source}: " + "; ".join(parts)


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


def validate_spec(data: Any, source: str = "spec") -> StudySpec:
    """Validate a parsed spec; any problem becomes one SpecError naming the field."""
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: expected a mapping with at least 'name', got {type(data).__name__}"
        )
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format(error, source)) from None


def load_spec(path: Path | str) -> StudySpec:
    """Read and validate a YAML spec file (malformed YAML is reported with its line)."""
    try:
        data = read_yaml(Path(path))
    except ConfigError as error:
        raise SpecError(str(error)) from None
    return validate_spec(data, source=str(path))
