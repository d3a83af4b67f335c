"""Which recurrent layer path a study's runs took, in a terminal's words and the report's.

Its own module, needing only pandas: ``zoneout-study status`` prints these lines without paying
for the analysis modules (scipy, scikit-learn) that the rest of the summary imports.
"""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

from ._frame import Col

__all__ = ["LayerPaths", "layer_path_line", "layer_path_lines", "layer_paths"]


# trials.zoneout.LayerPath.NN_LSTM's value: the kernel of a pass with no rate to apply.
_NN_LSTM = "nn_lstm"


class LayerPaths(NamedTuple):
    """Which recurrent layer path the runs of a study took (the runs frame's ``layer_path`` and
    ``layer_fallback``, recorded per run since migration 0005)."""

    counts: dict[str, int]
    """Runs per recorded path, most first (e.g. 'cpu_extension', 'fused (eval nn_lstm)')."""
    unrecorded: int
    """Runs that recorded no path (written before the column, or still running)."""
    differ: bool
    """Runs differ in a path a rate acted on. Passes with no rate to apply run nn.LSTM's own
    kernel (the layer's contract), so runs that differ only there are not said to differ."""
    fallbacks: dict[str, int]
    """Runs per fallback reason (why ``auto`` did not take the fast path)."""
    total: int


def layer_paths(runs: pd.DataFrame | None) -> LayerPaths | None:
    """The layer paths of ``runs``; None where no run recorded one."""
    if runs is None or Col.LAYER_PATH not in runs.columns:
        return None
    recorded = runs[Col.LAYER_PATH].dropna().astype(str)
    if recorded.empty:
        return None
    counts = {str(path): int(n) for path, n in recorded.value_counts().items()}
    acting = {
        word
        for path in counts
        for word in path.replace("(eval ", " ").replace(")", " ").split()
        if word != _NN_LSTM
    }
    fallbacks: dict[str, int] = {}
    if Col.LAYER_FALLBACK in runs.columns:
        reasons = runs[Col.LAYER_FALLBACK].dropna().astype(str).value_counts()
        fallbacks = {str(reason): int(n) for reason, n in reasons.items()}
    return LayerPaths(counts, len(runs) - len(recorded), len(acting) > 1, fallbacks, len(runs))


def layer_path_lines(paths: LayerPaths | None) -> list[str]:
    """The layer paths in a terminal's words: one line when every run took the same path, the
    count per path (a warning when they differ), each fallback's reason once."""
    if paths is None:
        return []
    if len(paths.counts) == 1:
        path, n = next(iter(paths.counts.items()))
        first = (
            f"{n} run{'s' if n != 1 else ''} used the {path} layer path "
            f"({paths.unrecorded} recorded none)"
            if paths.unrecorded
            else f"every run used the {path} layer path"
        )
    else:
        shown = ", ".join(f"{n} {path}" for path, n in paths.counts.items())
        if paths.unrecorded:
            shown += f", {paths.unrecorded} recorded none"
        first = (
            f"warning: runs used different layer paths: {shown}"
            if paths.differ
            else f"runs used the layer paths {shown} (nn_lstm: no rate to apply, nn.LSTM's "
            "own kernel)"
        )
    lines = [first]
    for reason, n in paths.fallbacks.items():
        runs_word = "every run" if n == paths.total else f"{n} run{'s' if n > 1 else ''}"
        lines.append(f"layer path fallback ({runs_word}): {reason}")
    return lines


def layer_path_line(runs: pd.DataFrame | None) -> str | None:
    """The report summary's sentence on the layer paths (None where no run recorded one)."""
    lines = layer_path_lines(layer_paths(runs))
    if not lines:
        return None
    return "Layer path: " + "; ".join(lines) + "."
