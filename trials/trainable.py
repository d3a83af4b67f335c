"""The Ray Tune trainable: one Ray trial = one `train()` call on a worker.

The worker needs no database credentials: every epoch's metrics and checkpoint travel back to
the driver through ``ray.tune.report``; the driver's callbacks write the store.

Ray reuses worker processes between trials: a trial starts by dropping what the previous one
left in the process (`trials.zoneout.clear_caches`: captured CUDA graphs keyed by its rates,
cached GPU memory). Each report names the node and the float32 matmul precision it ran at, and
the recurrent layer's path (``layer_path``, with ``layer_fallback``: why it is not the preferred
one, if it is not), as `trials.train.EpochResult` carries them.
"""

from __future__ import annotations

import math
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from trials.checkpoints import check_resumable
from trials.config import TrialConfig
from trials.task_loops import Diverged
from trials.train import EpochResult, train
from trials.zoneout import clear_caches

__all__ = [
    "CONVERGED_KEY",
    "DIVERGED_KEY",
    "LAYER_FALLBACK_KEY",
    "LAYER_PATH_KEY",
    "MATMUL_PRECISION_KEY",
    "RESUME_FROM_KEY",
    "TRIAL_CONFIG_KEY",
    "report_keys",
    "run_trial",
]

TRIAL_CONFIG_KEY = "trial"
# A checkpoint (local path or URI) to start from when Ray has none of its own for the trial:
# the driver sets it for the replacement of a trial that was cut off with its driver.
RESUME_FROM_KEY = "resume_from"
DIVERGED_KEY = "diverged"
# True in the report of the epoch that ended the trial by early stopping (``patience`` ran out);
# the trial then returns normally and Ray marks it TERMINATED.
CONVERGED_KEY = "converged"
# The trial's float32 matmul precision (TrialConfig.matmul_precision), in every report.
MATMUL_PRECISION_KEY = "matmul_precision"
# The recurrent layer's path in the trial's process (EpochResult.layer_path: a
# trials.zoneout.LayerPath value, then " (eval <path>)" when evaluation ran another) and why it
# fell back from the preferred path (None when it did not), in every report.
LAYER_PATH_KEY = "layer_path"
LAYER_FALLBACK_KEY = "layer_fallback"


def report_keys() -> tuple[str, ...]:
    """The metric keys each report carries (besides Ray's own)."""
    return (
        "epoch",
        "train_loss",
        "valid_loss",
        "valid_metric",
        "best_valid_metric",
        "tokens_per_second",
        "seconds",
        "learning_rate",
        CONVERGED_KEY,
        "node",
        MATMUL_PRECISION_KEY,
        LAYER_PATH_KEY,
        LAYER_FALLBACK_KEY,
    )


class TrialDiverged(Diverged, RuntimeError):
    """A diverged run (:class:`trials.task_loops.Diverged`), raised on the worker so that Ray
    marks the trial ERROR with the reason. Its own name and module because the trial's error
    text (``trials.trainable.TrialDiverged: ...``) is what older stores hold and what
    ``study.score.failure_end`` reads for a failed seed."""


def _threads_for_trial() -> int:
    # Torch threads follow the CPUs Ray gave this trial, not the machine's core count:
    # oversubscribed threads make concurrent trials slower than serial ones.
    try:
        from ray import tune

        resources = tune.get_context().get_trial_resources()
        cpus = resources.required_resources.get("CPU", 1)
        return max(1, math.floor(cpus))
    except Exception:
        return max(1, torch.get_num_threads())


def _node_name() -> str:
    """host/ray-node-id: several Ray nodes can share one host (and one hostname)."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()
    except Exception:
        return platform.node()
    return f"{platform.node()}/{node_id[:8]}"


def run_trial(ray_config: dict[str, Any]) -> None:
    """Function trainable: ``ray_config[TRIAL_CONFIG_KEY]`` is a TrialConfig as a dict."""
    from ray import tune
    from ray.tune import Checkpoint

    clear_caches()  # a reused worker: nothing of the previous trial's layers carries over
    config = TrialConfig.model_validate(ray_config[TRIAL_CONFIG_KEY])
    if config.threads is None:
        config = config.model_copy(update={"threads": _threads_for_trial()})
    if config.device == "auto":
        config = config.model_copy(
            update={"device": "cuda" if torch.cuda.is_available() else "cpu"}
        )
    node = _node_name()
    work_dir = Path(tempfile.mkdtemp(prefix="zoneout-trial-"))
    try:
        # A trial that Ray restarts (a killed worker, a resumed study) continues from its last
        # reported epoch rather than from scratch.
        restored = tune.get_checkpoint()
        if restored is None and ray_config.get(RESUME_FROM_KEY):
            restored = Checkpoint(ray_config[RESUME_FROM_KEY])
        if restored is not None:
            with restored.as_directory() as directory:
                # A checkpoint this config cannot resume (trials.checkpoints: the replacement of
                # a cut-off trial has the same config, so only a damaged file) fails the trial
                # with a CheckpointError naming Ray's copy rather than the work directory's.
                check_resumable(Path(directory), config)
                shutil.copytree(directory, work_dir, dirs_exist_ok=True)

        def report(result: EpochResult, checkpoint_dir: Path | None) -> None:
            metrics = result.as_dict()
            metrics["node"] = node
            metrics[MATMUL_PRECISION_KEY] = config.matmul_precision
            checkpoint = (
                Checkpoint.from_directory(str(checkpoint_dir))
                if checkpoint_dir is not None
                else None
            )
            tune.report(metrics, checkpoint=checkpoint)

        outcome = train(
            config, report=report, checkpoint_dir=work_dir, resume=True, evaluate_test=False
        )
        # "completed" and "converged" (stopped early by patience) both end the trial normally.
        if outcome.status == "diverged":
            raise TrialDiverged(outcome.reason or "the loss became non-finite")
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
