"""Ray's lifetime for one study run: connect (or start a local Ray), check that a trial fits
on some node, and shut down on the way out only what this run started."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from study.errors import UserError

__all__ = ["RAY_AUTH_LOGGER", "RaySessionError", "quiet_logger", "ray_session"]

RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class RaySessionError(UserError, RuntimeError):
    """Ray cannot be reached, or no node can ever run one trial: the address or the spec's
    resources are to change (the runner reports it as a ``StudyRunError``)."""


@contextmanager
def quiet_logger(name: str, level: int = logging.CRITICAL) -> Iterator[None]:
    """Drop ``name``'s records below ``level`` while the block runs."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


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
    # A local Ray this process starts: Ray >= 2.59 turns token authentication on for it (a
    # token in ~/.ray/auth_token, made if missing) and warns that it did, on every run. The
    # protection stays; the warning about a cluster of our own making goes. (Setting
    # RAY_AUTH_MODE=token here instead does not work: Ray has already read its configuration,
    # so this driver would not send the token its own new cluster asks for.)
    starts_local = not address and not os.environ.get("RAY_ADDRESS")
    quiet = quiet_logger(RAY_AUTH_LOGGER, logging.ERROR) if starts_local else nullcontext()
    try:
        with quiet, _driver_keeps_its_signal_handlers():
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(**kwargs)
    except (KeyboardInterrupt, SystemExit):
        # Stopped while Ray was starting: whatever this call had started goes with it.
        ray.shutdown()
        raise
    except (ConnectionError, RuntimeError, ValueError) as error:
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise RaySessionError(
            f"cannot connect to Ray at {address or 'a new local instance'}: {first_line}; "
            "check --ray-address (and that every node uses the same RAY_AUTH_MODE)"
        ) from None
    return True


@contextmanager
def _driver_keeps_its_signal_handlers() -> Iterator[None]:
    """ray.init replaces the driver's SIGTERM handler with ``sys.exit(15)`` and its core worker
    installs a native failure handler that prints a stack dump (and may abort) on SIGTERM. The
    study's driver handles SIGTERM itself (stop the trials, keep their checkpoints, mark the
    study interrupted: study.runner), so neither is installed in this process while it starts
    Ray. Private: Ray has no public switch for the first, and reads the second (an environment
    variable, RAY_DISABLE_FAILURE_SIGNAL_HANDLER) only when it is imported; Ray's own processes
    (raylet, workers) keep their handlers."""
    from ray._private import ray_constants, utils

    keep_handler = utils.set_sigterm_handler
    keep_native = ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    utils.set_sigterm_handler = lambda handler: None
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    try:
        yield
    finally:
        utils.set_sigterm_handler = keep_handler
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = keep_native


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
