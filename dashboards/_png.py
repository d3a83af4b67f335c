"""PNGs of plotly figures: kaleido driving a Chromium found on the machine, one browser session
for all figures of a report.

The browser takes about 1.5 s to start here. :func:`start_png_renderer` opens the session in a
thread of its own so that it starts while the caller works: the report command starts it before
importing the analysis and reading the study, so the browser is up by the time the figures are.
This module imports nothing heavy (kaleido only inside the session's thread) for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import queue
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._common import sanitize_name

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["INSTALL_HINT", "PngRenderer", "find_browser", "start_png_renderer", "write_pngs"]

_log = logging.getLogger(__name__)

#: Executables searched on PATH (after the ``BROWSER_PATH`` environment variable).
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "install Chromium to get PNGs (Debian/Ubuntu: `apt-get install chromium`) or point the "
    "BROWSER_PATH environment variable at a Chrome/Chromium executable"
)
_SIZES = {"surface": (1300, 600), "differences": (1100, 700)}
_DEFAULT_SIZE = (1000, 560)


def find_browser() -> str | None:
    """A Chrome/Chromium executable: ``BROWSER_PATH`` if it is one, else the first on PATH."""
    env = os.environ.get("BROWSER_PATH")
    if env and os.path.isfile(env) and os.access(env, os.X_OK):
        return env
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class PngRenderer:
    """A kaleido session (Chromium) opened in a thread of its own ahead of the figures: the
    browser starts while the caller works, then renders the jobs :meth:`submit` hands it (what
    ``kaleido.write_fig_from_object_sync`` does, which starts the browser only when called)
    while the caller goes on; :meth:`result` waits for them. :meth:`close` ends the session,
    used or not."""

    def __init__(self, browser: str) -> None:
        self._jobs: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(maxsize=1)
        self._done: queue.Queue[BaseException | None] = queue.Queue(maxsize=1)
        self._submitted = False
        self._thread = threading.Thread(
            target=self._run, args=(browser,), name="kaleido-session", daemon=True
        )
        self._thread.start()

    def _run(self, browser: str) -> None:
        try:
            asyncio.run(self._session(browser))
        except BaseException as exc:  # handed to result(); kaleido raises many kinds
            self._done.put(exc)

    async def _session(self, browser: str) -> None:
        import kaleido

        async with kaleido.Kaleido(path=browser, mathjax=False) as k:
            jobs = await asyncio.to_thread(self._jobs.get)
            if jobs is None:
                return
            await k.write_fig_from_object(jobs)
        self._done.put(None)

    def submit(self, jobs: list[dict[str, Any]]) -> None:
        """Render ``jobs`` (kaleido's ``fig``/``path``/``opts`` dicts; figures as plain dicts, as
        the caller's thread goes on with the figure objects)."""
        self._submitted = True
        self._jobs.put(jobs)

    def result(self) -> None:
        """Wait for the submitted jobs; raise what the session raised."""
        error = self._done.get()
        if error is not None:
            raise error

    def close(self) -> None:
        if not self._submitted:
            self._submitted = True
            self._jobs.put(None)
        self._thread.join(timeout=60)


def start_png_renderer(browser: str | None = None) -> PngRenderer | None:
    """A kaleido session starting now in its own thread (the caller closes it), or None where
    the export will say why there is none (no browser, no kaleido)."""
    browser = browser or find_browser()
    if browser is None or importlib.util.find_spec("kaleido") is None:
        return None
    return PngRenderer(browser)


_PngExport = tuple[dict[str, Path], list[str]]


def export_pngs(
    figures: dict[str, go.Figure],
    out_dir: Path,
    prefix: str,
    *,
    browser: str | None,
    renderer: PngRenderer | None,
) -> Callable[[], _PngExport]:
    """Start the PNG export of ``figures`` (on ``renderer``'s session when given, which renders
    while the caller goes on) and return the function that waits for it: paths, messages."""
    browser = browser or find_browser()
    if browser is None:
        msg = f"PNG export skipped: no Chrome/Chromium found; {INSTALL_HINT}."
        return lambda: ({}, [msg])
    try:
        import kaleido
    except ImportError:
        msg = "PNG export skipped: kaleido is not installed (`pip install 'kaleido>=1'`)."
        return lambda: ({}, [msg])
    paths = {name: out_dir / f"{prefix}-{sanitize_name(name)}.png" for name in figures}
    jobs = []
    for name, fig in figures.items():
        w, h = _SIZES.get(name.split("-")[0], _DEFAULT_SIZE)
        w, h = int(fig.layout.width or w), int(fig.layout.height or h)
        jobs.append(
            {
                # kaleido makes the same dict of a figure itself; made here, the session's
                # thread never touches a figure object this thread still uses.
                "fig": fig.to_dict() if renderer is not None else fig,
                "path": str(paths[name]),
                "opts": {"format": "png", "width": w, "height": h},
            }
        )
    if renderer is not None:
        renderer.submit(jobs)

    def finish() -> _PngExport:
        try:
            if renderer is not None:
                renderer.result()
            else:
                kaleido.write_fig_from_object_sync(jobs, kopts={"path": browser, "mathjax": False})
        except Exception as exc:  # kaleido/choreographer raise many kinds; report, don't crash
            _log.warning("PNG export failed: %s", exc)
            return {}, [f"PNG export failed with {browser}: {type(exc).__name__}: {exc}"]
        again = [job for job in jobs if not Path(str(job["path"])).is_file()]
        if again:
            # On a loaded machine kaleido now and then returns without writing one figure of a
            # batch (seen for the surface and a marginal, not reproducible alone): one more try
            # of just those, before saying which are missing.
            with contextlib.suppress(Exception):
                kaleido.write_fig_from_object_sync(again, kopts={"path": browser, "mathjax": False})
        missing = [n for n, p in paths.items() if not p.is_file()]
        msgs = [f"PNG export produced no file for: {', '.join(missing)}"] if missing else []
        return {n: p for n, p in paths.items() if p.is_file()}, msgs

    return finish


def write_pngs(
    figures: dict[str, go.Figure],
    out_dir: Path,
    prefix: str,
    *,
    browser: str | None = None,
) -> tuple[dict[str, Path], list[str]]:
    """PNG per figure through kaleido (one browser session for all). Returns paths, messages."""
    return export_pngs(figures, out_dir, prefix, browser=browser, renderer=None)()
