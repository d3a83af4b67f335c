"""The store's one exception type."""

from __future__ import annotations

from trials.errors import UserError


class StoreError(UserError, RuntimeError):
    """A store operation failed for a reason the user can act on.

    Messages are one line and never contain a database password.
    """
