"""Ray's lifetime for one study run: connect (or start a local Ray), wait until a trial fits on
some node, and shut down on the way out only what this run started.

A cluster can grow: KubeRay or `ray up` add GPU nodes on demand (from zero), and a person may
start a worker after the driver. A trial that fits no node yet is waited for (the spec's
``resources.wait_for_nodes_s``), with the trial's shape asked of the autoscaler meanwhile
(``ray.autoscaler.sdk.request_resources``: Tune's own demand only exists once the study runs),
and said once. A Ray this process started itself (``ray.init`` without a cluster) has no
address anyone else knows and cannot grow: a trial that does not fit it is refused at once.

What Ray records of the driver carries no secret: Ray keeps the driver's command line (its
``/proc`` command line, not ``sys.argv``) as the job's entrypoint, shown by ``ray list jobs``
and the dashboard; the caller's ``mask`` is applied to every argument first.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from study.errors import UserError

__all__ = ["RAY_AUTH_LOGGER", "RaySessionError", "quiet_logger", "ray_session"]

RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
# How often the nodes are read while a run waits for one that fits a trial.
NODE_POLL_S = 1.0


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


def _connect(address: str | None, mask: Callable[[str], str] | None = None) -> bool:
    """Connect to (or start) Ray; returns whether this call started it. ``mask`` is applied
    to each argument of the command line Ray records for this driver."""
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
        with quiet, _driver_keeps_its_signal_handlers(), _masked_entrypoint(mask):
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


@contextmanager
def _masked_entrypoint(mask: Callable[[str], str] | None) -> Iterator[None]:
    """Ray records this driver's command line as its job's entrypoint (GCS job table: `ray
    list jobs`, the dashboard, the state API): ray/_private/worker.py (init, ``connect(...,
    entrypoint=ray._private.utils.get_entrypoint_name())``) reads it from psutil, i.e. from
    ``/proc/self/cmdline``, so rewriting ``sys.argv`` alone would not reach it. While Ray
    starts, that function returns the command line with ``mask`` applied to each argument,
    and, where that changed anything (a password given in ``--storage``), the process title
    is the masked line too (what Ray's dashboard agent and ``ps`` read from then on).
    Private: Ray has no public way to set a driver's entrypoint."""
    if mask is None:
        yield
        return
    import psutil
    from ray._private import utils

    try:
        given = psutil.Process().cmdline()
    except (psutil.Error, OSError):
        given = list(sys.argv)
    masked = [mask(arg) for arg in given]
    if masked != given:
        from ray import _raylet

        _raylet.setproctitle(subprocess.list2cmdline(masked))
    prefix = "(interactive_shell) " if hasattr(sys, "ps1") else ""
    keep = utils.get_entrypoint_name
    utils.get_entrypoint_name = lambda: prefix + subprocess.list2cmdline(masked)
    try:
        yield
    finally:
        utils.get_entrypoint_name = keep


def _alive_nodes() -> list[dict[str, Any]]:
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def _fits(node: dict[str, Any], cpu: float, gpu: float) -> bool:
    resources = node.get("Resources") or {}
    return resources.get("CPU", 0.0) >= cpu and resources.get("GPU", 0.0) >= gpu


def _shortfall(nodes: list[dict[str, Any]], cpu: float, gpu: float) -> str:
    """Why no node of ``nodes`` fits a trial, in the spec's words."""
    largest_cpu = max((node["Resources"].get("CPU", 0.0) for node in nodes), default=0.0)
    largest_gpu = max((node["Resources"].get("GPU", 0.0) for node in nodes), default=0.0)
    if cpu > largest_cpu:
        return (
            f"resources.cpu is {cpu:g} per trial but the largest Ray node has {largest_cpu:g} CPUs"
        )
    if gpu > largest_gpu:
        return (
            f"resources.gpu is {gpu:g} per trial but the largest Ray node has {largest_gpu:g} GPUs"
        )
    return (
        f"a trial needs {cpu:g} CPUs and {gpu:g} GPUs on one node and no Ray node has both "
        f"(the largest have {largest_cpu:g} CPUs, {largest_gpu:g} GPUs)"
    )


def _many(count: float, what: str) -> str:
    return f"{count:g} {what}" + ("" if count == 1 else "s")


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _cluster_can_grow() -> bool:
    """False for a Ray whose head this process started (``ray.init`` without a cluster, here
    or by whoever initialised Ray in this process): no autoscaler adds nodes to it. Private:
    Ray tells no other way whether its head is this process's own."""
    from ray._private import worker

    node = getattr(worker, "_global_node", None)
    return not (node is not None and getattr(node, "head", False))


def _request_a_node(bundle: dict[str, float] | None) -> None:
    """Ask an autoscaler for a node that fits ``bundle`` (None: withdraw the request); a
    cluster without one ignores it. Best effort: the wait works without it."""
    from ray.autoscaler.sdk import request_resources

    try:
        request_resources(bundles=[bundle] if bundle else [])
    except Exception as error:  # an old or absent autoscaler: the wait goes on regardless
        logging.getLogger(__name__).debug("request_resources failed: %s", error)


def _wait_for_a_node(
    cpu: float,
    gpu: float,
    *,
    wait_s: float | None,
    grows: bool,
    say: Callable[[str], None],
) -> None:
    """Return once a live node fits one trial of ``cpu``/``gpu``. Raises RaySessionError at once
    when the cluster cannot grow (or ``wait_s`` is 0), or when ``wait_s`` seconds pass first
    (``None``: no limit)."""
    nodes = _alive_nodes()
    if any(_fits(node, cpu, gpu) for node in nodes):
        return
    if not grows:
        raise RaySessionError(
            _shortfall(nodes, cpu, gpu) + " (a Ray this run started itself cannot grow): lower "
            "resources.cpu/gpu here, or run on a cluster that has or adds such a node "
            "(--ray-address)"
        )
    if wait_s == 0:
        raise RaySessionError(
            _shortfall(nodes, cpu, gpu) + " and resources.wait_for_nodes_s is 0: add a node "
            "that fits, lower resources.cpu/gpu, or let the run wait for a node "
            "(resources.wait_for_nodes_s)"
        )
    limit = "with no limit" if wait_s is None else f"up to {_duration(wait_s)}"
    say(
        f"waiting for a Ray node with {_many(cpu, 'CPU')} and {_many(gpu, 'GPU')} for one "
        f"trial: {_shortfall(nodes, cpu, gpu)} ({_many(len(nodes), 'node')} alive now); "
        f"waiting {limit} "
        "(resources.wait_for_nodes_s in the spec, null for no limit); Ctrl-C stops"
    )
    started = time.monotonic()
    bundle = {"CPU": cpu, **({"GPU": gpu} if gpu else {})}
    _request_a_node(bundle)
    try:
        while True:
            time.sleep(NODE_POLL_S)
            nodes = _alive_nodes()
            fitting = [node for node in nodes if _fits(node, cpu, gpu)]
            waited = time.monotonic() - started
            if fitting:
                say(
                    f"Ray node {fitting[0].get('NodeID', '?')[:8]} fits a trial (joined after "
                    f"{waited:.0f} s); starting"
                )
                return
            if wait_s is not None and waited >= wait_s:
                raise RaySessionError(
                    f"no Ray node that fits a trial joined in {_duration(wait_s)} "
                    f"(resources.wait_for_nodes_s): {_shortfall(nodes, cpu, gpu)}; add such a "
                    "node, raise resources.wait_for_nodes_s (null: no limit), or lower "
                    "resources.cpu/gpu"
                )
    finally:
        # Tune's placement groups carry the demand from here on; a request left behind would
        # keep the autoscaler's node after the study.
        _request_a_node(None)


@contextmanager
def ray_session(
    address: str | None,
    *,
    cpu: float,
    gpu: float,
    wait_s: float | None = 0.0,
    say: Callable[[str], None] | None = None,
    mask: Callable[[str], str] | None = None,
) -> Iterator[None]:
    """Ray for the block: reached at ``address`` (or a new local instance), with a node that
    fits one trial of ``cpu``/``gpu``, waited for up to ``wait_s`` seconds (``None``: no
    limit) on a cluster that can grow; ``say`` gets the one line saying so. ``mask`` hides
    secrets in the command line Ray records. A Ray this block started is shut down when it
    ends."""
    # The legacy reporter honours verbose=0: the study draws its own progress display.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = _connect(address, mask)
    try:
        _wait_for_a_node(
            cpu,
            gpu,
            wait_s=wait_s,
            grows=_cluster_can_grow(),
            say=say or (lambda line: None),
        )
        yield
    finally:
        if started:
            import ray

            ray.shutdown()
