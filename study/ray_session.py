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

What Ray prints on the driver's terminal goes to a file for the session (``output``): the
records of its loggers (``ray`` and below, Tune's included) and the error messages its raylets
publish to the driver (a worker that died: the ``(raylet)`` lines). The study says each such
event in one line of its own (study.callbacks).

A local Ray writes its session under ``$RAY_TMPDIR`` (else ``$TMPDIR``, else /tmp) and, when
no authentication token exists yet, creates one under ``$HOME/.ray``: both are checked before
anything is written (:func:`check_ray_directories`), one line instead of Ray's traceback.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any, TextIO

from study.errors import UserError

__all__ = [
    "RAY_AUTH_LOGGER",
    "RaySessionError",
    "check_ray_directories",
    "quiet_logger",
    "ray_output_to",
    "ray_session",
]

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


def _starts_local(address: str | None) -> bool:
    """Whether connecting with ``address`` starts a new local Ray (no cluster named)."""
    return not address and not os.environ.get("RAY_ADDRESS")


def _unwritable(path: Path, named: Path) -> str | None:
    """Why directory ``path`` (made with its parents if missing) cannot be written; None when
    it can. ``named``: the directory the caller names, which the reason does not repeat. The
    probe is a write (an unnamed temporary file in ``path`` or its nearest existing ancestor,
    gone when closed), not the permission bits: root writes through those, not through a
    read-only mount."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    where = "" if existing == named else f"{existing}: "
    if not existing.is_dir():
        return f"{where}not a directory"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return where + (error.strerror or str(error))
    return None


def _needs_new_token() -> bool:
    """Whether a local Ray started now creates an authentication token (~/.ray/auth_token):
    token authentication is on (Ray >= 2.59 turns it on for a local Ray unless RAY_AUTH_MODE
    says otherwise) and no token is found (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, the file).
    Private: Ray's token loader is the one that knows where Ray looks for one."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() != "token":
        return False
    from ray._raylet import AuthenticationTokenLoader
    from ray.exceptions import AuthenticationError

    try:
        return not AuthenticationTokenLoader.instance().has_token(ignore_auth_mode=True)
    except AuthenticationError:
        return False  # a token Ray cannot read: Ray's own error says which


def check_ray_directories(address: str | None) -> None:
    """Before a local Ray starts (no ``address``, no RAY_ADDRESS, none running in this
    process): its temporary directory can be written, and so can HOME when Ray must create its
    authentication token there. Raises RaySessionError naming the variable, the directory and
    what to do. Writes nothing."""
    import ray
    from ray._common.utils import get_default_system_temp_dir

    if not _starts_local(address) or ray.is_initialized():
        return
    # Private: Ray's own rule for its temporary directory (RAY_TMPDIR, else TMPDIR, else /tmp).
    temp = Path(get_default_system_temp_dir())
    why = _unwritable(temp / "ray", temp)
    if why is not None:
        variable = next((name for name in ("RAY_TMPDIR", "TMPDIR") if name in os.environ), None)
        named = f"{variable}={temp}" if variable else f"the temporary directory {temp}"
        # RAY_TMPDIR wins over TMPDIR: where it is set, only it helps.
        fix = "RAY_TMPDIR" if variable == "RAY_TMPDIR" else "TMPDIR (or RAY_TMPDIR, for Ray only)"
        raise RaySessionError(
            f"{named} cannot be written ({why}): the local Ray this run starts keeps its "
            f"session (sockets, logs) under {temp / 'ray'}; set {fix} to a writable directory"
        )
    if _needs_new_token():
        home = Path.home()
        why = _unwritable(home / ".ray", home)
        if why is not None:
            raise RaySessionError(
                f"HOME={home} cannot be written ({why}): the local Ray this run starts creates "
                f"its authentication token as {home / '.ray' / 'auth_token'}; set HOME to a "
                "writable directory, or RAY_AUTH_TOKEN_PATH to a file holding a token"
            )


class _OutputFile:
    """Lines appended to ``path``, made (with its directory) on the first line: a run Ray says
    nothing in leaves no file. A failed write (a full disk, a removed directory) drops the rest:
    the terminal is no fallback."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._broken = False

    def write(self, text: str) -> None:
        with self._lock:
            if self._broken:
                return
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                self._file.write(text.rstrip("\n") + "\n")
                self._file.flush()
            except OSError:
                self._broken = True

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                with suppress(OSError):
                    self._file.close()
            self._file = None


class _OutputHandler(logging.Handler):
    """A logging handler that appends formatted records to an :class:`_OutputFile`. Its format
    is its own: ray.init sets Ray's on every handler of the ``ray`` logger, which lacks the
    logger's name."""

    _FORMAT = logging.Formatter(
        "%(asctime)s\t%(levelname)s %(name)s %(filename)s:%(lineno)s -- %(message)s"
    )

    def __init__(self, output: _OutputFile) -> None:
        super().__init__()
        self._output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._output.write(self._FORMAT.format(record))
        except Exception:  # a record that cannot be formatted: as logging.Handler does
            self.handleError(record)


@contextmanager
def ray_output_to(path: Path) -> Iterator[None]:
    """For the block, what Ray would print on this driver's terminal is appended to ``path``:

    * the records of the ``ray`` logger and its children (Ray core, Tune, Train). Ray gives
      ``ray`` its own stderr handler and stops it propagating (ray/_private/log.py); that
      handler is swapped for the file's. Measured on runs of `zoneout-study run`: a trial
      worker SIGKILLed, Tune's "Trial task failed" traceback and "Remote file not found:
      .../result.json" on each restore; a 40 s PostgreSQL stop, 4 of Tune's "may be a
      performance bottleneck" warnings (its driver loop waited on the database).
    * the error messages raylets publish to the driver: ray.init starts a thread
      (``listen_error_messages``) that prints each as a yellow ``(raylet)`` line on stdout,
      whatever ``log_to_driver`` says, e.g. "A worker died or was killed while executing a
      task ..." with its lease, worker and node ids. Private: the thread prints through
      ``ray._private.worker.print_to_stdstream``, which is replaced for the block (Ray has
      no switch for it).
    """
    from ray._private import worker

    output = _OutputFile(path)
    handler = _OutputHandler(output)
    ray_logger = logging.getLogger("ray")
    kept_handlers = list(ray_logger.handlers)
    kept_print = worker.print_to_stdstream

    def to_file(data: dict[str, Any], ignore_prefix: bool = False) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        source = data.get("pid", "?")
        for line in data.get("lines", []):
            output.write(f"{stamp}\t({source}) {line}")

    for kept in kept_handlers:
        ray_logger.removeHandler(kept)
    ray_logger.addHandler(handler)
    worker.print_to_stdstream = to_file
    try:
        yield
    finally:
        worker.print_to_stdstream = kept_print
        ray_logger.removeHandler(handler)
        for kept in kept_handlers:
            ray_logger.addHandler(kept)
        output.close()


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
    starts_local = _starts_local(address)
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
    output: Path | None = None,
) -> Iterator[None]:
    """Ray for the block: reached at ``address`` (or a new local instance), with a node that
    fits one trial of ``cpu``/``gpu``, waited for up to ``wait_s`` seconds (``None``: no
    limit) on a cluster that can grow; ``say`` gets the one line saying so. ``mask`` hides
    secrets in the command line Ray records. What Ray prints on the driver goes to ``output``
    (:func:`ray_output_to`), from its start to its shutdown, when given. A Ray this block
    started is shut down when it ends."""
    # The legacy reporter honours verbose=0: the study draws its own progress display.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    with ray_output_to(output) if output is not None else nullcontext():
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
