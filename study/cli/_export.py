"""``zoneout-study export`` and ``promote``: a study's best configurations written out, as
trial configs that `train` re-runs or as the spec of a larger study (the scale ladder)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from study.cli._base import app, console, fail
from study.cli._paths import check_output_dir, check_output_file, written_or_removed
from study.cli._storage import open_store, require_study, storage_option


@app.command()
def export(
    study_name: Annotated[str, typer.Argument(metavar="STUDY")],
    storage: Annotated[str | None, storage_option()] = None,
    top: Annotated[int, typer.Option("--top", min=1, max=1000, help="how many configurations")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="yaml or json")] = "yaml",
    out: Annotated[Path, typer.Option("--out", help="output directory")] = Path("."),
) -> None:
    """Write the best configurations as configs that `zoneout-study train` re-runs."""
    from study.export import export_best

    if fmt not in ("yaml", "json"):
        fail(f"--format must be 'yaml' or 'json', got {fmt!r}")
    check_output_dir(out, "--out")
    store = open_store(storage)
    require_study(store, study_name, names_files=True)
    with written_or_removed(out):
        paths = export_best(store, study_name, top=top, fmt=fmt, out_dir=out)  # type: ignore[arg-type]
    for path in paths:
        console.print(str(path), markup=False, highlight=False)


@app.command()
def promote(
    source: Annotated[str, typer.Argument(metavar="STUDY", help="the finished (small) study")],
    out: Annotated[Path, typer.Option("--out", help="the spec file to write")],
    storage: Annotated[str | None, storage_option()] = None,
    top: Annotated[
        int, typer.Option("--top", min=0, max=1000, help="how many of its best configurations")
    ] = 3,
    point: Annotated[
        list[str] | None,
        typer.Option(
            "--point",
            help="an extra configuration, e.g. zoneout_cell=0,zoneout_hidden=0 (repeatable)",
        ),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="a base field of the larger scale, e.g. epochs=40 (repeatable)"),
    ] = None,
    repeats: Annotated[
        int | None, typer.Option("--repeats", min=1, help="seeds per configuration")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="the new study's name")] = None,
) -> None:
    """Write a spec that runs STUDY's best configurations on a larger base (the scale ladder).

    The new study runs the top configurations by score, plus each --point, with its own seeds,
    on STUDY's base changed by each --set; `report` on it then says how well the small scale
    ranked them."""
    import yaml

    from study.ladder import promotion_spec
    from study.spec import validate_spec

    check_output_file(out, "--out")
    store = open_store(storage)
    require_study(store, source)
    stored = store.study_spec(source)
    points = [_assignments(text, "--point") for text in point or []]
    updates = _assignments(",".join(set_ or []), "--set") if set_ else {}
    spec = promotion_spec(
        stored,
        source=source,
        name=name or f"{source}-promoted",
        top=top,
        points=points,
        base_updates=updates,
        repeats=repeats,
    )
    validate_spec(spec, f"the promoted spec (--point/--set) of {source!r}", base_dir=out.parent)
    with written_or_removed(out.parent):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    console.print(
        f"wrote {out}: the top {top} of {source!r}"
        + (f" and {len(points)} named point(s)" if points else "")
        + f"; run it with `zoneout-study run {out}` (same storage)",
        markup=False,
        highlight=False,
    )


def _assignments(text: str, option: str) -> dict[str, Any]:
    """'a=1,b=x' -> {'a': 1, 'b': 'x'} (values read as YAML scalars; where the trial config
    declares a number, 1e-3 is the number YAML 1.1 would read as text)."""
    import yaml

    from trials.config import TrialConfig, declared_kind, number_from_text

    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            fail(f"{option}: {part!r} is not NAME=VALUE")
        field = TrialConfig.model_fields.get(key.strip())
        kind = declared_kind(field.annotation) if field else None
        parsed = yaml.safe_load(value.strip()) if value.strip() else None
        out[key.strip()] = number_from_text(parsed, kind)
    return out
