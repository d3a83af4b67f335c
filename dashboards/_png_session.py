"""A headless Chromium that turns plotly figures into PNGs: the worker side of
:class:`dashboards.PngRenderer`, run in a process of its own.

Run as a script (``python _png_session.py BROWSER``), not imported through the package, so that
it starts without importing plotly, pandas or the analysis. It starts the browser at once on a
page that loads plotly.js (the copy inside the installed plotly package), reads one JSON list of
jobs from stdin meanwhile (``{"fig": <plotly JSON string>, "path", "width", "height"}``), draws
them all in that one page with ``Plotly.toImage`` and writes the files. It then prints one line
per figure that failed (``failed<TAB>path<TAB>reason``) and ``RENDERED``, and exits 0. An empty
stdin (the caller closed the session unused) ends it without drawing; any other failure is
written to stderr with exit status 1.

Why not kaleido: kaleido reloads its page (plotly.js included) after every figure and renders
one at a time; a report's five figures took 2.2-2.4 s there against 1.3 s in one page.
Why a process and not a thread: the browser's start-up handshake is Python code, and in a thread
it waits for the GIL while the caller imports the analysis and reads the study.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

#: The line the worker writes once every PNG is written (or reported failed).
RENDERED = "rendered\n"
FAILED = "failed"
#: Seconds for plotly.js to load, and for all figures to draw (kaleido's own limit is 90 s a
#: figure; a figure that hangs plotly.js hangs the page).
LOAD_TIMEOUT_S = 60.0
DRAW_TIMEOUT_S = 120.0

# One figure's PNG as a data URL; a failure as {failure} (an async callback, as toImage throws some
# refusals before it returns a promise). Plotly.toImage draws in a hidden div of its own, so the
# figures of one page do not meet.
_DRAW_JS = """
(async () => {
  const jobs = %s;
  const done = await Promise.allSettled(jobs.map(async j => Plotly.toImage(
    {data: j.fig.data || [], layout: j.fig.layout || {}},
    {format: 'png', width: j.width, height: j.height})));
  return done.map(d => d.status === 'fulfilled' ? {png: d.value} : {failure: String(d.reason)});
})()
"""


def plotly_js() -> Path:
    """plotly.min.js inside the installed plotly package (found without importing plotly)."""
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("plotly is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise RuntimeError(f"plotly.js not found at {path}")
    return path


async def _value(tab: Any, expression: str, *, wait: bool = False) -> Any:
    response = await tab.send_command(
        "Runtime.evaluate",
        params={"expression": expression, "returnByValue": True, "awaitPromise": wait},
    )
    refused = "error"  # frame-contract: not a column (the DevTools protocol's reply)
    if refused in response:
        raise RuntimeError(f"the browser refused: {response[refused]}")
    result = response["result"]
    if "exceptionDetails" in result:
        raise RuntimeError(f"JavaScript error: {result['exceptionDetails'].get('text')}")
    return result["result"].get("value")


async def _render(browser: str) -> None:
    # Read stdin while the browser starts: the caller may write more than a pipe holds and
    # must not wait for the browser to take it.
    reading = asyncio.create_task(asyncio.to_thread(sys.stdin.buffer.read))
    from choreographer import Browser

    with tempfile.TemporaryDirectory(prefix="zoneout-png-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(
            f'<html><head><meta charset="utf-8"><script src="{plotly_js().as_uri()}">'
            "</script></head><body></body></html>",
            encoding="utf-8",
        )
        async with Browser(path=browser, headless=True) as chromium:
            tab = await chromium.create_tab(page.as_uri())
            data = await reading
            if not data.strip():
                return
            jobs = json.loads(data)

            async def loaded() -> None:
                while await _value(tab, "typeof Plotly") != "object":
                    await asyncio.sleep(0.02)

            await asyncio.wait_for(loaded(), LOAD_TIMEOUT_S)
            # The figures' JSON goes into the script as it came, not parsed and written again.
            figures = ",".join(
                f'{{"fig": {j["fig"]}, "width": {int(j["width"])}, "height": {int(j["height"])}}}'
                for j in jobs
            )
            drawn = await asyncio.wait_for(
                _value(tab, _DRAW_JS % f"[{figures}]", wait=True), DRAW_TIMEOUT_S
            )
            for job, result in zip(jobs, drawn, strict=True):
                if "png" in result:
                    png = base64.b64decode(result["png"].split(",", 1)[1])
                    Path(job["path"]).write_bytes(png)
                else:
                    reason = " ".join(result["failure"].split())
                    sys.stdout.write(f"{FAILED}\t{job['path']}\t{reason}\n")
            # Said before the browser closes (0.2-0.5 s): the caller goes on meanwhile.
            sys.stdout.write(RENDERED)
            sys.stdout.flush()


def main(argv: list[str]) -> int:
    try:
        asyncio.run(_render(argv[1]))
    except BaseException as exc:  # the caller reads stderr; the browser raises many kinds
        traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"{type(exc).__name__}: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
