"""The search space as Optuna distributions, and sampler construction from a spec."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from study.spec import CategoricalParam, FloatParam, IntParam, StudySpec

__all__ = ["build_sampler", "distributions", "grid_space"]


def distributions(spec: StudySpec) -> dict[str, BaseDistribution]:
    """One Optuna distribution per searched config field, in the spec's order."""
    result: dict[str, BaseDistribution] = {}
    for name, param in spec.search.items():
        if isinstance(param, FloatParam):
            result[name] = FloatDistribution(param.low, param.high, log=param.log, step=param.step)
        elif isinstance(param, IntParam):
            result[name] = IntDistribution(param.low, param.high, log=param.log, step=param.step)
        else:
            assert isinstance(param, CategoricalParam)
            result[name] = CategoricalDistribution(param.choices)
    return result


def grid_space(spec: StudySpec) -> dict[str, list[Any]]:
    space: dict[str, list[Any]] = {}
    for name, param in spec.search.items():
        values = param.grid()
        assert values is not None  # the spec validator refuses non-grid spaces for 'grid'
        space[name] = values
    return space


def build_sampler(spec: StudySpec, *, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
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
    return optuna.samplers.GridSampler(grid_space(spec), seed=seed, **options)
