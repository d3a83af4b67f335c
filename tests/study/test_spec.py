"""Study spec validation: good specs load, every bad one is one SpecError naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.space import build_sampler, distributions, grid_space
from study.spec import SpecError, StudySpec, load_spec, validate_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _spec(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "unit",
        "base": {"task": "digits", "hidden_size": 8, "epochs": 2},
        "search": {
            "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5},
            "zoneout_hidden": {"type": "float", "low": 0.0, "high": 0.3},
        },
    }
    data.update(overrides)
    return data


def test_a_good_spec_validates_with_defaults() -> None:
    spec = validate_spec(_spec())
    assert spec.sampler.name == "tpe"
    assert spec.scheduler.name == "asha"
    assert spec.metric == "error"
    assert spec.max_epochs == 2
    assert set(distributions(spec)) == {"zoneout_cell", "zoneout_hidden"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"n_trails": 3}, "unknown key 'n_trails'; did you mean 'n_trials'?"),
        ({"name": "../escape"}, "study name '../escape'"),
        ({"name": "a/b"}, "study name 'a/b'"),
        (
            {"search": {"zoneout_cell": {"type": "float", "low": 0.0, "high": 1.5}}},
            "zoneout_cell is a rate; its range must lie in [0, 1]",
        ),
        (
            {"search": {"zoneout_cell": {"type": "float", "low": 0.4, "high": 0.1}}},
            "empty or inverted range",
        ),
        (
            {"search": {"zoneout_cell": {"type": "float", "low": 0.2, "high": 0.2}}},
            "empty or inverted range",
        ),
        (
            {"search": {"zoneout_cel": {"type": "float", "low": 0.0, "high": 0.5}}},
            "did you mean 'zoneout_cell'?",
        ),
        (
            {"search": {"learning_rate": {"type": "float", "low": 0.0, "high": 0.1, "log": True}}},
            "a log range needs low > 0",
        ),
        (
            {"search": {"zoneout_cell": {"type": "normal", "low": 0.0, "high": 0.5}}},
            "type must be one of 'float', 'int', 'categorical'",
        ),
        ({"sampler": {"name": "grid"}}, "sampler 'grid' needs a finite grid"),
        ({"sampler": {"name": "bayes"}}, "sampler.name"),
        ({"resources": {"cpu": 0}}, "resources.cpu"),
        ({"resources": {"gpu": 1.5}}, "more than one GPU per trial must be a whole number"),
        ({"base": {"task": "imagenet"}}, "base.task"),
        ({"base": {"task": "digits", "zoneout_cell": 2.0}}, "base.zoneout_cell"),
        ({"base": {"task": "digits", "hiden_size": 8}}, "did you mean 'hidden_size'?"),
        ({"n_trials": 0}, "n_trials"),
        (
            {"search": {"hidden_size": {"type": "int", "low": -4, "high": 8}}},
            "search: hidden_size=-4 is not a valid config",
        ),
        ({"base": {"task": "digits", "device": "cuda"}}, "resources.gpu is 0"),
    ],
)
def test_bad_specs_name_the_field(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as raised:
        validate_spec(_spec(**change))
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_grid_sampler_with_steps_enumerates_the_grid() -> None:
    spec = validate_spec(
        _spec(
            sampler={"name": "grid"},
            search={
                "zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.25},
                "cell": {"type": "categorical", "choices": ["lstm"]},
            },
        )
    )
    assert grid_space(spec) == {"zoneout_cell": [0.0, 0.25, 0.5], "cell": ["lstm"]}
    assert spec.grid_size() == 3
    assert type(build_sampler(spec)).__name__ == "GridSampler"


@pytest.mark.parametrize("name", ["tpe", "gp", "cmaes", "qmc", "random"])
def test_every_sampler_builds(name: str) -> None:
    spec = validate_spec(_spec(sampler={"name": name, "seed": 3}))
    assert build_sampler(spec) is not None


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsearch:\n  zoneout_cell: {type: float, low: 0\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"line \d+"):
        load_spec(path)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "path",
    sorted([*EXAMPLES.glob("*.yaml"), *(EXAMPLES / "paper" / "studies").glob("*.yaml")]),
    ids=lambda p: p.name,
)
def test_example_specs_validate(path: Path) -> None:
    spec = load_spec(path)
    assert isinstance(spec, StudySpec)
    if "paper" in path.parts:  # cluster specs: GPUs per trial, and they say they were not run
        assert spec.resources.gpu > 0 and spec.base.device == "cuda"
        assert "NOT RUN" in path.read_text(encoding="utf-8")


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 3), max_size=3),
)
_params = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["float", "int", "categorical", "other"]),
        "low": _values,
        "high": _values,
        "log": _values,
        "step": _values,
        "choices": _values,
    },
)
_specs = st.fixed_dictionaries(
    {"name": st.one_of(st.text(max_size=12), st.just("ok"))},
    optional={
        "base": st.fixed_dictionaries(
            {},
            optional={
                "task": st.sampled_from(["digits", "ptb-char", "ptb-word", "x"]),
                "zoneout_cell": _values,
                "epochs": _values,
                "hidden_size": _values,
            },
        ),
        "search": st.dictionaries(
            st.sampled_from(["zoneout_cell", "zoneout_hidden", "hidden_size", "nope", "cell"]),
            _params,
            max_size=3,
        ),
        "sampler": st.fixed_dictionaries(
            {}, optional={"name": st.sampled_from(["tpe", "grid", "zzz"]), "seed": _values}
        ),
        "n_trials": _values,
        "repeats": _values,
        "resources": st.fixed_dictionaries({}, optional={"cpu": _values, "gpu": _values}),
        "unknown": _values,
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_specs)
def test_validator_accepts_or_raises_spec_error_only(data: dict[str, Any]) -> None:
    try:
        spec = validate_spec(data)
    except SpecError as error:
        assert str(error).startswith("spec: ")
        return
    # Whatever was accepted is runnable: its space and sampler build.
    distributions(spec)
    build_sampler(spec)
