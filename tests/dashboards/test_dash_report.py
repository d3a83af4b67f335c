"""build_report: offline HTML, PNGs through kaleido, the report rendered in headless Chromium."""

from __future__ import annotations

import asyncio
import base64
import os
import re
from pathlib import Path

import pandas as pd
import pytest

import dashboards as d

Frames = tuple[pd.DataFrame, pd.DataFrame]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IN_CI = bool(os.environ.get("CI"))


def _browser_or_skip() -> str:
    """The Chromium to use; in CI a missing browser is a failure, elsewhere a skip."""
    path = d.find_browser()
    if path is None:
        msg = "no Chromium found: apt-get install -y chromium (or set BROWSER_PATH)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def report(study_frames: Frames, tmp_path_factory: pytest.TempPathFactory) -> d.ReportResult:
    trials, epochs = study_frames
    browser = d.find_browser()
    out = tmp_path_factory.mktemp("report")
    return d.build_report(
        trials, epochs, study_name="../ptb char/<zoneout>", metric="bpc", max_epochs=9,
        out_dir=out, grace_period=1, reduction_factor=3, png=browser is not None,
    )  # fmt: skip


def test_html_is_self_contained(report: d.ReportResult) -> None:
    html = report.html_path.read_text(encoding="utf-8")
    # sanitized name: stays in out_dir, no separators
    assert report.html_path.name == "ptb_char_zoneout-report.html"
    assert report.html_path.parent == report.summary_path.parent  # type: ignore[union-attr]
    assert len(html) > 3_000_000  # plotly.js inlined (~4.5 MB)
    assert "Plotly.newPlot" in html
    srcs = re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", html, flags=re.I)
    assert not [s for s in srcs if s.startswith(("http:", "https:", "//"))], srcs
    assert html.count("/** vim: set ts=2") <= 1 and html.count('class="plotly-graph-div"') >= 8
    assert "&lt;zoneout&gt;" in html and "<zoneout>" not in html  # title escaped
    assert "Most important parameter" in html  # the Markdown summary, rendered
    assert "<strong>zoneout_cell</strong>" in html


def test_pngs_written(report: d.ReportResult) -> None:
    _browser_or_skip()
    assert not report.messages, report.messages
    assert set(report.png_paths) == set(report.figures)
    for path in report.png_paths.values():
        assert path.read_bytes()[:8] == PNG_MAGIC
        assert path.stat().st_size > 5_000


def test_missing_browser_still_writes_html(
    study_frames: Frames, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "nope"))
    assert d.find_browser() is None
    trials, epochs = study_frames
    res = d.build_report(
        trials.head(8), epochs, study_name="tiny", metric="error", max_epochs=9, out_dir=tmp_path
    )
    assert res.html_path.is_file() and not res.png_paths
    assert any("apt-get install chromium" in m for m in res.messages)


async def _render(url: str, browser: str, shot: Path) -> tuple[int, int, list[str]]:
    """Open ``url`` over the DevTools protocol, wait for plotly, collect JS errors, screenshot."""
    from choreographer import Browser

    errors: list[str] = []

    async def on_exception(msg: dict) -> None:
        detail = msg.get("params", {}).get("exceptionDetails", {})
        errors.append(str(detail.get("exception", {}).get("description") or detail))

    async def on_log(msg: dict) -> None:
        entry = msg.get("params", {}).get("entry", {})
        if entry.get("level") == "error":
            errors.append(f"{entry.get('source')}: {entry.get('text')}")

    async with Browser(path=browser, headless=True) as b:
        tab = await b.create_tab("about:blank")
        await tab.send_command(
            "Emulation.setDeviceMetricsOverride",
            params={"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
        )
        tab.subscribe("Runtime.exceptionThrown", on_exception)
        tab.subscribe("Log.entryAdded", on_log)
        for domain in ("Runtime", "Log", "Page"):
            await tab.send_command(f"{domain}.enable")
        await tab.send_command("Page.navigate", params={"url": url})
        js = (
            "[document.querySelectorAll('.js-plotly-plot').length,"
            " document.querySelectorAll('.js-plotly-plot svg.main-svg').length,"
            " document.readyState]"
        )
        plots = svgs = 0
        for _ in range(150):
            r = await tab.send_command(
                "Runtime.evaluate", params={"expression": js, "returnByValue": True}
            )
            val = r.get("result", {}).get("result", {}).get("value") or [0, 0, ""]
            plots, svgs, state = val
            if state == "complete" and plots >= 8 and svgs >= 2 * plots:
                break
            await asyncio.sleep(0.2)
        r = await tab.send_command(
            "Page.captureScreenshot", params={"format": "png", "captureBeyondViewport": False}
        )
        shot.write_bytes(base64.b64decode(r["result"]["data"]))
    return plots, svgs, errors


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report: d.ReportResult, tmp_path: Path) -> None:
    browser = _browser_or_skip()
    shot = tmp_path / "report.png"
    plots, svgs, errors = asyncio.run(
        asyncio.wait_for(_render(report.html_path.as_uri(), browser, shot), timeout=90)
    )
    assert plots == len(report.figures)
    assert svgs >= 2 * plots  # plotly draws two main-svg layers per plot
    assert not errors, errors
    assert shot.read_bytes()[:8] == PNG_MAGIC
