"""build_report: offline HTML, PNGs (plotly.js in Chromium), and the reports opened in Chromium,
where every figure must show data (not just axes) and a colour bar where colour carries value.

Screenshots of each rendered report are saved under $ZONEOUT_SCREENSHOTS (else the test's
temporary directory) so a person can look at them.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
from pathlib import Path

import pandas as pd
import pytest

import dashboards as d
from dashboards._png import find_browser
from study.report import write_table_report

Frames = tuple[pd.DataFrame, pd.DataFrame]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IN_CI = bool(os.environ.get("CI"))
RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results" / "ptb-char"


def _browser_or_skip() -> str:
    """The Chromium to use; in CI a missing browser is a failure, elsewhere a skip."""
    path = find_browser()
    if path is None:
        msg = "no Chromium found: apt-get install -y chromium (or set BROWSER_PATH)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def report(study_frames: Frames, tmp_path_factory: pytest.TempPathFactory) -> d.ReportResult:
    trials, epochs = study_frames
    out = tmp_path_factory.mktemp("report")
    return d.build_report(
        trials,
        epochs,
        study_name="../ptb char/<zoneout>",
        metric="bpc",
        max_epochs=9,
        out_dir=out,
        grace_period=1,
        reduction_factor=3,
        png=find_browser() is not None,
    )


def test_html_is_self_contained(report: d.ReportResult) -> None:
    html = report.html_path.read_text(encoding="utf-8")
    assert report.html_path.name == "ptb_char_zoneout-report.html"  # sanitized: no path escape
    assert len(html) > 3_000_000  # plotly.js inlined (~4.5 MB)
    srcs = re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", html, flags=re.I)
    assert not [s for s in srcs if s.startswith(("http:", "https:", "//"))], srcs
    assert html.count('class="plotly-graph-div"') == len(report.figures)
    assert "&lt;zoneout&gt;" in html and "<zoneout>" not in html  # title escaped
    assert "Epoch read" in html and "Parameter importance not computed" in html


def test_pngs_written(report: d.ReportResult) -> None:
    _browser_or_skip()
    assert not report.messages, report.messages
    assert set(report.png_paths) == set(report.figures)
    for path in report.png_paths.values():
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000


def test_a_session_started_by_the_caller_renders_the_pngs_and_stays_the_callers(
    study_frames: Frames, tmp_path: Path
) -> None:
    """The report command starts the browser before it imports the analysis; build_report
    renders with that session and leaves closing it to the caller."""
    _browser_or_skip()
    trials, epochs = study_frames
    renderer = d.start_png_renderer()
    assert isinstance(renderer, d.PngRenderer)
    closed: list[bool] = []
    close = renderer.close
    renderer.close = lambda: closed.append(True)  # type: ignore[method-assign]
    result = d.build_report(
        trials, epochs, study_name="s", metric="bpc", max_epochs=9, out_dir=tmp_path,
        renderer=renderer,
    )  # fmt: skip
    assert not closed  # the caller's to close
    close()
    assert not result.messages, result.messages
    assert set(result.png_paths) == set(result.figures) and result.figures
    for path in result.png_paths.values():
        assert path.read_bytes()[:8] == PNG_MAGIC


def test_a_session_that_cannot_start_its_browser_says_why_and_html_is_still_written(
    study_frames: Frames, tmp_path: Path
) -> None:
    """The session's process fails (its "browser" is not one): the report names the failure
    and the HTML is written all the same."""
    fake = tmp_path / "not-a-browser"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    trials, epochs = study_frames
    renderer = d.PngRenderer(str(fake))
    try:
        result = d.build_report(
            trials, epochs, study_name="s", metric="bpc", max_epochs=9, out_dir=tmp_path,
            renderer=renderer, browser=str(fake),
        )  # fmt: skip
    finally:
        renderer.close()
    assert result.html_path.is_file() and not result.png_paths
    assert len(result.messages) == 1, result.messages
    assert result.messages[0].startswith(f"PNG export failed with {fake}: RuntimeError: ")


def test_a_figure_the_browser_cannot_draw_is_named_and_the_others_are_written(
    tmp_path: Path,
) -> None:
    """Plotly.toImage refuses a 0-pixel width: that figure gets a message saying why, the
    other of the same batch its PNG."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2]))
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    renderer = d.PngRenderer(_browser_or_skip())
    try:
        renderer.submit({good: (fig, 400, 300), bad: (fig, 0, 300)})
        failed = renderer.result()
    finally:
        renderer.close()
    assert good.read_bytes()[:8] == PNG_MAGIC and not bad.exists()
    assert failed == ["bad.png: Error: Height and width should be pixel values."]


