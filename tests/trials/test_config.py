"""TrialConfig: YAML round trip, readable errors, ``--set`` overrides, the paper configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from trials.config import (
    ConfigError,
    TrialConfig,
    apply_overrides,
    dump_config,
    load_config,
    read_yaml,
    resolve_paths,
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


def test_an_integer_yaml_cannot_convert_is_a_config_error(tmp_path: Path) -> None:
    # Python refuses int() of more than 4300 digits with a ValueError; the CLI must still see a
    # user error (exit 2, one line), not a bug.
    path = write(tmp_path / "c.yaml", "task: digits\nhidden_size: " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match="cannot convert") as caught:
        read_yaml(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


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


# The paper's set-ups, written from ../shared/paper-facts.md (Krueger et al. 2017; Zaremba et al.
# 2014 for the word-PTB base model): every field the papers fix, and the numbers each config
# must quote as its target. Fields the papers leave open are explained in each file instead.
CHAR_PTB = {
    "task": "ptb-char",
    "num_layers": 1,
    "hidden_size": 1000,
    "embedding_size": None,  # one-hot characters
    "bptt": 100,
    "batch_size": 32,
    "optimizer": "adam",
    "clip_norm": 1.0,
    "lr_schedule": "none",
    "eval_streams": 1,
    "dropout": 0.0,
    "recurrent_batch_norm": False,
}
ZAREMBA_LARGE = {
    "task": "ptb-word",
    "cell": "lstm",
    "num_layers": 2,
    "hidden_size": 1500,
    "init_range": 0.04,
    "dropout": 0.65,
    "epochs": 55,
    "optimizer": "sgd",
    "learning_rate": 1.0,
    "lr_schedule": "exponential",
    "lr_decay": 1 / 1.15,
    "lr_constant_epochs": 14,
    "clip_norm": 10.0,
    "loss_reduction": "sum_over_steps",
    "bptt": 35,
    "batch_size": 20,
    "eval_streams": 1,
    "recurrent_dropout": 0.0,
}
TEXT8 = {
    "task": "text-char",
    "cell": "lstm",
    "num_layers": 1,
    "hidden_size": 2000,
    "embedding_size": None,
    "batch_size": 128,
    "learning_rate": 0.001,
    "bptt": 180,
    "eval_streams": 1,
}
PMNIST = {
    "task": "pmnist",
    "cell": "lstm",
    "optimizer": "rmsprop",
    "learning_rate": 0.001,
    "epochs": 150,
    "dropout": 0.0,
}
NO_ZONEOUT = {"zoneout_cell": 0.0, "zoneout_hidden": 0.0}
PAPER_ROWS: dict[str, tuple[dict[str, object], tuple[str, ...]]] = {
    "char-ptb-unregularized.yaml": (
        {**CHAR_PTB, **NO_ZONEOUT, "cell": "lstm", "learning_rate": 0.002, "recurrent_dropout": 0},
        ("1.466", "1.356"),
    ),
    "char-ptb-zoneout.yaml": (
        {**CHAR_PTB, "cell": "lstm", "learning_rate": 0.002, "recurrent_dropout": 0.0}
        | {"zoneout_cell": 0.5, "zoneout_hidden": 0.05, "zoneout_shared_mask": False},
        ("1.362", "1.27"),
    ),
    "char-ptb-recurrent-dropout.yaml": (
        {**CHAR_PTB, **NO_ZONEOUT, "cell": "lstm", "learning_rate": 0.002}
        | {"recurrent_dropout": 0.7},
        ("1.358", "1.321"),
    ),
    "char-ptb-gru-unregularized.yaml": (
        {**CHAR_PTB, **NO_ZONEOUT, "cell": "gru", "learning_rate": 0.002},
        ("1.53",),
    ),
    "char-ptb-gru-zoneout.yaml": (
        {**CHAR_PTB, "cell": "gru", "learning_rate": 0.002, "zoneout_cell": 0.0},
        ("1.41", "0.05-0.25"),
    ),
    "char-ptb-rnn-unregularized.yaml": (
        {**CHAR_PTB, **NO_ZONEOUT, "cell": "rnn", "learning_rate": 0.0003},
        ("1.67",),
    ),
    "char-ptb-rnn-zoneout.yaml": (
        {**CHAR_PTB, "cell": "rnn", "learning_rate": 0.0003, "zoneout_cell": 0.0},
        ("1.52", "0.05-0.25"),
    ),
    "word-ptb-zaremba-large.yaml": ({**ZAREMBA_LARGE, **NO_ZONEOUT}, ("82.2", "78.4")),
    "word-ptb-zoneout.yaml": (
        {**ZAREMBA_LARGE, "zoneout_cell": 0.25, "zoneout_hidden": 0.025},
        ("81.4", "77.4"),
    ),
    "text8-unregularized.yaml": (
        {**TEXT8, **NO_ZONEOUT, "recurrent_dropout": 0.0},
        ("1.396", "1.408"),
    ),
    "text8-zoneout.yaml": (
        {**TEXT8, "zoneout_cell": 0.5, "zoneout_hidden": 0.05, "recurrent_dropout": 0.0},
        ("1.331", "1.336"),
    ),
    "text8-recurrent-dropout.yaml": ({**TEXT8, **NO_ZONEOUT}, ("1.409", "1.358")),
    "pmnist-unregularized.yaml": (
        {**PMNIST, **NO_ZONEOUT, "recurrent_dropout": 0.0, "recurrent_batch_norm": False},
        (".092", ".102"),
    ),
    "pmnist-recurrent-dropout.yaml": (
        {**PMNIST, **NO_ZONEOUT, "recurrent_batch_norm": False},
        (".083", ".075", "0.15", "0.5"),
    ),
    "pmnist-zoneout.yaml": (
        {**PMNIST, "zoneout_cell": 0.15, "zoneout_hidden": 0.15, "zoneout_shared_mask": True}
        | {"recurrent_dropout": 0.0, "recurrent_batch_norm": False},
        (".063", ".069"),
    ),
    "pmnist-batchnorm.yaml": (
        {**PMNIST, **NO_ZONEOUT, "recurrent_dropout": 0.0, "recurrent_batch_norm": True},
        (".046",),
    ),
    "pmnist-zoneout-batchnorm.yaml": (
        {**PMNIST, "zoneout_cell": 0.15, "zoneout_hidden": 0.15, "zoneout_shared_mask": True}
        | {"recurrent_dropout": 0.0, "recurrent_batch_norm": True},
        (".045", ".041"),
    ),
}


def test_every_paper_config_has_a_row_in_the_table_and_back() -> None:
    assert {path.name for path in PAPER_CONFIGS} == set(PAPER_ROWS)


# ids avoid the words the quick test selection filters on (-k "not zoneout and not data").
@pytest.mark.parametrize("name", sorted(PAPER_ROWS), ids=lambda name: name.replace("zoneout", "z"))
def test_paper_config_matches_the_papers_set_up(name: str) -> None:
    path = EXAMPLES / name
    config = load_config(path)
    expected, targets = PAPER_ROWS[name]
    for field, value in expected.items():
        actual = getattr(config, field)
        if isinstance(value, float):
            assert actual == pytest.approx(value, rel=1e-12), f"{name}: {field}"
        else:
            assert actual == value, f"{name}: {field} is {actual!r}, the paper's is {value!r}"
    comments = " ".join(
        line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")
    )
    assert "Target (" in comments, f"{name} does not say which number it targets"
    for number in targets:
        assert number in comments, f"{name} does not quote the paper's {number}"
    assert "Open choices" in comments, f"{name} does not explain the fields the paper leaves open"


# ------------------------------------------------------------------ paths, resolved once
def test_relative_paths_in_a_config_file_are_taken_from_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir, elsewhere = tmp_path / "A", tmp_path / "B"
    config_dir.mkdir()
    elsewhere.mkdir()
    path = write(
        config_dir / "c.yaml", "task: text-char\ntext_path: corpus.txt\ndata_dir: ../data\n"
    )
    monkeypatch.chdir(config_dir)
    here = load_config(path)
    assert here.text_path == config_dir / "corpus.txt" and here.text_path.is_absolute()
    assert here.data_dir == tmp_path / "data"
    monkeypatch.chdir(elsewhere)
    there = load_config(Path("..") / "A" / "c.yaml")
    assert there == here
    # Written back (train's checkpoint, an export), the paths stay absolute.
    dump_config(there, elsewhere / "copy.yaml")
    assert load_config(elsewhere / "copy.yaml") == here


def test_a_set_path_is_taken_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "A"
    config_dir.mkdir()
    path = write(config_dir / "c.yaml", "task: text-char\ntext_path: corpus.txt\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(path, ["text_path=mine.txt", "data_dir=d"])
    assert config.text_path == tmp_path / "mine.txt"
    assert config.data_dir == tmp_path / "d"


def test_home_is_expanded_and_absolute_paths_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(tmp_path / "c.yaml", "task: text-char\ntext_path: ~/text8\ndata_dir: /srv/x\n")
    config = load_config(path)
    assert config.text_path == tmp_path / "home" / "text8"
    assert config.data_dir == Path("/srv/x")
    # A plain dict (a worker's trial config) takes the working directory.
    monkeypatch.chdir(tmp_path)
    assert TrialConfig(task="text-char", text_path="t.txt").text_path == tmp_path / "t.txt"
    assert resolve_paths({"text_path": "t.txt", "data_dir": 3}, "/base") == {
        "text_path": "/base/t.txt",
        "data_dir": 3,  # not a path: left for validation to refuse
    }


# ------------------------------------------------------------------ seeds the run can use
@pytest.mark.parametrize("field", ["seed", "data_seed", "permutation_seed"])
@pytest.mark.parametrize(
    ("value", "accepted"),
    [(0, True), (2**63 - 1, True), (2**63, False), (2**64, False), (-1, False), (-(2**64), False)],
)
def test_seeds_are_refused_outside_0_to_2_63_minus_1(
    tmp_path: Path, field: str, value: int, accepted: bool
) -> None:
    path = write(tmp_path / "c.yaml", "task: pmnist\n")
    if accepted:
        assert getattr(load_config(path, [f"{field}={value}"]), field) == value
        return
    # Never folded: 2**64 and -2**64 used to train exactly as seed 0.
    with pytest.raises(ConfigError) as raised:
        load_config(path, [f"{field}={value}"])
    message = str(raised.value)
    assert message.startswith(f"{path}: {field}: must be an integer from 0 to 2**63 - 1")
    assert "Value error" not in message and "\n" not in message


def test_epochs_fit_the_stores_epoch_column() -> None:
    assert TrialConfig(task="digits", epochs=2**31 - 1).epochs == 2**31 - 1
    with pytest.raises(ConfigError, match=r"epochs: must be at most 2\*\*31 - 1"):
        load_config_from_dict({"task": "digits", "epochs": 2**31})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", True),
        ("data_seed", False),
        ("learning_rate", float("inf")),
        ("dropout", float("nan")),
    ],
)
def test_values_the_run_would_fold_or_diverge_on_are_refused(field: str, value: object) -> None:
    """A YAML `true` is no seed 1, and no float field means anything at inf or nan."""
    with pytest.raises(ValidationError, match=field):
        TrialConfig.model_validate({"task": "digits", field: value})


# ------------------------------------------------------------------ numbers as declared
def test_threads_are_bounded_by_this_machine_when_the_config_runs_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`train` (load_config) runs the config here: torch.set_num_threads(1000) on a small
    machine ends in a MemoryError. A config read anywhere else is not held to the reader's."""
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    path = write(tmp_path / "c.yaml", "task: digits\n")
    assert load_config(path, ["threads=4"]).threads == 4
    with pytest.raises(ConfigError) as raised:
        load_config(path, ["threads=1000"])
    message = str(raised.value)
    assert f"{path}: threads: 1000 threads, but this machine has 4 CPUs (os.cpu_count())" in message
    assert "use at most 4" in message
    assert TrialConfig(task="digits", threads=1000).threads == 1000  # e.g. a stored snapshot


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"valid_tokens": 1}, "valid_tokens 1 is too few for eval_streams 1"),
        ({"test_tokens": 5, "eval_streams": 3}, "test_tokens 5 is too few for eval_streams 3"),
        ({"train_tokens": 2000, "batch_size": 4000}, "train_tokens 2000 is too few for batch_size"),
    ],
)
def test_a_split_cut_below_its_streams_names_the_cut(changes: dict[str, int], message: str) -> None:
    """Not "too few for batch size" from inside the training loop: the field that cut the split
    and the stream count it cannot fill, before any data is read."""
    with pytest.raises(ConfigError) as raised:
        load_config_from_dict({"task": "ptb-char", **changes})
    assert message in str(raised.value) and "must be at least" in str(raised.value)
    # The image tasks read no token splits: the same numbers are no error there.
    assert TrialConfig(task="digits", **changes)


