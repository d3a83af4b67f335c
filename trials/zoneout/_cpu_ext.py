"""Build (at first use, then cached) and load the CPU extension in ``_cpu/zoneout_lstm.cpp``.

torch.utils.cpp_extension compiles it with g++ and ninja into torch's extensions directory
(``$TORCH_EXTENSIONS_DIR``, default ~/.cache/torch_extensions; a per-user temporary directory when
that is not writable). The build is keyed by a digest of the source, torch's version and this
CPU's model and feature flags, because it is compiled with -march=native: a cache shared with
another kind of machine (a home directory on NFS, a copied image) rebuilds rather than running
instructions that CPU lacks.

Concurrent first uses (several Ray workers starting at once) are serialized: one process
compiles, the others wait and load the result. torch's own lock (``lock`` in the build
directory, an empty file that `torch.utils.file_baton.FileBaton` waits on with no time limit)
names no owner, and a process killed while compiling leaves it behind for every later first use
to wait on forever. So a process first takes this module's lock, ``zoneout-build.lock`` next to
it: an advisory ``flock``, which the kernel drops when its holder dies, and in the file the
holder's host and pid while it builds. Every wait is bounded by the staleness limit
(``$ZONEOUT_BUILD_LOCK_SECONDS``, default ``STALE_LOCK_SECONDS``, five times the build's ~1 min):
a holder past it is taken for hung and this process builds anyway. Holding the lock, a torch
lock is stale when the previous holder died while building (its record is still in the file),
or when it is older than the limit (a process of an older version, which takes no lock of ours,
may be compiling: it gets that long); a stale one is removed and the build goes ahead.

If the build fails the layer falls back to the pure-PyTorch fused path, with one warning.
``ZONEOUT_CPU_EXTENSION=0`` turns the extension off.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import platform
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "_cpu" / "zoneout_lstm.cpp"
# -fno-trapping-math lets GCC if-convert the activations' clamps, so the loops vectorize.
CFLAGS = ["-O3", "-march=native", "-fno-trapping-math"]
# The build takes ~1 min on one busy core of a 2-core machine (g++ -O3 on one source file); a
# lock held five times that long belongs to a hung or dead build.
STALE_LOCK_SECONDS = 5 * 60
ENV_LOCK_SECONDS = "ZONEOUT_BUILD_LOCK_SECONDS"
ENV_SWITCH = "ZONEOUT_CPU_EXTENSION"
BUILD_LOCK_FILE = "zoneout-build.lock"  # ours (flock + the holder's record)
TORCH_LOCK_FILE = "lock"  # torch's FileBaton
POLL_SECONDS = 0.2

_lock = threading.Lock()
_loaded: bool | None = None  # None: not tried yet in this process


def _cpu_description() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.startswith(wanted)}))


def extension_name() -> str:
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), torch.__version__.encode(), _cpu_description().encode()):
        digest.update(part)
        digest.update(b"\0")
    digest.update(" ".join(CFLAGS).encode())
    return f"zoneout_lstm_cpu_{digest.hexdigest()[:16]}"


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def build_directory(name: str) -> Path:
    """Where the extension is built: torch's extensions directory, or a per-user temp dir."""
    from torch.utils.cpp_extension import _get_build_directory

    try:  # torch creates the directory, and raises if it cannot
        preferred = Path(_get_build_directory(name, verbose=False))
    except OSError:
        preferred = None
    if preferred is not None and _writable(preferred):
        return preferred
    fallback = Path(tempfile.gettempdir()) / f"zoneout-torch-extensions-{os.getuid()}" / name
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def stale_lock_seconds() -> float:
    """How long a build lock may be held before it is taken for stale: ``$ZONEOUT_BUILD_LOCK_
    SECONDS`` when set to a positive number, else `STALE_LOCK_SECONDS`."""
    raw = os.environ.get(ENV_LOCK_SECONDS, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if math.isfinite(value) and value > 0:
            return value
        warnings.warn(
            f"{ENV_LOCK_SECONDS}={raw!r} is not a positive number of seconds; using "
            f"{STALE_LOCK_SECONDS}",
            RuntimeWarning,
            stacklevel=2,
        )
    return float(STALE_LOCK_SECONDS)


def _age(path: Path) -> float | None:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


def _remove_stale_lock(directory: Path, limit: float | None = None, why: str = "") -> bool:
    """Remove torch's lock in ``directory`` when it is older than ``limit`` (default: the
    staleness limit) or, with ``why``, at any age; True when it is gone."""
    lock = directory / TORCH_LOCK_FILE
    age = _age(lock)
    if age is None:
        return True
    if why or age > (stale_lock_seconds() if limit is None else limit):
        reason = why or "a process was probably killed while compiling the zoneout CPU extension"
        warnings.warn(
            f"removing a build lock left {age / 60:.0f} min ago in {directory} ({reason})",
            RuntimeWarning,
            stacklevel=3,
        )
        lock.unlink(missing_ok=True)
        return True
    return False


@contextmanager
def build_lock(directory: Path, limit: float | None = None) -> Iterator[None]:
    """Hold this module's build lock of ``directory`` for the block, with no stale torch lock
    left in the way (see the module docstring). Every wait is bounded by ``limit`` seconds
    (default: `stale_lock_seconds`)."""
    limit = stale_lock_seconds() if limit is None else limit
    path = directory / BUILD_LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        held = _acquire(fd, path, limit)
        if held:
            # A record still in the file: its writer died while building (the flock went with
            # it), and torch's lock, if any, is that build's.
            left = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.ftruncate(fd, 0)
            # When it took the lock is the file's mtime.
            os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode(), 0)
            if left:
                _remove_stale_lock(directory, why=f"{left} died while compiling")
        _wait_for_torch_lock(directory, limit)
        try:
            yield
        finally:
            if held:
                os.ftruncate(fd, 0)  # built or failed, torch's lock released: nothing left
    finally:
        os.close(fd)  # drops the flock


