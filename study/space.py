"""The search space as Optuna distributions, and sampler construction from a spec.

This module sits below study/spec.py (which validates sampler options by building the sampler):
it reads a spec through the small protocols below and never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

__all__ = ["build_sampler", "distributions", "grid_space"]


class _Sampler(Protocol):
    name: str
    seed: int | None
    options: dict[str, Any]


class _Spec(Protocol):
    """What the search space and the sampler need of a study.spec.StudySpec."""

    @property
    def search(self) -> Mapping[str, Any]: ...  # name -> FloatParam | IntParam | CategoricalParam

    @property
    def sampler(self) -> _Sampler: ...

    @property
    def n_trials(self) -> int: ...


def distributions(spec: _Spec) -> dict[str, BaseDistribution]:
    """One Optuna distribution per searched config field, in the spec's order."""
    result: dict[str, BaseDistribution] = {}
    for name, param in spec.search.items():
        if param.type == "float":
            result[name] = FloatDistribution(param.low, param.high, log=param.log, step=param.step)
        elif param.type == "int":
            result[name] = IntDistribution(param.low, param.high, log=param.log, step=param.step)
        else:
            result[name] = CategoricalDistribution(param.choices)
    return result


def grid_space(spec: _Spec) -> dict[str, list[Any]]:
    space: dict[str, list[Any]] = {}
    for name, param in spec.search.items():
        values = param.grid()
        assert values is not None  # the spec validator refuses non-grid spaces for 'grid'
        space[name] = values
    return space


def build_sampler(spec: _Spec, *, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler the spec names, seeded; ``options`` pass through to its constructor.

    ``seed_offset`` shifts the seed for drivers that join a study already under way: the same
    seed would replay the same suggestions (random start-up trials, random search).
    """
    options = dict(spec.sampler.options)
    seed = spec.sampler.seed
    if seed is not None and seed_offset:
        seed = (seed + seed_offset) % 2**32
    name = spec.sampler.name
    if name == "tpe":
        # Trials run concurrently: 'constant_liar' keeps parallel suggestions apart.
        options.setdefault("constant_liar", True)
        options.setdefault("n_startup_trials", min(10, max(2, spec.n_trials // 4)))
        return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **options)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **options)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, **options)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **options)
    from study.plan import PlanSampler, StudyPlan

    if options:
        raise TypeError(f"the grid sampler takes no options (got {', '.join(sorted(options))})")
    return PlanSampler(StudyPlan.from_spec(spec, sampler="grid", points=spec.points))
