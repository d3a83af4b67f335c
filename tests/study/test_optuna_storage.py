"""Drivers that start together on an empty database share one Optuna schema and study."""

from __future__ import annotations

import threading

import optuna
import pytest

from study.optuna_study import open_study, study_id


@pytest.mark.postgres
def test_concurrent_drivers_create_the_schema_once(postgres_url: str) -> None:
    errors: list[BaseException] = []
    ids: list[int] = []
    barrier = threading.Barrier(4)

    def open_one() -> None:
        barrier.wait()
        try:
            ids.append(study_id(open_study(postgres_url, "together")))
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert len(set(ids)) == 1
    assert optuna.get_all_study_names(postgres_url) == ["together"]