def _acquire(fd: int, path: Path, limit: float) -> bool:
    """flock ``fd``: True once held; False when another process has held it for ``limit``
    seconds and is given up for hung, counted from the lock file's last write (its holder
    writes its record when it takes the lock) or from when this process began to wait,
    whichever is later."""
    started = time.time()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        try:
            since = max(path.stat().st_mtime, started)
        except FileNotFoundError:
            since = started
        held_for = time.time() - since
        if held_for > limit:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            warnings.warn(
                f"the zoneout CPU extension's build lock in {path.parent} is held by {holder} "
                f"past the staleness limit ({ENV_LOCK_SECONDS}={limit:g} s, longer than a build "
                "takes): building without waiting for it",
                RuntimeWarning,
                stacklevel=4,
            )
            return False
        time.sleep(POLL_SECONDS)


def _wait_for_torch_lock(directory: Path, limit: float) -> None:
    # torch would wait on its lock forever: wait here, bounded, and remove it once stale.
    while not _remove_stale_lock(directory, limit):
        time.sleep(POLL_SECONDS)


def load() -> bool:
    """Build/load the extension once per process; True when ``torch.ops.zoneout_cpu`` works."""
    global _loaded
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        if os.environ.get(ENV_SWITCH, "1") == "0":
            _loaded = False
            return False
        try:
            from torch.utils import cpp_extension

            name = extension_name()
            directory = build_directory(name)
            with build_lock(directory):
                cpp_extension.load(
                    name=name,
                    sources=[str(SOURCE)],
                    extra_cflags=CFLAGS,
                    build_directory=str(directory),
                    is_python_module=False,
                    verbose=False,
                )
            _loaded = True
        except Exception as error:  # any failure: compiler missing, flags refused, ...
            warnings.warn(
                f"the zoneout CPU extension could not be built ({type(error).__name__}: "
                f"{str(error).strip()[:500]}); ZoneoutLSTM uses its pure-PyTorch fused path "
                f"on CPU, which is slower (set {ENV_SWITCH}=0 to silence this)",
                RuntimeWarning,
                stacklevel=2,
            )
            _loaded = False
        return _loaded
