"""Ray's lifetime for one study run: connect (or start a local Ray), check that a trial fits
on some node, and shut down on the way out only what this run started."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["RaySessionError", "ray_session"]


class RaySessionError(RuntimeError):
    """Ray cannot be reached, or no node can ever run one trial."""


def _connect(address: str | None) -> bool:
    """Connect to (or start) Ray; returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": "WARNING",
        "configure_logging": True,
    }
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise RaySessionError(
            f"cannot connect to Ray at {address or 'a new local instance'}: {first_line}; "
            "check --ray-address (and that every node uses the same RAY_AUTH_MODE)"
        ) from None
    return True


def _check_resources(cpu: float, gpu: float) -> None:
    """A trial asking for more than any node of the cluster has would wait forever."""
    import ray

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    largest_cpu = max((node["Resources"].get("CPU", 0.0) for node in nodes), default=0.0)
    largest_gpu = max((node["Resources"].get("GPU", 0.0) for node in nodes), default=0.0)
    if cpu > largest_cpu:
        raise RaySessionError(
            f"resources.cpu is {cpu:g} per trial but the largest Ray node has "
            f"{largest_cpu:g} CPUs: lower resources.cpu or add bigger nodes"
        )
    if gpu > largest_gpu:
        raise RaySessionError(
            f"resources.gpu is {gpu:g} per trial but the largest Ray node has "
            f"{largest_gpu:g} GPUs: set resources.gpu to 0 here or run on a GPU cluster"
        )


@contextmanager
def ray_session(address: str | None, *, cpu: float, gpu: float) -> Iterator[None]:
    """Ray for the block: reached at ``address`` (or a new local instance), with a node that
    fits one trial of ``cpu``/``gpu``; a Ray this block started is shut down when it ends."""
    # The legacy reporter honours verbose=0: the study draws its own progress display.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Every epoch reports a checkpoint by design; Tune's warning about frequent experiment
    # snapshots would repeat all study long.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = _connect(address)
    try:
        _check_resources(cpu, gpu)
        yield
    finally:
        if started:
            import ray

            ray.shutdown()
