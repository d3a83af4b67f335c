"""Sensitivity analysis of zoneout studies, for a study's stored frames.

The few things a user calls:

- :func:`analyze` -> :class:`StudyAnalysis` (pure data) and :func:`report_figures` (plotly);
- :func:`build_report` -> :class:`ReportResult`: an offline HTML report, PNGs and a summary;
  :func:`start_png_renderer` -> :class:`PngRenderer`: its browser session, started early;
- :func:`save_figures_to_study`, :func:`save_note_section`, :func:`serve_dashboard`: the
  bridge into optuna-dashboard;
- :func:`seed_interval` / :func:`paired_difference` -> :class:`Interval`: means over seeds and
  seed-paired differences with the interval their n supports;
- :func:`select_configuration`, :func:`compare_methods`, :func:`write_comparison`: Table 1
  across regularizers (:class:`MethodResult`, :class:`Comparison`);
- the frame contract (``_frame.py``): :class:`Col` (the frames' column names),
  :class:`TrialState`, :data:`PARAM_PREFIX` / :func:`param_column`, and :data:`TRIALS_FRAME`,
  :data:`EPOCHS_FRAME`, :data:`RUNS_FRAME` (:class:`FrameSpec`), which every entry point taking
  frames checks, raising :class:`FrameContractError` that names the frame and the column;
- :func:`retired_kinds`: which trials of a trials frame the service retired, and why (its
  ``retired`` column; the error text, for a frame from an older version without it).

Everything else lives in private modules. ``dashboards`` never imports ``study``: the service
reads the store and hands DataFrames (and the Optuna study) in.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The frame contract is what the service imports on every command: it loads at once and is
# light (numpy, pandas). Everything else (plotly, scikit-learn, optuna-dashboard, ...) loads on
# first use, so `import dashboards` costs a command that never draws a figure almost nothing.
from ._frame import (
    EPOCHS_FRAME,
    PARAM_PREFIX,
    RUNS_FRAME,
    TRIALS_FRAME,
    Col,
    ColumnSpec,
    FrameContractError,
    FrameSpec,
    TrialState,
    param_column,
)

if TYPE_CHECKING:
    from ._analysis import StudyAnalysis, analyze
    from ._common import MetricInfo
    from ._compare import (
        Comparison,
        MethodPair,
        MethodResult,
        compare_methods,
        select_configuration,
        write_comparison,
    )
    from ._configs import ConfigTable
    from ._figures import report_figures
    from ._importance import ParamImportance
    from ._ladder import ScaleAgreement, scale_agreement
    from ._layer_paths import LayerPaths, layer_path_lines, layer_paths
    from ._optuna_bridge import (
        DashboardServer,
        save_figures_to_study,
        save_note_section,
        serve_dashboard,
    )
    from ._outcomes import RETIRED_KINDS, retired_kinds
    from ._png import PngRenderer, start_png_renderer
    from ._promotion import ScaleFrames, promotion_section
    from ._report import ReportResult, build_report
    from ._runs import EpochChoice
    from ._stats import Interval, IntervalKind, paired_difference, seed_interval
    from ._summary import headline

# Public name -> the private module that defines it (loaded on first access, PEP 562).
_LAZY = {
    "LayerPaths": "_layer_paths",
    "layer_path_lines": "_layer_paths",
    "layer_paths": "_layer_paths",
    "headline": "_summary",
    "Comparison": "_compare",
    "ConfigTable": "_configs",
    "DashboardServer": "_optuna_bridge",
    "EpochChoice": "_runs",
    "Interval": "_stats",
    "IntervalKind": "_stats",
    "MethodPair": "_compare",
    "MethodResult": "_compare",
    "MetricInfo": "_common",
    "ParamImportance": "_importance",
    "PngRenderer": "_png",
    "RETIRED_KINDS": "_outcomes",
    "ReportResult": "_report",
    "ScaleAgreement": "_ladder",
    "ScaleFrames": "_promotion",
    "StudyAnalysis": "_analysis",
    "analyze": "_analysis",
    "build_report": "_report",
    "compare_methods": "_compare",
    "paired_difference": "_stats",
    "promotion_section": "_promotion",
    "report_figures": "_figures",
    "retired_kinds": "_outcomes",
    "save_figures_to_study": "_optuna_bridge",
    "save_note_section": "_optuna_bridge",
    "scale_agreement": "_ladder",
    "seed_interval": "_stats",
    "select_configuration": "_compare",
    "serve_dashboard": "_optuna_bridge",
    "start_png_renderer": "_png",
    "write_comparison": "_compare",
}

__all__ = [
    "EPOCHS_FRAME",
    "PARAM_PREFIX",
    "RETIRED_KINDS",
    "RUNS_FRAME",
    "TRIALS_FRAME",
    "Col",
    "ColumnSpec",
    "Comparison",
    "ConfigTable",
    "DashboardServer",
    "EpochChoice",
    "FrameContractError",
    "FrameSpec",
    "Interval",
    "IntervalKind",
    "LayerPaths",
    "MethodPair",
    "MethodResult",
    "MetricInfo",
    "ParamImportance",
    "PngRenderer",
    "ReportResult",
    "ScaleAgreement",
    "ScaleFrames",
    "StudyAnalysis",
    "TrialState",
    "analyze",
    "build_report",
    "compare_methods",
    "headline",
    "layer_path_lines",
    "layer_paths",
    "paired_difference",
    "param_column",
    "promotion_section",
    "report_figures",
    "retired_kinds",
    "save_figures_to_study",
    "save_note_section",
    "scale_agreement",
    "seed_interval",
    "select_configuration",
    "serve_dashboard",
    "start_png_renderer",
    "write_comparison",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dashboards' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
