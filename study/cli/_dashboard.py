"""``zoneout-study dashboard``: optuna-dashboard served on the study database."""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import typer

from study.cli._base import app, console
from study.cli._storage import open_store, storage_option
from study.errors import OptionError


@app.command()
def dashboard(
    storage: Annotated[str | None, storage_option()] = None,
    host: Annotated[str, typer.Option("--host", help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    allow_writes: Annotated[
        bool,
        typer.Option(
            "--allow-writes",
            help="let the dashboard change studies (delete, rename, notes, tell); read-only "
            "without it",
        ),
    ] = False,
) -> None:
    """Serve optuna-dashboard on the study database (bound to 127.0.0.1 unless told otherwise;
    read-only unless --allow-writes)."""
    from dashboards import serve_dashboard
    from study.store import mask_url

    store = open_store(storage)
    _check_port_free(host, port)
    mode = "may change studies" if allow_writes else "read-only"
    console.print(
        f"optuna-dashboard on http://{host}:{port} for {mask_url(store.url)}, {mode} "
        "(Ctrl-C stops)",
        markup=False,
    )
    serve_dashboard(
        store.url, host=host, port=port, background=False, quiet=False, allow_writes=allow_writes
    )


def _check_port_free(host: str, port: int) -> None:
    """optuna-dashboard would start and then die with a long traceback on a busy port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OptionError(f"--host {host!r}: cannot resolve ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # SO_REUSEADDR as the server sets it: a port in TIME_WAIT is free, one listened on is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            reason = "in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
            raise OptionError(
                f"port {port} on {host} is {reason}: choose another with --port "
                f"(e.g. --port {port + 1 if port < 65535 else 8080})"
            ) from None
