"""The deliberate public surface of dashboards (its layering: tests/study/test_layering.py)."""

from __future__ import annotations

from pathlib import Path

import dashboards

PACKAGE = Path(dashboards.__file__).parent

PUBLIC = {
    # what a user calls
    "analyze", "report_figures", "build_report", "save_figures_to_study", "save_note_section",
    "serve_dashboard", "seed_interval", "paired_difference", "select_configuration",
    "compare_methods", "write_comparison", "headline",
    # the report's browser session, started before the analysis is imported (about 1.5 s saved)
    "start_png_renderer", "PngRenderer",
    # which recurrent layer path the runs took (status and the summary say it)
    "layer_paths", "layer_path_lines", "LayerPaths",
    # a promoted study's two scales (the ladder): the section, and the statistics alone
    "promotion_section", "scale_agreement", "ScaleFrames", "ScaleAgreement",
    # the frame contract with study/: which trials the service retired (the `retired` column)
    "retired_kinds", "RETIRED_KINDS", "TrialState",
    # the frames' columns and their check (dashboards/_frame.py)
    "Col", "PARAM_PREFIX", "param_column", "ColumnSpec", "FrameSpec", "FrameContractError",
    "TRIALS_FRAME", "EPOCHS_FRAME", "RUNS_FRAME",
    # the data types those return
    "StudyAnalysis", "ReportResult", "DashboardServer", "Interval", "IntervalKind", "ConfigTable",
    "EpochChoice", "MetricInfo", "ParamImportance", "MethodResult", "MethodPair", "Comparison",
}  # fmt: skip


def test_public_names_are_the_deliberate_few() -> None:
    assert set(dashboards.__all__) == PUBLIC
    assert all(hasattr(dashboards, name) for name in PUBLIC)
    modules = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert modules and all(m.startswith("_") for m in modules), modules
