"""``zoneout-study train``: one trial config, run here, its epochs printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from study.cli._base import app, console, error_console, fail
from study.cli._paths import MAX_CONFIG_BYTES, check_input_file, check_output_dir


@app.command()
def train(
    config_path: Annotated[Path, typer.Argument(metavar="CONFIG.yaml", help="a trial config")],
    set_values: Annotated[
        list[str] | None,
        typer.Option("--set", help="override a config key: --set zoneout_cell=0.5 (repeatable)"),
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda or auto (overrides the config)")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="override epochs")] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-dir", help="keep per-epoch checkpoints here and resume from them"
        ),
    ] = None,
) -> None:
    """Train one config (for example one exported from a study) and print its epochs."""
    from trials.config import load_config
    from trials.train import EpochResult
    from trials.train import train as run_training

    overrides = list(set_values or [])
    if device is not None:
        overrides.append(f"device={device}")
    if epochs is not None:
        overrides.append(f"epochs={epochs}")
    check_input_file(config_path, "trial config", MAX_CONFIG_BYTES)
    if checkpoint_dir is not None:
        check_output_dir(checkpoint_dir, "--checkpoint-dir")
    config = load_config(config_path, overrides)
    if config.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            fail("device 'cuda' was asked for but torch sees no CUDA GPU; use --device cpu")
    if checkpoint_dir is not None:
        from trials.checkpoints import check_resumable

        # Before the data loads and the progress bar starts: a checkpoint made with another
        # config, or not a checkpoint at all, is one line and exit 2 (a CheckpointError).
        check_resumable(checkpoint_dir, config)

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    rows: list[EpochResult] = []
    with Progress(
        TextColumn("[bold]epoch {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        # Off a terminal the bar would print its last frame at exit, above an error line
        # too; a plain line per epoch instead.
        disable=not console.is_terminal,
    ) as progress:
        task_id = progress.add_task("training", total=config.epochs)

        def report(result: EpochResult, _checkpoint: Path | None) -> None:
            rows.append(result)
            progress.update(
                task_id,
                completed=result.epoch,
                description=f"valid {result.metric} {result.valid_metric:.4f}",
            )
            if progress.disable:
                console.print(
                    f"epoch {result.epoch}/{config.epochs}: valid {result.metric} "
                    f"{result.valid_metric:.4f}",
                    highlight=False,
                )

        result = run_training(config, report=report, checkpoint_dir=checkpoint_dir)

    table = Table(title=f"{config.task}: {config_path.name}")
    headings = (
        "epoch",  # frame-contract: not a column (a heading of this table)
        "train loss",
        "valid loss",
        f"valid {result.metric}",
        "tokens/s",
        "s",
    )
    for column in headings:
        table.add_column(column, justify="right")
    for row in result.epochs:
        table.add_row(
            str(row.epoch),
            f"{row.train_loss:.4f}",
            f"{row.valid_loss:.4f}",
            f"{row.valid_metric:.4f}",
            f"{row.tokens_per_second:,.0f}",
            f"{row.seconds:.1f}",
        )
    console.print(table)
    if result.status == "diverged":
        error_console.print(f"[bold red]diverged:[/] {escape(str(result.reason))}")
        raise typer.Exit(code=1)
    console.print(
        f"best epoch {result.best_epoch}: valid {result.metric} {result.best_valid_metric:.4f}; "
        f"test {result.metric} {result.test_metric:.4f} ({result.data_source})"
    )
