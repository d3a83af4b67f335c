"""Which seed of a replacement continues its checkpoint (study.resume.plan_starts): only a
readable checkpoint of the same seed, inside the budget, whose epochs are all on record."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from study.resume import ResumePoint, plan_starts
from trials.train import CHECKPOINT_FILE


def _point(tmp_path: Path, seed: int, epoch: int) -> dict:
    directory = tmp_path / f"seed{seed}-epoch{epoch}"
    directory.mkdir()
    torch.save({"epoch": epoch}, directory / CHECKPOINT_FILE)
    curve = tuple((e, 2.0 - 0.1 * e) for e in range(1, epoch + 1))
    return ResumePoint(seed=seed, epoch=epoch, checkpoint=str(directory), curve=curve).to_json()


def test_every_epoch_on_record_continues(tmp_path: Path) -> None:
    points = [_point(tmp_path, 0, 3), _point(tmp_path, 1, 2)]
    recorded = {0: frozenset({1, 2, 3}), 1: frozenset({1, 2, 3})}  # more than needed is fine
    starts = plan_starts(points, [0, 1], replaces=4, max_epochs=5, recorded=recorded.__getitem__)
    assert [s.skipped for s in starts] == [None, None]
    assert [s.point.epoch for s in starts if s.point] == [3, 2]


@pytest.mark.parametrize(
    ("on_record", "missing"),
    [(set(), "1-3"), ({1}, "2-3"), ({1, 3}, "2"), ({2}, "1, 3")],
)
def test_a_checkpoint_ahead_of_the_store_starts_fresh_and_says_why(
    tmp_path: Path, on_record: set[int], missing: str
) -> None:
    """The database's disk filled while training went on: the checkpoint holds epoch 3, the
    store fewer. Continuing would complete the trial with epochs missing from its curve."""
    points = [_point(tmp_path, 0, 3)]
    starts = plan_starts(
        points, [0], replaces=2, max_epochs=3, recorded=lambda seed: frozenset(on_record)
    )
    assert starts[0].point is None
    assert starts[0].skipped == (
        f"trial 2's epochs {missing} of seed 0 are not in the store "
        "(its checkpoint at epoch 3 ran ahead of it)"
    )


def test_without_a_store_to_ask_a_readable_point_continues(tmp_path: Path) -> None:
    starts = plan_starts([_point(tmp_path, 0, 2)], [0], replaces=1, max_epochs=3)
    assert starts[0].point is not None and starts[0].skipped is None


def test_the_store_is_asked_about_the_replaced_trials_own_seed(tmp_path: Path) -> None:
    asked: list[int] = []

    def recorded(seed: int) -> frozenset[int]:
        asked.append(seed)
        return frozenset({1, 2})

    plan_starts(
        [_point(tmp_path, 10, 2), None, _point(tmp_path, 12, 2)],
        [10, 11, 12],
        replaces=1,
        max_epochs=3,
        recorded=recorded,
    )
    assert asked == [10, 12]
