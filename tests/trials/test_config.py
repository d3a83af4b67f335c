"""TrialConfig: YAML round trip, readable errors, ``--set`` overrides, the paper configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trials.config import (
    ConfigError,
    TrialConfig,
    apply_overrides,
    dump_config,
    load_config,
    read_yaml,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "paper"
PAPER_CONFIGS = sorted(EXAMPLES.glob("*.yaml"))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_round_trip_gives_an_equal_config(tmp_path: Path) -> None:
    config = TrialConfig(
        task="ptb-word",
        embedding_size=64,
        hidden_size=64,
        tie_weights=True,
        num_layers=2,
        zoneout_cell=0.25,
        zoneout_hidden=0.025,
        dropout=0.5,
        optimizer="sgd",
        learning_rate=1.0,
        clip_norm=None,
        lr_schedule="step",
        lr_decay=0.87,
        data_dir=tmp_path / "ptb",
        train_tokens=1000,
        seed=7,
    )
    path = tmp_path / "config.yaml"
    dump_config(config, path)
    loaded = load_config(path)
    assert loaded == config
    assert loaded.data_dir == tmp_path / "ptb"  # a Path again, not a string
    assert loaded.clip_norm is None


def test_provenance_block_is_written_and_ignored_on_load(tmp_path: Path) -> None:
    config = TrialConfig(task="digits", hidden_size=16, zoneout_cell=0.3)
    path = tmp_path / "best.yaml"
    dump_config(config, path, provenance={"study": "s1", "trial": 4, "valid_metric": 0.1})
    raw = yaml.safe_load(path.read_text())
    assert raw["_study"]["trial"] == 4
    assert load_config(path) == config


def test_unknown_key_names_the_key_and_the_nearest_valid_name(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "task: digits\nzonout_cell: 0.3\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "zonout_cell" in message
    assert "'zoneout_cell'" in message
    assert str(path) in message
    assert "\n" not in message


def test_unknown_key_without_close_match_still_names_it(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "task: digits\nqqqqqqq: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'qqqqqqq'") as caught:
        load_config(path)
    assert "did you mean" not in str(caught.value)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml", "task: digits\nhidden_size: 16\nzoneout_cell: [0.5\nseed: 1\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "malformed YAML" in message
    assert "line 4" in message  # the unclosed list is noticed on the following line
    assert "\n" not in message


def test_malformed_yaml_bad_indentation_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "task: digits\n  hidden_size: 16\n")
    with pytest.raises(ConfigError, match=r"line 2"):
        load_config(path)


@pytest.mark.parametrize(
    "key",
    ["zoneout_cell", "zoneout_hidden", "recurrent_dropout", "dropout"],
    ids=["z_c", "z_h", "rec_drop", "drop"],
)
@pytest.mark.parametrize("value", [1.5, -0.1], ids=["above", "below"])
def test_rates_outside_unit_interval_are_rejected(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key):
        load_config_from_dict({"task": "digits", key: value})


@pytest.mark.parametrize("key", ["zoneout_cell", "zoneout_hidden"], ids=["z_c", "z_h"])
def test_rates_at_the_bounds_are_allowed(key: str) -> None:
    assert getattr(TrialConfig(task="digits", **{key: 1.0}), key) == 1.0
    assert getattr(TrialConfig(task="digits", **{key: 0.0}), key) == 0.0


def load_config_from_dict(data: dict[str, object]) -> TrialConfig:
    from trials.config import validate_config

    return validate_config(data)


def test_rate_error_from_a_file_names_the_key_and_the_bound(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "task: digits\nzoneout_cell: 1.5\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "zoneout_cell" in message and "1" in message and "\n" not in message


def test_word_ptb_needs_an_embedding() -> None:
    with pytest.raises(ConfigError, match="embedding_size"):
        load_config_from_dict({"task": "ptb-word"})
    assert TrialConfig(task="ptb-word", embedding_size=32).embedding_size == 32


def test_text_char_needs_a_path_but_validation_does_not_open_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="text_path"):
        load_config_from_dict({"task": "text-char"})
    missing = tmp_path / "no-such-text8"
    assert TrialConfig(task="text-char", text_path=missing).text_path == missing


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"tie_weights": True}, "tie_weights"),
        ({"tie_weights": True, "embedding_size": 8, "hidden_size": 16}, "tie_weights"),
        ({"cell": "gru", "zoneout_cell": 0.2}, "zoneout_cell"),
        ({"cell": "rnn", "recurrent_batch_norm": True}, "recurrent_batch_norm"),
        ({"task": "cifar"}, "task"),
        ({"hidden_size": 0}, "hidden_size"),
    ],
    ids=["tie-no-embedding", "tie-size", "gru-cell-rate", "rnn-bn", "task", "hidden"],
)
def test_invalid_combinations_are_rejected(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config_from_dict({"task": "ptb-char", **values})


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"zoneout_shared_mask": True, "zoneout_cell": 0.2, "zoneout_hidden": 0.1}, "shared"),
        ({"cell": "gru", "zoneout_shared_mask": True}, "LSTMs only"),
        ({"init_range": 0.04, "recurrent_batch_norm": True}, "init_range"),
        ({"task": "digits", "loss_reduction": "sum_over_steps"}, "language tasks"),
        ({"lr_constant_epochs": 14}, "lr_constant_epochs"),
        ({"eval_streams": 0}, "eval_streams"),
        ({"optimizer": "adagrad"}, "optimizer"),
    ],
    ids=["shared-rates", "shared-gru", "init-bn", "sum-digits", "constant-none", "streams", "opt"],
)
def test_invalid_paper_setup_fields_are_rejected(values: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config_from_dict({"task": "ptb-char", **values})


def test_task_is_required_and_named(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "hidden_size: 16\n")
    with pytest.raises(ConfigError, match=r"task: Field required"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("task: digits\nhidden_size: 8\nseed: 1\nhidden_size: 16\n", "hidden_size", 4, 2),
        ("base:\n  task: digits\n  epochs: 1\n  task: pmnist\nname: x\n", "task", 4, 2),
    ],
    ids=["top-level", "nested"],
)
def test_duplicate_keys_are_refused_naming_key_and_line(
    tmp_path: Path, text: str, key: str, line: int, first: int
) -> None:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    message = str(caught.value)
    assert f"duplicate key {key!r}" in message
    assert f"line {line}" in message and f"first given on line {first}" in message
    assert str(path) in message and "\n" not in message


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "d: &d {x: 1, y: 2}\ne:\n  <<: *d\n  x: 3\n")
    assert read_yaml(path) == {"d": {"x": 1, "y": 2}, "e": {"x": 3, "y": 2}}


def test_set_overrides_parse_ints_floats_bools_and_null(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "task: digits\nhidden_size: 16\n")
    config = load_config(
        path,
        [
            "hidden_size=24",
            "zoneout_cell=0.5",
            "learning_rate=1e-3",
            "recurrent_batch_norm=true",
            "clip_norm=null",
            "optimizer=sgd",
            " seed = 3",
        ],
    )
    assert config.hidden_size == 24 and isinstance(config.hidden_size, int)
    assert config.zoneout_cell == 0.5
    assert config.learning_rate == pytest.approx(1e-3)
    assert config.recurrent_batch_norm is True
    assert config.clip_norm is None
    assert config.optimizer == "sgd"
    assert config.seed == 3


def test_apply_overrides_returns_typed_values_and_a_new_dict() -> None:
    data = {"hidden_size": 8}
    merged = apply_overrides(data, ["hidden_size=32", "tie_weights=false", "zoneout_hidden=.05"])
    assert merged == {"hidden_size": 32, "tie_weights": False, "zoneout_hidden": 0.05}
    assert data == {"hidden_size": 8}


def test_set_override_errors() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["zoneout_cell"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["=0.5"])


def test_set_override_with_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "task: digits\n")
    with pytest.raises(ConfigError, match="did you mean 'hidden_size'"):
        load_config(path, ["hiden_size=4"])


@pytest.mark.parametrize(("text", "fragment"), [("", "empty"), ("- 1\n- 2\n", "mapping")])
def test_empty_or_non_mapping_file(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_config(write(tmp_path / "c.yaml", text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_there_are_paper_configs() -> None:
    names = {path.name for path in PAPER_CONFIGS}
    assert {
        "char-ptb-zoneout.yaml",
        "char-ptb-unregularized.yaml",
        "word-ptb-zoneout.yaml",
        "text8-zoneout.yaml",
        "pmnist-zoneout.yaml",
        "pmnist-zoneout-batchnorm.yaml",
    } <= names


# ids avoid the words the quick test selection filters on (-k "not zoneout and not data").
@pytest.mark.parametrize(
    "path", PAPER_CONFIGS, ids=[f"paper{index}" for index in range(len(PAPER_CONFIGS))]
)
def test_paper_config_validates_and_states_the_paper_numbers(path: Path) -> None:
    config = load_config(path)
    header = path.read_text(encoding="utf-8").splitlines()
    comments = " ".join(line for line in header if line.startswith("#"))
    assert "Reported" in comments, f"{path.name} has no comment stating the paper's numbers"
    assert config.cell == "lstm"
    if path.name.startswith("char-ptb"):
        assert (config.task, config.hidden_size, config.bptt) == ("ptb-char", 1000, 100)
        assert config.embedding_size is None and config.clip_norm == 1.0
        if "unregularized" in path.name:
            assert (config.zoneout_cell, config.zoneout_hidden) == (0.0, 0.0)
            assert "1.466" in comments and "1.356" in comments
        else:
            assert (config.zoneout_cell, config.zoneout_hidden) == (0.5, 0.05)
            assert "1.362" in comments and "1.27" in comments
    elif path.name.startswith("word-ptb"):
        assert (config.task, config.num_layers, config.hidden_size) == ("ptb-word", 2, 1500)
        assert (config.zoneout_cell, config.zoneout_hidden) == (0.25, 0.025)
        assert config.embedding_size == 1500 and config.optimizer == "sgd"
        assert config.lr_schedule != "none"
        assert "81.4" in comments and "77.4" in comments
    elif path.name.startswith("text8"):
        assert config.task == "text-char" and config.hidden_size == 2000
        assert config.text_path is not None
        assert "1.331" in comments and "1.336" in comments and "text_path" in comments
    elif path.name.startswith("pmnist"):
        assert config.task == "pmnist" and config.hidden_size == 100
        assert (config.zoneout_cell, config.zoneout_hidden) == (0.15, 0.15)
        if "batchnorm" in path.name:
            assert config.recurrent_batch_norm and ".041" in comments
        else:
            assert not config.recurrent_batch_norm
            assert ".063" in comments and ".069" in comments
