"""The ``zoneout-study`` command line.

Each command is a thin shell over a library function. A user mistake (a bad config, spec, path
or database URL, missing data: any :class:`study.errors.UserError`) ends with exit status 2 and
one line that says what to do; any other exception is a bug and ends with its traceback and exit
status 1. Inputs are checked before anything is written: a refused command leaves no file,
directory or row behind, and the commands that only read (``list``, ``status``, ``export``,
``report``, ``dashboard``) never create a database.

The package: ``_base`` (the app and the exit-code contract every command runs under),
``_paths`` (input and output paths checked up front), ``_storage`` (the ``--storage`` option;
what a database holds is asked of :mod:`study.store`), ``_words`` (the words and tables for
trials), and one module per command group.

Importing this package registers every command, so a command module imports at its top only what
registering needs (typer, rich, dashboards' frame names); what a command runs is imported inside
it. ``list``, ``status`` and ``export`` thus start without torch, Ray, scipy, scikit-learn or
plotly (``tests/study/test_read_sql_imports.py``).
"""

from __future__ import annotations

# The command modules, in the order `--help` lists the commands: each registers on import.
# isort: off
from study.cli import _train  # noqa: F401  train
from study.cli import _compare  # noqa: F401  compare
from study.cli import _run  # noqa: F401  run
from study.cli import _status  # noqa: F401  status, list
from study.cli import _export  # noqa: F401  export, promote
from study.cli import _report  # noqa: F401  report
from study.cli import _dashboard  # noqa: F401  dashboard
from study.cli import _db  # noqa: F401  db upgrade

# isort: on
from study.cli._base import app, console, error_console, fail, main
from study.cli._paths import check_output_dir, check_output_file

__all__ = [
    "app",
    "check_output_dir",
    "check_output_file",
    "console",
    "error_console",
    "fail",
    "main",
]
