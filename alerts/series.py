"""A growable, time-ordered numpy series per patient and metric (amortised O(1) appends)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


class Series:
    """Times (epoch seconds) and values, oldest first, bounded by age and length."""

    __slots__ = ("_last", "_n", "_t", "_v", "keep_s", "max_len")

    def __init__(self, keep_s: float, max_len: int, capacity: int = 16) -> None:
        self._t = np.empty(capacity)
        self._v = np.empty(capacity)
        self._n = 0
        self._last = 0.0  # newest time, as a Python float (cheaper than indexing numpy)
        self.keep_s = keep_s
        self.max_len = max_len

    def __len__(self) -> int:
        return self._n

    @property
    def times(self) -> Array:
        return self._t[: self._n]

    @property
    def values(self) -> Array:
        return self._v[: self._n]

    @property
    def last_time(self) -> float | None:
        return float(self._t[self._n - 1]) if self._n else None

    def add(self, t: float, v: float) -> bool:
        """Insert in time order; returns True when it is the newest sample."""
        if self._n == len(self._t):
            self._compact(t)
            if self._n == len(self._t):
                self._t = _grown(self._t)
                self._v = _grown(self._v)
        newest = self._n == 0 or t >= self._last
        if newest:
            self._last = t
            self._t[self._n] = t
            self._v[self._n] = v
        else:
            i = int(np.searchsorted(self._t[: self._n], t, side="right"))
            self._t[i + 1 : self._n + 1] = self._t[i : self._n]
            self._v[i + 1 : self._n + 1] = self._v[i : self._n]
            self._t[i] = t
            self._v[i] = v
        self._n += 1
        return newest

    def _compact(self, now_t: float) -> None:
        """Drop samples older than ``keep_s`` and beyond ``max_len``."""
        start = int(np.searchsorted(self._t[: self._n], now_t - self.keep_s, side="left"))
        start = max(start, self._n - self.max_len + 1)
        if start > 0:
            kept = self._n - start
            self._t[:kept] = self._t[start : self._n]
            self._v[:kept] = self._v[start : self._n]
            self._n = kept


def _grown(a: Array) -> Array:
    bigger = np.empty(2 * len(a))
    bigger[: len(a)] = a
    return bigger
