"""Study spec validation: good specs load, every bad one is one SpecError naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
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
        ({"resources": {"gpu": 1.5}}, "a trial computes on one device (cuda:0)"),
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
    # study.plan.PlanSampler: a grid's coverage is read from the stored trials
    assert type(build_sampler(spec)).__name__ == "PlanSampler"


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


# ------------------------------------------------------------------ paths, resolved once
def _text_spec(**overrides: Any) -> dict[str, Any]:
    data = _spec(base={"task": "text-char", "text_path": "corpus.txt", "hidden_size": 8})
    data.update(overrides)
    return data


def test_relative_paths_in_a_spec_file_are_taken_from_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_dir, elsewhere = tmp_path / "A", tmp_path / "B"
    spec_dir.mkdir()
    elsewhere.mkdir()
    path = spec_dir / "spec.yaml"
    path.write_text(
        yaml.safe_dump(
            _text_spec(
                base={"task": "text-char", "text_path": "corpus.txt", "data_dir": "../data"},
                checkpoint_path="runs",
            )
        ),
        encoding="utf-8",
    )
    monkeypatch.chdir(spec_dir)
    here = load_spec(path)
    assert here.base.text_path == spec_dir / "corpus.txt" and here.base.text_path.is_absolute()
    assert here.base.data_dir == tmp_path / "data"  # '..' normalised away
    assert here.checkpoint_path == str(spec_dir / "runs")
    # Another working directory, the spec named by a relative path: the same absolute paths.
    monkeypatch.chdir(elsewhere)
    there = load_spec(Path("..") / "A" / "spec.yaml")
    assert there.base == here.base and there.checkpoint_path == here.checkpoint_path
    # Every trial config (and export) is built from the base: it travels absolute.
    assert there.base.to_dict()["text_path"] == str(spec_dir / "corpus.txt")


def test_a_spec_dict_takes_relative_paths_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = validate_spec(_text_spec(checkpoint_path="runs"))
    assert spec.base.text_path == tmp_path / "corpus.txt"
    assert spec.checkpoint_path == str(tmp_path / "runs")
    given = validate_spec(_text_spec(), base_dir=tmp_path / "X")
    assert given.base.text_path == tmp_path / "X" / "corpus.txt"


def test_home_is_expanded_and_uris_and_storage_are_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    spec = validate_spec(
        _text_spec(
            base={"task": "text-char", "text_path": "~/text8"},
            checkpoint_path="s3://bucket/runs",
            storage="sqlite:///relative.db",
        )
    )
    assert spec.base.text_path == tmp_path / "home" / "text8"
    assert spec.checkpoint_path == "s3://bucket/runs"
    assert spec.storage == "sqlite:///relative.db"
    home = validate_spec(_text_spec(checkpoint_path="~/runs"))
    assert home.checkpoint_path == str(tmp_path / "home" / "runs")


def test_the_stored_snapshot_validates_back_to_the_same_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(_text_spec(checkpoint_path="runs")), encoding="utf-8")
    spec = load_spec(path)
    monkeypatch.chdir("/")  # the snapshot is read back from anywhere (report, export)
    assert validate_spec(spec.model_dump(mode="json")) == spec


# ------------------------------------------------------------------ values the run can use
SEED_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        ({"base": {"task": "digits", "seed": SEED_MAX}}, True),
        ({"base": {"task": "digits", "seed": SEED_MAX + 1}}, False),
        ({"base": {"task": "digits", "seed": 2**64}}, False),
        ({"base": {"task": "digits", "seed": 0}}, True),
        ({"base": {"task": "digits", "seed": -1}}, False),
        ({"base": {"task": "digits", "data_seed": SEED_MAX}}, True),
        ({"base": {"task": "digits", "data_seed": SEED_MAX + 1}}, False),
        ({"base": {"task": "digits", "data_seed": -1}}, False),
        ({"base": {"task": "pmnist", "permutation_seed": SEED_MAX}}, True),
        ({"base": {"task": "pmnist", "permutation_seed": SEED_MAX + 1}}, False),
        ({"base": {"task": "pmnist", "permutation_seed": -1}}, False),
        # repeats: k runs seeds base.seed .. base.seed + k - 1; the last one must be a seed.
        ({"base": {"task": "digits", "seed": SEED_MAX - 2}, "repeats": 3}, True),
        ({"base": {"task": "digits", "seed": SEED_MAX - 1}, "repeats": 3}, False),
        ({"sampler": {"seed": 2**32 - 1}}, True),
        ({"sampler": {"seed": 2**32}}, False),
        ({"sampler": {"seed": -1}}, False),
        ({"sampler": {"seed": None}}, True),
        ({"base": {"task": "digits", "epochs": 2**31 - 1}}, True),
        ({"base": {"task": "digits", "epochs": 2**31}}, False),
    ],
    ids=lambda value: str(value) if isinstance(value, bool) else None,
)
def test_seed_and_epoch_bounds(change: dict[str, Any], accepted: bool) -> None:
    field = next(iter(change)) if "repeats" not in change else "base.seed"
    if field == "base":
        field = "base." + next(key for key in change["base"] if key != "task")
    elif field == "sampler":
        field = "sampler.seed"
    if accepted:
        validate_spec(_spec(**change))
        return
    with pytest.raises(SpecError) as raised:
        validate_spec(_spec(**change))
    message = str(raised.value)
    assert f"{field}: " in message and "\n" not in message, message
    if "seed" in field:
        assert ("2**63 - 1" if field != "sampler.seed" else "2**32 - 1") in message, message
        assert "9223372036854775807" in message or "4294967295" in message


@pytest.mark.parametrize(
    ("resources", "accepted"),
    [
        ({"cpu": 0.0001}, 0.0001),
        ({"cpu": 0.00009}, None),
        ({"cpu": 0.00001}, None),
        ({"cpu": 0.00015}, None),  # a finer step: Ray would truncate it
        ({"cpu": 0.3}, 0.3),  # 0.3 * 10000 is not an integer in binary; still accepted
        ({"cpu": 2.5}, 2.5),
        ({"cpu": 1e-4 * 3}, 0.0003),
        ({"cpu": float("inf")}, None),
        ({"gpu": 0.0001}, 0.0001),
        ({"gpu": 0.00001}, None),
        ({"gpu": 0.25}, 0.25),
    ],
)
def test_resources_are_multiples_of_rays_precision(
    resources: dict[str, float], accepted: float | None
) -> None:
    (name, value) = next(iter(resources.items()))
    base = {"task": "digits", "device": "auto"}
    if accepted is not None:
        spec = validate_spec(_spec(base=base, resources=resources))
        assert getattr(spec.resources, name) == accepted  # rounded onto Ray's grid exactly
        return
    with pytest.raises(SpecError) as raised:
        validate_spec(_spec(base=base, resources=resources))
    message = str(raised.value)
    assert f"resources.{name}: " in message and "\n" not in message, message
    if value != float("inf"):
        assert "0.0001" in message and "precision" in message, message


@pytest.mark.parametrize(
    ("bounds", "accepted"),
    [
        ({"low": 1, "high": 2**53}, True),
        ({"low": 1, "high": 2**53 + 1}, False),
        ({"low": -(2**53) - 1, "high": 1}, False),
        ({"low": 1, "high": 10**400}, False),
    ],
)
def test_integer_search_bounds_fit_optunas_float_column(
    bounds: dict[str, int], accepted: bool
) -> None:
    data = _spec(search={"train_examples": {"type": "int", **bounds}})
    if accepted:
        validate_spec(data)
        return
    with pytest.raises(SpecError) as raised:
        validate_spec(data)
    message = str(raised.value)
    assert "search.train_examples." in message and "2**53" in message and len(message) < 300


@pytest.mark.parametrize(
    ("search", "points", "message"),
    [
        ({"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.3}}, [],
         "step 0.3 does not divide the range 0..0.5: use high 0.3 or 0.6"),
        ({"hidden_size": {"type": "int", "low": 8, "high": 30, "step": 8}}, [],
         "step 8 does not divide the range 8..30: use high 24 or 32"),
        ({"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
         [{"zoneout_cell": 0.1}, {"zoneout_cell": 0.1}], "points[1]: the same point as points[0]"),
        ({"zoneout_cell": {"type": "float", "low": 0.0, "high": 0.5}},
         [{"zoneout_cell": "0.1"}], "points[0].zoneout_cell: must be a number, got the text '0.1'"),
        # One configuration however it is spelled: 8 and 8.0 hidden units are one point.
        ({"hidden_size": {"type": "int", "low": 8, "high": 16}},
         [{"hidden_size": 8}, {"hidden_size": 8.0}], "points[1]: the same point as points[0]"),
    ],
)  # fmt: skip
def test_a_grid_or_point_that_optuna_would_reshape_is_refused(
    search: dict[str, Any], points: list[dict[str, Any]], message: str
) -> None:
    data = {"name": "x", "base": {"task": "digits"}, "search": search, "points": points}
    with pytest.raises(SpecError) as refused:
        validate_spec(data)
    assert message in str(refused.value)


# ------------------------------------------------------------------ resources for a cluster
@pytest.mark.parametrize("gpu", [2, 1.5, 8])
def test_more_than_one_gpu_per_trial_is_refused(gpu: float) -> None:
    # trials.train computes on one device: a second GPU per trial would sit idle.
    with pytest.raises(SpecError) as raised:
        validate_spec(_spec(base={"task": "digits", "device": "cuda"}, resources={"gpu": gpu}))
    message = str(raised.value)
    assert message.startswith("spec: resources.gpu: ") and "\n" not in message, message
    assert "one device (cuda:0)" in message and "max_concurrent_trials" in message, message


@pytest.mark.parametrize("gpu", [1, 0.5])
def test_one_gpu_or_a_share_of_one_is_accepted(gpu: float) -> None:
    spec = validate_spec(_spec(base={"task": "digits", "device": "cuda"}, resources={"gpu": gpu}))
    assert spec.resources.gpu == gpu


@pytest.mark.parametrize(
    ("given", "accepted"),
    [
        ("absent", 600.0),  # the default: ten minutes
        (0, 0.0),  # refuse at once
        (30, 30.0),
        (None, None),  # no limit (an autoscaling cluster)
        ("forever", None),
        ("Forever", None),
        (-1, "greater than or equal to 0"),
        ("inf", "a number of seconds, or null / 'forever'"),
        ("soon", "resources.wait_for_nodes_s"),
        (True, "resources.wait_for_nodes_s"),
    ],
)
def test_wait_for_nodes_s(given: Any, accepted: Any) -> None:
    resources = {} if given == "absent" else {"wait_for_nodes_s": given}
    if accepted is None or isinstance(accepted, float):
        spec = validate_spec(_spec(resources=resources))
        assert spec.resources.wait_for_nodes_s == accepted
        # The stored snapshot reads back the same (a null stays no limit).
        again = validate_spec(spec.model_dump(mode="json"))
        assert again.resources.wait_for_nodes_s == accepted
        return
    with pytest.raises(SpecError) as raised:
        validate_spec(_spec(resources=resources))
    message = str(raised.value)
    assert "resources.wait_for_nodes_s" in message and accepted in message, message
    assert "\n" not in message


def test_wait_for_nodes_s_is_described_for_users() -> None:
    from study.spec import ResourcesSpec

    description = ResourcesSpec.model_fields["wait_for_nodes_s"].description or ""
    for words in ("null or 'forever'", "0 refuses at once", "autoscaler", "cannot grow"):
        assert words in description, words
