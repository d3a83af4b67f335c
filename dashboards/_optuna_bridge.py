"""The bridge into optuna-dashboard: figures and the summary saved into the study, and a server."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import optuna
import plotly.graph_objects as go

__all__ = [
    "DashboardServer",
    "graph_object_id",
    "save_figures_to_study",
    "save_note_section",
    "serve_dashboard",
]

_log = logging.getLogger(__name__)
_STORAGE_ENV = "ZONEOUT_DASHBOARD_STORAGE"
# The storage URL travels through the environment, not argv, so a password never shows in `ps`.
_CHILD = (
    "import os, sys\n"
    "from dashboards import serve_dashboard\n"
    f"url = os.environ.pop({_STORAGE_ENV!r})\n"
    "serve_dashboard(url, host=sys.argv[1], port=int(sys.argv[2]), background=False,\n"
    "                allow_writes=sys.argv[3] == 'writes')\n"
)
# What a browser needs to look: every other method changes a study (optuna-dashboard deletes,
# renames and creates studies, tells trials, writes notes, attributes and artifacts).
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_ONLY_REASON = (
    "this optuna-dashboard is read-only: `zoneout-study dashboard --allow-writes` serves one "
    "that may change studies"
)


def _serve_forever(app: Any, host: str, port: int, *, quiet: bool) -> None:
    """The standard library's WSGI server, as optuna-dashboard's own ``run_server`` uses."""
    import socket
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Handler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            if not quiet:
                super().log_message(format, *args)

    with make_server(host, port, app, server_class=Server, handler_class=Handler) as server:
        server.serve_forever()


def read_only(app: Any) -> Any:
    """A WSGI application that answers every request that would write with 403 and passes the
    rest to ``app``."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        if str(environ.get("REQUEST_METHOD", "GET")).upper() in _READ_METHODS:
            return app(environ, start_response)
        body = json.dumps({"reason": READ_ONLY_REASON}).encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded


def graph_object_id(name: str) -> str:
    """A stable optuna-dashboard graph-object id for a figure name (letters, digits, - _ : .)."""
    gid = re.sub(r"[^A-Za-z0-9_:.-]+", "-", name).strip("-")
    return gid if gid[:1].isalpha() else f"fig-{gid or 'figure'}"


def _sections(note: str) -> list[str]:
    """A note split at its level-2 headings (each section starts with '## ')."""
    parts: list[str] = []
    for line in note.splitlines(keepends=True):
        if line.startswith("## ") or not parts:
            parts.append(line)
        else:
            parts[-1] += line
    return [p for p in parts if p.strip()]


def save_note_section(study: optuna.Study, markdown: str) -> None:
    """Put ``markdown`` (starting with a '## ' heading) into the study note, replacing the
    section with the same heading's first words and keeping every other section (the report's
    summary and the compare command's Table 1 share the one study note)."""
    from optuna_dashboard import save_note
    from optuna_dashboard._note import get_note

    key = " ".join(markdown.lstrip().splitlines()[0].split()[:3])
    kept = [p for p in _sections(get_note(study)) if " ".join(p.split()[:3]) != key]
    save_note(study, "\n".join([markdown.rstrip() + "\n", *[p.rstrip() + "\n" for p in kept]]))


def save_figures_to_study(
    study: optuna.Study, figures: dict[str, go.Figure], summary_markdown: str
) -> list[str]:
    """Save each figure with ``optuna_dashboard.save_plotly_graph_object`` (a stable id per name,
    so saving again overwrites) and the Markdown summary into the study note. Returns the ids."""
    from optuna_dashboard import save_plotly_graph_object

    ids = []
    for name, fig in figures.items():
        ids.append(save_plotly_graph_object(study, fig, graph_object_id=graph_object_id(name)))
    save_note_section(study, summary_markdown)
    return ids


@dataclass
class DashboardServer:
    """A running optuna-dashboard subprocess; ``stop()`` (or leaving the ``with`` block) ends it."""

    process: subprocess.Popen[bytes]
    host: str
    port: int

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    def running(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until ``/api/meta`` answers; raise if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise RuntimeError(f"optuna-dashboard exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/meta", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"optuna-dashboard did not answer on {self.url} in {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_dashboard(
    storage_url: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    background: bool = True,
    wait: bool = True,
    timeout: float = 30.0,
    quiet: bool = True,
    allow_writes: bool = False,
) -> DashboardServer | None:
    """Start optuna-dashboard on ``storage_url`` bound to ``host`` (loopback by default: the
    dashboard has no authentication, so bind elsewhere only on a trusted network).

    ``background=True``: a subprocess is started and a :class:`DashboardServer` returned, ready
    when ``wait``. ``background=False``: serve in this process until interrupted, return None.
    Read-only unless ``allow_writes``: requests that would change a study get 403.
    """
    if host not in ("127.0.0.1", "localhost", "::1"):
        _log.warning("optuna-dashboard bound to %s: it has no authentication", host)
    if not background:
        from optuna_dashboard import wsgi

        app = wsgi(storage_url)
        _serve_forever(app if allow_writes else read_only(app), host, port, quiet=quiet)
        return None
    env = dict(os.environ)
    env[_STORAGE_ENV] = storage_url
    out = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, host, str(port), "writes" if allow_writes else "read"],
        env=env,
        stdout=out,
        stderr=out,
    )
    server = DashboardServer(proc, host, port)
    if wait:
        try:
            server.wait_ready(timeout)
        except BaseException:
            server.stop()
            raise
    return server
