"""Where a trial cut off with its driver continues from: one resume point per seed.

After every checkpoint the searcher writes, per seed, the checkpoint's location, its epoch and
the validation curve up to it into the Optuna trial (``keys.RESUME_POINTS``). When the trial is
retired (driver lost, Ctrl-C), its replacement carries these points; each seed's Ray trial gets
the checkpoint in its config (``trials.trainable.RESUME_FROM_KEY``) and the training loop
continues at the next epoch, with the model, optimizer, scheduler and RNG states of the
checkpoint, so the numbers are those of an uninterrupted run. A point whose checkpoint is gone
or unreadable is dropped with the reason and that seed starts fresh.
"""

from __future__ import annotations

import contextlib
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trials.train import CHECKPOINT_FILE

__all__ = [
    "CheckpointRetention",
    "ResumePoint",
    "SeedStart",
    "checkpoint_location",
    "plan_starts",
]


@dataclass(frozen=True)
class ResumePoint:
    """A seed's last checkpoint: it holds everything up to and including ``epoch``."""

    seed: int
    epoch: int
    checkpoint: str  # a local directory or a URI (s3://..., gs://...)
    curve: tuple[tuple[int, float], ...]  # (epoch, validation metric) for epochs <= epoch

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,  # frame-contract: not a column (a resume point's JSON key)
            "epoch": self.epoch,  # frame-contract: not a column (a resume point's JSON key)
            "checkpoint": self.checkpoint,
            # JSON has no NaN in strict parsers: a non-finite value is kept as null.
            "curve": [[e, v if math.isfinite(v) else None] for e, v in self.curve],
        }

    @classmethod
    def from_json(cls, data: Any) -> ResumePoint:
        """Raises ValueError (with what is wrong) on anything that is not a point."""
        if not isinstance(data, dict):
            raise ValueError(f"not a resume point: {data!r}")
        try:
            curve = tuple(
                (int(e), float("nan") if v is None else float(v)) for e, v in data["curve"]
            )
            return cls(
                seed=int(data["seed"]),  # frame-contract: not a column (a resume point's JSON key)
                epoch=int(data["epoch"]),  # frame-contract: not a column
                checkpoint=str(data["checkpoint"]),
                curve=curve,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"malformed resume point ({error})") from None


@dataclass(frozen=True)
class SeedStart:
    """How one seed of a configuration starts: from ``point``, or fresh (``skipped`` says why
    when the trial replaced one that had been cut off)."""

    point: ResumePoint | None = None
    skipped: str | None = None


def checkpoint_location(checkpoint: Any) -> str | None:
    """A ``ray.tune.Checkpoint`` as a string the trainable can open again: the local path, or
    a URI for remote storage (Ray's ``path`` drops the scheme there)."""
    path = getattr(checkpoint, "path", None)
    if path is None:
        return None
    filesystem = getattr(checkpoint, "filesystem", None)
    kind = getattr(filesystem, "type_name", "local")
    if kind in ("local", "mock"):
        return str(path)
    scheme = {"gcs": "gs"}.get(kind, kind)
    return f"{scheme}://{str(path).lstrip('/')}"


