"""The bookkeeping of the CUDA-graph cache (`graphs`), kept apart so that it imports neither torch
nor triton and is tested on any machine.

Entries live in plain dicts (insertion-ordered): the least recently used entry is the first one,
and a hit moves its entry to the end. `GraphBook` holds what the cache knows besides its entries:
how often each key was seen (a key is captured at its second sighting), which keys failed to
capture, and how many entries were evicted since the last `clear`, all bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

Entry = TypeVar("Entry")

# Keys whose sightings and failures are remembered: far more than the graphs kept, so a key is
# not forgotten between its first and its second sighting by a workload of a few shapes.
MAX_TRACKED_KEYS = 256


def lookup(entries: dict[Hashable, Entry], key: Hashable) -> Entry | None:
    """The entry under ``key`` (now the most recently used), or None."""
    entry = entries.pop(key, None)
    if entry is not None:
        entries[key] = entry
    return entry


def insert(
    entries: dict[Hashable, Entry],
    key: Hashable,
    entry: Entry,
    limit: int,
    on_evict: Callable[[Entry], None] | None = None,
) -> int:
    """Store ``entry`` as the most recently used and evict the least recently used entries
    beyond ``limit`` (each handed to ``on_evict`` first); returns how many were evicted."""
    entries.pop(key, None)
    entries[key] = entry
    evicted = 0
    while len(entries) > limit:
        oldest = entries.pop(next(iter(entries)))
        if on_evict is not None:
            on_evict(oldest)
        evicted += 1
    return evicted


def _remember(tally: dict[Hashable, int], key: Hashable, value: int) -> None:
    tally.pop(key, None)
    tally[key] = value
    while len(tally) > MAX_TRACKED_KEYS:
        del tally[next(iter(tally))]


class GraphBook:
    """Sightings, failures and evictions of one process's graph cache.

    ``capture_at``: the sighting at which a key is captured (a one-off shape stays eager).
    ``max_evictions``: after this many evictions since the last `clear`, no new key is captured
    (the workload has more shapes than the cache holds, and capturing in turn would cost more
    than the replays save); the entries already held keep replaying.
    """

    def __init__(self, capture_at: int, max_evictions: int) -> None:
        self.capture_at = capture_at
        self.max_evictions = max_evictions
        self.sightings: dict[Hashable, int] = {}
        self.failed: dict[Hashable, int] = {}  # keys whose capture failed (value unused)
        self.evictions = 0

    def clear(self) -> None:
        self.sightings.clear()
        self.failed.clear()
        self.evictions = 0

    def should_capture(self, key: Hashable) -> bool:
        """Count a sighting of ``key`` (not cached); True when it is to be captured now."""
        if key in self.failed or self.evictions >= self.max_evictions:
            return False
        seen = self.sightings.get(key, 0) + 1
        _remember(self.sightings, key, seen)
        return seen >= self.capture_at

    def mark_failed(self, key: Hashable) -> None:
        _remember(self.failed, key, 1)

    def get(
        self,
        entries: dict[Hashable, Entry],
        key: Hashable,
        build: Callable[[], Entry],
        limit: int,
        on_evict: Callable[[Entry], None] | None = None,
    ) -> Entry | None:
        """The cached entry of ``key``, else a new one built and cached when the key is due for
        capture (evicting the least recently used beyond ``limit``), else None. A ``build``
        that raises RuntimeError marks the key failed and re-raises."""
        entry = lookup(entries, key)
        if entry is not None or not self.should_capture(key):
            return entry
        try:
            entry = build()
        except RuntimeError:
            self.mark_failed(key)
            raise
        self.evictions += insert(entries, key, entry, limit, on_evict)
        return entry