def test_a_path_no_file_system_holds_is_refused_by_its_length() -> None:
    with pytest.raises(ConfigError) as raised:
        load_config_from_dict({"task": "text-char", "text_path": "/tmp/" + "x" * 200_000})
    message = str(raised.value)
    assert "text_path: /tmp/xxx" in message and "(200,005 characters)" in message
    assert "has a name of 200,000 bytes; a file name has at most 255 (NAME_MAX)" in message
    assert len(message) < 400
    with pytest.raises(ConfigError, match=r"data_dir: .* a path has at most 4096 \(PATH_MAX\)"):
        load_config_from_dict({"task": "ptb-char", "data_dir": "/tmp" + "/x" * 3000})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("learning_rate=nan", "learning_rate: must be a finite number, got nan (not a number)"),
        ("zoneout_cell=true", "zoneout_cell: must be a number, got true: a boolean is not a"),
        ("tie_weights=1", "tie_weights: must be true or false, got 1"),
        ("hidden_size=eight", "hidden_size: must be an integer, got the text 'eight'"),
    ],
)
def test_set_values_are_typed_as_declared(tmp_path: Path, override: str, message: str) -> None:
    """A number typed on the command line is a number (learning_rate=1e-3 above, which YAML 1.1
    reads as text); a boolean, a word or NaN where a number is declared is named."""
    path = write(tmp_path / "c.yaml", "task: digits\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, [override])
    assert f"{path}: {message}" in str(raised.value)


def test_a_long_set_item_or_duplicate_key_is_echoed_cut(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        apply_overrides({}, ["x" * 300])
    assert "(300 characters)" in str(raised.value) and len(str(raised.value)) < 200
    key = "k" * 1000  # YAML's longest plain key is 1024 characters
    path = write(tmp_path / "c.yaml", f"task: digits\n{key}: 1\n{key}: 2\n")
    with pytest.raises(ConfigError) as raised:
        read_yaml(path)
    message = str(raised.value)
    assert "line 3: duplicate key 'kkk" in message and "(1,000 characters)" in message
    assert len(message) < 300 + len(str(path))
