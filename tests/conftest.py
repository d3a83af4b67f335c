"""Fixtures shared by the whole suite: a local Ray instance started once, inside a temp dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


@pytest.fixture(scope="session")
def ray_tmpdir() -> Iterator[str]:
    # Short path: Ray's unix sockets live under it and must stay under 108 characters.
    path = tempfile.mkdtemp(prefix="zs-ray-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def ray_local(ray_tmpdir: str) -> Iterator[None]:
    """One local Ray for the in-process study tests (2 CPUs), shut down at the end."""
    import ray

    os.environ["RAY_TMPDIR"] = ray_tmpdir
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
        _temp_dir=ray_tmpdir,
    )
    yield
    ray.shutdown()
