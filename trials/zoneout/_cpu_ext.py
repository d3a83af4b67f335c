"""Build (at first use, then cached) and load the CPU extension in ``_cpu/zoneout_lstm.cpp``.

torch.utils.cpp_extension compiles it with g++ and ninja into torch's extensions directory
(``$TORCH_EXTENSIONS_DIR``, default ~/.cache/torch_extensions; a per-user temporary directory when
that is not writable). The build is keyed by a digest of the source, torch's version and this
CPU's model and feature flags, because it is compiled with -march=native: a cache shared with
another kind of machine (a home directory on NFS, a copied image) rebuilds rather than running
instructions that CPU lacks. Concurrent first uses (several Ray workers starting at once) are
serialized by torch's lock file in the build directory: one process compiles, the others wait
and load the result. A lock left behind by a process killed while compiling would make every
later first use wait forever, so a lock older than ``STALE_LOCK_SECONDS`` is removed.

If the build fails the layer falls back to the pure-PyTorch fused path, with one warning.
``ZONEOUT_CPU_EXTENSION=0`` turns the extension off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import threading
import time
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).parent / "_cpu" / "zoneout_lstm.cpp"
# -fno-trapping-math lets GCC if-convert the activations' clamps, so the loops vectorize.
CFLAGS = ["-O3", "-march=native", "-fno-trapping-math"]
STALE_LOCK_SECONDS = 15 * 60
ENV_SWITCH = "ZONEOUT_CPU_EXTENSION"

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


def _remove_stale_lock(directory: Path) -> None:
    lock = directory / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_SECONDS:
        warnings.warn(
            f"removing a build lock left {age / 60:.0f} min ago in {directory} "
            "(a process was probably killed while compiling the zoneout CPU extension)",
            RuntimeWarning,
            stacklevel=3,
        )
        lock.unlink(missing_ok=True)


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
            _remove_stale_lock(directory)
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