def test_a_session_closed_unused_ends_its_process() -> None:
    """The report command may stop before it has figures (an empty study, an error): closing
    the session it started ends the browser's process with nothing rendered."""
    renderer = d.PngRenderer(_browser_or_skip())
    proc = renderer._proc
    renderer.close()
    assert proc.returncode == 0


def test_missing_browser_still_writes_html(
    study_frames: Frames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "nope"))
    assert find_browser() is None
    trials, epochs = study_frames
    res = d.build_report(
        trials.head(8), epochs, study_name="tiny", metric="error", max_epochs=9, out_dir=tmp_path
    )
    assert res.html_path.is_file() and not res.png_paths
    assert any("apt-get install chromium" in m for m in res.messages)


# Per plot: traces drawn as visible marks, whether a trace's colour carries a value, colour bars.
_INSPECT = """
Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => {
  const marks = gd.querySelectorAll(
    '.scatterlayer .point, .heatmaplayer image, .contourlayer path, .barlayer .point'
  ).length + Array.from(gd.querySelectorAll('.scatterlayer .js-line'))
    .filter(p => (p.getAttribute('d') || '').length > 10).length;
  const valued = (gd.data || []).some(t =>
    ((t.type === 'heatmap' || t.type === 'contour') && t.showscale !== false) ||
    (t.marker && t.marker.color && typeof t.marker.color !== 'string' &&
     (Array.isArray(t.marker.color) || ArrayBuffer.isView(t.marker.color) ||
      typeof t.marker.color === 'object')));
  return [gd.id, marks, valued, gd.querySelectorAll('.colorbar').length];
})
"""


async def _render(pages: dict[str, Path], browser: str, shots: Path) -> dict[str, list]:
    """Open each report, wait for plotly, inspect every plot, save a full-page screenshot."""
    from choreographer import Browser

    found: dict[str, list] = {}
    async with Browser(path=browser, headless=True) as b:
        for name, html in pages.items():
            tab = await b.create_tab("about:blank")
            await tab.send_command(
                "Emulation.setDeviceMetricsOverride",
                params={"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
            )
            await tab.send_command("Page.enable")
            await tab.send_command("Page.navigate", params={"url": html.as_uri()})
            want = html.read_text(encoding="utf-8").count('class="plotly-graph-div"')
            plots: list = []
            for _ in range(300):
                r = await tab.send_command(
                    "Runtime.evaluate", params={"expression": _INSPECT, "returnByValue": True}
                )
                plots = r.get("result", {}).get("result", {}).get("value") or []
                if len(plots) == want and all(p[1] > 0 for p in plots):
                    break
                await asyncio.sleep(0.2)
            r = await tab.send_command(
                "Page.captureScreenshot", params={"format": "png", "captureBeyondViewport": True}
            )
            (shots / f"{name}.png").write_bytes(base64.b64decode(r["result"]["data"]))
            found[name] = plots
            await tab.close()
    return found


@pytest.mark.browser
def test_reports_show_data_and_colour_bars_in_headless_chromium(
    report: d.ReportResult,
    make_grid,
    make_frames,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    browser = _browser_or_skip()
    shots = Path(os.environ.get("ZONEOUT_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    pages = {"synthetic-asha": report.html_path}
    trials, epochs = make_grid()
    pages["synthetic-grid-3x2"] = d.build_report(
        trials,
        epochs,
        study_name="grid",
        metric="bpc",
        max_epochs=4,
        out_dir=tmp_path / "g",
        png=False,
    ).html_path
    trials, epochs = make_frames(4, seed=3)
    pages["synthetic-4-trials"] = d.build_report(
        trials,
        epochs,
        study_name="four",
        metric="bpc",
        max_epochs=9,
        out_dir=tmp_path / "f",
        png=False,
    ).html_path
    for study in ("ptb-char-sensitivity", "overfit/ptb-char-overfit"):
        csv = RESULTS / f"{study}-trials.csv"
        pages[Path(study).name] = write_table_report(
            csv,
            tmp_path / Path(study).name,
            spec_path=csv.with_name(f"{Path(study).name}.yaml"),
            png=False,
        ).html_path
    found = asyncio.run(asyncio.wait_for(_render(pages, browser, shots), timeout=240))
    for name, plots in found.items():
        assert plots, f"{name}: no plot rendered"
        for plot_id, marks, valued, colorbars in plots:
            assert marks > 0, f"{name}/{plot_id}: axes without data"
            if valued:
                assert colorbars >= 1, f"{name}/{plot_id}: colour without a colour bar"
        assert (shots / f"{name}.png").read_bytes()[:8] == PNG_MAGIC
    print(f"screenshots in {shots}")
