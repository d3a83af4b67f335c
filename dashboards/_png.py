"""PNGs of plotly figures: a headless Chromium found on the machine draws all figures of a report
in one page (plotly.js's own ``Plotly.toImage``), in a process of its own.

The browser takes about 1.5-2 s to start here. :func:`start_png_renderer` starts that process
so that the browser starts while the caller works: the report command starts it before importing
the analysis and reading the study, so the browser is up by the time the figures are. This
module imports nothing heavy for that reason; the process is ``_png_session.py``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

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
_SESSION_SCRIPT = Path(__file__).with_name("_png_session.py")
# What _png_session.py prints: a line per figure it could not draw, then RENDERED.
_RENDERED = b"rendered\n"
_FAILED = b"failed\t"
# How long close() waits for the browser to shut down before killing its process.
_CLOSE_TIMEOUT_S = 60


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
    """A headless Chromium started in a process of its own ahead of the figures: the browser
    starts while the caller works, then draws the figures :meth:`submit` hands it while the
    caller goes on; :meth:`result` waits for them. :meth:`close` ends the session, used or not.
    One session draws one batch of figures."""

    def __init__(self, browser: str) -> None:
        self.browser = browser
        # The worker's errors go to a file: a pipe nobody reads until the end could fill.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._proc = subprocess.Popen(
            [sys.executable, str(_SESSION_SCRIPT), browser],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._submitted = False

    def submit(self, figures: dict[Path, tuple[go.Figure, int, int]]) -> None:
        """Draw each figure (with its width and height in pixels) into its path."""
        if self._submitted:
            raise RuntimeError("a PNG session draws one batch; start another for more")
        self._submitted = True
        jobs = [
            {"fig": fig.to_json(), "path": str(path), "width": w, "height": h}
            for path, (fig, w, h) in figures.items()
        ]
        assert self._proc.stdin is not None
        # A worker that died already has its reason in stderr, which result() reports.
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write(json.dumps(jobs).encode())
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()

    def result(self) -> list[str]:
        """Wait for the submitted figures: one message per figure that could not be drawn.
        Raises RuntimeError with the session's own reason when it failed as a whole."""
        assert self._proc.stdout is not None
        failed = []
        for line in self._proc.stdout:  # whatever else the browser prints, then ours
            if line.startswith(_FAILED):
                _, path, reason = line.decode(errors="replace").rstrip("\n").split("\t", 2)
                failed.append(f"{Path(path).name}: {reason}")
            elif line == _RENDERED:
                return failed  # the browser closes while the caller goes on
        code = self._proc.wait()
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {code}"
        raise RuntimeError(f"the PNG session failed: {reason}")

    def close(self) -> None:
        """End the session: an unused one stops at once, a used one once its browser closed."""
        if not self._submitted:
            self._submitted = True
            assert self._proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=_CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._stderr.close()


def start_png_renderer(browser: str | None = None) -> PngRenderer | None:
    """A PNG session starting now in its own process (the caller closes it), or None where the
    export will say why there is none (no browser)."""
    browser = browser or find_browser()
    return PngRenderer(browser) if browser is not None else None


_PngExport = tuple[dict[str, Path], list[str]]


def export_pngs(
    figures: dict[str, go.Figure],
    out_dir: Path,
    prefix: str,
    *,
    browser: str | None,
    renderer: PngRenderer | None,
) -> Callable[[], _PngExport]:
    """Start the PNG export of ``figures`` (on ``renderer``'s session when given, else on one of
    its own, closed when done) and return the function that waits for it: paths, messages. The
    figures are drawn while the caller goes on."""
    own = renderer is None
    if renderer is None:
        renderer = start_png_renderer(browser)
    if renderer is None:
        msg = f"PNG export skipped: no Chrome/Chromium found; {INSTALL_HINT}."
        return lambda: ({}, [msg])
    paths = {name: out_dir / f"{prefix}-{sanitize_name(name)}.png" for name in figures}
    sized = {}
    for name, fig in figures.items():
        w, h = _SIZES.get(name.split("-")[0], _DEFAULT_SIZE)
        sized[paths[name]] = (fig, int(fig.layout.width or w), int(fig.layout.height or h))
    session = renderer
    session.submit(sized)

    def finish() -> _PngExport:
        try:
            failed = session.result()
        except Exception as exc:  # the session says why; report it, don't crash the report
            _log.warning("PNG export failed: %s", exc)
            return {}, [f"PNG export failed with {session.browser}: {type(exc).__name__}: {exc}"]
        finally:
            if own:
                session.close()
        msgs = [f"PNG export could not draw {f}" for f in failed]
        missing = [n for n, p in paths.items() if not p.is_file()]
        if missing and not failed:
            msgs.append(f"PNG export produced no file for: {', '.join(missing)}")
        return {n: p for n, p in paths.items() if p.is_file()}, msgs

    return finish


def write_pngs(
    figures: dict[str, go.Figure],
    out_dir: Path,
    prefix: str,
    *,
    browser: str | None = None,
) -> tuple[dict[str, Path], list[str]]:
    """PNG per figure, all drawn in one browser page. Returns paths, messages."""
    return export_pngs(figures, out_dir, prefix, browser=browser, renderer=None)()
