"""``zoneout-study db upgrade``: the store's schema brought to the newest revision, and every
study's values to the one score."""

from __future__ import annotations

from typing import Annotated

from study.cli._base import app, console, sub_app
from study.cli._storage import check_writable, resolve_storage, storage_option

db_app = sub_app("Database schema commands.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(storage: Annotated[str | None, storage_option()] = None) -> None:
    """Create or upgrade the store's schema (Alembic) to the newest revision, and bring every
    study's trial values to the one score (the mean over seeds of each seed's best)."""
    from study.store import current_revision, mask_url, upgrade

    url = resolve_storage(storage)
    check_writable(url)  # before the store's tables change
    upgrade(url)
    console.print(f"{mask_url(url)} at revision {current_revision(url)}")
    # The data follow the schema: every study's values are brought to the one score.
    from study import optuna_study
    from study.rescore import needs_rescore, rescore_study
    from study.store import Store

    with Store(url) as store:
        for name in store.studies_frame()["name"]:
            try:
                study = optuna_study.load_study(url, str(name))
            except KeyError:
                continue  # a store row without its Optuna study
            if needs_rescore(study):
                console.print(rescore_study(url, str(name), store).line())
