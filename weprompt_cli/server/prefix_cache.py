"""The prefix state cache: a hash of a token prefix -> the RNN state after feeding it.

Chat clients resend the whole conversation on every request. The state after a prefix
depends on nothing but the prefix's token ids (one model per server), so the server
keys states by a running sha256 over the ids, taken at message boundaries, and a
request only feeds the tokens after the longest prefix it finds.

The key of a prefix does not depend on how it was split into segments: the hash runs
over the concatenated ids. Entries are evicted least-recently-used first until both
bounds hold (entries and bytes); a state larger than the byte bound is never kept.
States go in and come out as clones: `forward` may update a state in place.
"""

from __future__ import annotations

import hashlib
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")


def prefix_keys(segments: Iterable[Sequence[int]], namespace: str = "") -> list[str]:
    """The cache key after each segment: `keys[i]` covers segments 0..i."""
    h = hashlib.sha256(namespace.encode("utf-8") + b"\0")
    keys: list[str] = []
    for segment in segments:
        h.update(array("I", segment).tobytes())  # uint32: 65536+ vocabularies fit
        keys.append(h.copy().hexdigest())
    return keys


@dataclass
class _Entry(Generic[S]):
    state: S
    tokens: int  # length of the prefix, for the stats
    nbytes: int


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    hits: int
    misses: int
    tokens_reused: int
    evictions: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class PrefixCache(Generic[S]):
    """An LRU map of prefix keys to cloned states, bounded by entry count and total bytes."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clone: Callable[[S], S],
        nbytes: Callable[[S], int],
    ) -> None:
        self.max_entries = max(0, max_entries)
        self.max_bytes = max(0, max_bytes)
        self._clone = clone
        self._nbytes = nbytes
        self._entries: OrderedDict[str, _Entry[S]] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._reused = self._evictions = 0
        # The worker thread writes; /health reads the stats from the event loop.
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def longest(self, keys: Sequence[str]) -> tuple[int, S] | None:
        """The last index i whose `keys[i]` is cached, with a clone of its state; None on a miss."""
        with self._lock:
            for i in range(len(keys) - 1, -1, -1):
                entry = self._entries.get(keys[i])
                if entry is not None:
                    self._entries.move_to_end(keys[i])
                    self._hits += 1
                    self._reused += entry.tokens
                    return i, self._clone(entry.state)
            self._misses += 1
            return None

    def get(self, key: str) -> S | None:
        """A clone of the state under `key`, or None."""
        found = self.longest([key])
        return found[1] if found else None

    def put(self, key: str, state: S, tokens: int) -> bool:
        """Keep a clone of `state` under `key`; False when it cannot fit (or caching is off)."""
        if not self.enabled:
            return False
        size = self._nbytes(state)
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
        copy = self._clone(state)  # outside the lock: cloning a big state takes a moment
        with self._lock:
            self._entries[key] = _Entry(copy, tokens, size)
            self._bytes += size
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= evicted.nbytes
                self._evictions += 1
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                entries=len(self._entries),
                bytes=self._bytes,
                max_entries=self.max_entries,
                max_bytes=self.max_bytes,
                hits=self._hits,
                misses=self._misses,
                tokens_reused=self._reused,
                evictions=self._evictions,
            )
