"""One error hierarchy for the service and its command line.

``ZoneoutError`` and ``UserError`` live in :mod:`trials.errors` (``trials`` may not import
``study``) and are re-exported here. Every error a user can fix derives from ``UserError``:

===========================  ==========================  =====================
error                        raised by                   also a
===========================  ==========================  =====================
``ConfigError``              trials.config               ``ValueError``
``DataNotFoundError``        trials.data                 ``FileNotFoundError``
``CorruptDataError``         trials.data (IDX files)     ``ValueError``
``SpecError``                study.spec                  ``ValueError``
``CheckpointError``          trials.checkpoints          ``ValueError``
``StoreError``               study.store                 ``RuntimeError``
``TableError``               study.tables                ``ValueError``
``StudyRunError``            study.runner                ``RuntimeError``
``RaySessionError``          study.ray_session           ``RuntimeError``
``ExportError``              study.export                ``ValueError``
``CompareError``             study.compare               -
``OptionError``              study.cli (host, port)      ``ValueError``
``PathError``                study.cli (paths)           ``OptionError``
===========================  ==========================  =====================

Not a ``UserError`` but in the hierarchy: ``trials.task_loops.Diverged`` (a run whose loss
became non-finite; ``train()`` makes it the status ``diverged``) and its subclass
``trials.trainable.TrialDiverged`` (the same, raised on a Ray worker so that Ray fails the
trial; also a ``RuntimeError``). The one exception outside it, ``trials.config``'s private
``_DuplicateKeyError``, never leaves the module: it becomes a ``ConfigError``.

The CLI turns a ``UserError`` into ``error: <message>`` and exit status 2; anything else is a
bug: its traceback is printed and the exit status is 1.
"""

from __future__ import annotations

from trials.errors import UserError, ZoneoutError

__all__ = ["OptionError", "PathError", "UserError", "ZoneoutError"]


class OptionError(UserError, ValueError):
    """A command-line value the command cannot use (a host that does not resolve, a busy
    port)."""


class PathError(OptionError):
    """A file-system path given on the command line has the wrong kind or is not writable."""
