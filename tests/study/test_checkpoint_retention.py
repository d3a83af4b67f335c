"""study.resume.CheckpointRetention: each Ray run keeps its newest checkpoints, older ones go
(the real-run check is in tests/study/test_resume.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ray.tune import Checkpoint

from study.resume import CheckpointRetention


def _checkpoint(root: Path, index: int) -> Checkpoint:
    path = root / f"checkpoint_{index:06d}"
    path.mkdir(parents=True)
    (path / "checkpoint.pt").write_bytes(b"x")
    return Checkpoint.from_directory(str(path))


def test_keeps_the_newest_two_per_run_and_deletes_older(tmp_path: Path) -> None:
    retention = CheckpointRetention(keep=2)
    a = [_checkpoint(tmp_path / "a", i) for i in range(5)]
    b = [_checkpoint(tmp_path / "b", i) for i in range(2)]
    deleted = []
    for i in range(5):
        deleted += retention.keep("a", a[i])
        if i < 2:
            deleted += retention.keep("b", b[i])
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "checkpoint_000003",
        "checkpoint_000004",
    ]
    assert len(list((tmp_path / "b").iterdir())) == 2  # another run's are its own
    assert [Path(d).name for d in deleted] == [f"checkpoint_{i:06d}" for i in range(3)]
    # The same checkpoint handed over twice is held once; an ended run's are left alone.
    assert retention.keep("a", a[4]) == []
    retention.forget("a")
    assert len(list((tmp_path / "a").iterdir())) == 2


def test_a_checkpoint_already_gone_is_no_error(tmp_path: Path) -> None:
    retention = CheckpointRetention(keep=1)
    first = _checkpoint(tmp_path, 0)
    retention.keep("a", first)
    (Path(first.path) / "checkpoint.pt").unlink()
    Path(first.path).rmdir()
    retention.keep("a", _checkpoint(tmp_path, 1))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint_000001"]


def test_keep_must_hold_one() -> None:
    with pytest.raises(ValueError, match="keep"):
        CheckpointRetention(keep=0)
