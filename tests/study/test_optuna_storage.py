"""Drivers that start together on an empty database share one Optuna schema and study."""

from __future__ import annotations

import threading

import optuna
import pytest

from study.runner import open_optuna_study


@pytest.mark.postgres
def test_concurrent_drivers_create_the_schema_once(postgres_url: str) -> None:
    errors: list[BaseException] = []
    ids: list[int] = []
    barrier = threading.Barrier(4)

    def open_study() -> None:
        barrier.wait()
        try:
            ids.append(open_optuna_study(postgres_url, "together")._study_id)
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=open_study) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(set(ids)) == 1
    assert optuna.get_all_study_names(postgres_url) == ["together"]