class CheckpointRetention:
    """Keeps each Ray trial's newest ``keep`` checkpoints and deletes older ones.

    The service keeps its checkpoints itself rather than through Ray Tune's
    ``CheckpointConfig(num_to_keep)``: with that set, Tune forces a snapshot of its whole
    experiment state (every trial of the run, as JSON) each time a trial has checkpointed
    ``num_to_keep`` times, i.e. every other epoch of every trial, so a driver's cost per trial
    grows with the number of trials in its run. A study resumes from its own store, never from
    Tune's snapshot, so Tune's periodic snapshot (about 5% of the driver's time) is enough.

    Call :meth:`keep` after the newest checkpoint's resume point has been recorded: the one a
    replacement would continue from is never deleted before its successor is on record.
    """

    def __init__(self, keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self._keep = keep
        self._held: dict[str, list[Any]] = {}

    def keep(self, ray_trial_id: str, checkpoint: Any) -> list[str]:
        """Hold ``checkpoint`` (a ``ray.tune.Checkpoint``) as the trial's newest; delete what
        falls out of the newest ``keep``. Returns the locations deleted."""
        held = self._held.setdefault(ray_trial_id, [])
        if any(c.path == checkpoint.path for c in held):
            return []
        held.append(checkpoint)
        deleted = []
        while len(held) > self._keep:
            old = held.pop(0)
            location = checkpoint_location(old) or str(old.path)
            # Ray's Checkpoint names its pyarrow filesystem: local disk or a bucket alike.
            with contextlib.suppress(FileNotFoundError):
                old.filesystem.delete_dir(old.path)
            deleted.append(location)
        return deleted

    def forget(self, ray_trial_id: str) -> None:
        """The trial has ended: its newest checkpoints stay on storage; stop tracking them."""
        self._held.pop(ray_trial_id, None)


def unreadable_reason(location: str) -> str | None:
    """None if ``location`` holds a checkpoint the training loop can load, else why not."""
    if "://" in location:
        from pyarrow import fs

        try:
            filesystem, path = fs.FileSystem.from_uri(location)
            info = filesystem.get_file_info(f"{path.rstrip('/')}/{CHECKPOINT_FILE}")
        except (OSError, ValueError) as error:
            return f"checkpoint {location} cannot be read: {error}"
        if info.type != fs.FileType.File or not info.size:
            return f"checkpoint {location} has no {CHECKPOINT_FILE}"
        return None
    file = Path(location) / CHECKPOINT_FILE
    if not file.is_file():
        return f"checkpoint {file} is missing"
    # torch.save writes a zip archive; a truncated or overwritten file fails this check
    # (its central directory is at the end).
    if not zipfile.is_zipfile(file):
        return f"checkpoint {file} is unreadable (not a complete torch archive)"
    return None


def plan_starts(
    stored: Any,
    seeds: list[int],
    *,
    replaces: int | None,
    max_epochs: int,
    recorded: Callable[[int], frozenset[int]] | None = None,
) -> list[SeedStart]:
    """One start per seed from the replaced trial's stored resume points.

    ``recorded(seed)`` gives the epochs of the replaced trial's seed that are in the store. A
    checkpoint is continued only when every epoch up to it is on record: the replacement's
    curve is the replaced one's stored epochs plus what it trains, so a checkpoint that ran
    ahead of the store (the database's disk filled while training went on) would leave a
    trial COMPLETE with epochs missing. Such a seed starts fresh: the same numbers again."""
    if replaces is None:
        return [SeedStart() for _ in seeds]
    points = stored if isinstance(stored, list) else []
    starts = []
    for index, seed in enumerate(seeds):
        raw = points[index] if index < len(points) else None
        if raw is None:
            starts.append(SeedStart(skipped=f"trial {replaces} recorded no checkpoint"))
            continue
        try:
            point = ResumePoint.from_json(raw)
        except ValueError as error:
            starts.append(SeedStart(skipped=str(error)))
            continue
        if point.seed != seed:
            starts.append(
                SeedStart(skipped=f"trial {replaces}'s checkpoint is for seed {point.seed}")
            )
        elif not 0 < point.epoch <= max_epochs:
            starts.append(
                SeedStart(skipped=f"checkpoint epoch {point.epoch} is outside 1..{max_epochs}")
            )
        elif (reason := unreadable_reason(point.checkpoint)) is not None:
            starts.append(SeedStart(skipped=reason))
        elif recorded is not None and (
            missing := sorted(set(range(1, point.epoch + 1)) - recorded(seed))
        ):
            starts.append(
                SeedStart(
                    skipped=f"trial {replaces}'s epochs {_span(missing)} of seed {seed} are "
                    f"not in the store (its checkpoint at epoch {point.epoch} ran ahead of it)"
                )
            )
        else:
            starts.append(SeedStart(point=point))
    return starts


def _span(epochs: list[int]) -> str:
    """``[1, 2, 3]`` as ``1-3``, ``[2]`` as ``2``, ``[1, 3]`` as ``1, 3``."""
    if len(epochs) > 1 and epochs == list(range(epochs[0], epochs[-1] + 1)):
        return f"{epochs[0]}-{epochs[-1]}"
    return ", ".join(str(e) for e in epochs)
