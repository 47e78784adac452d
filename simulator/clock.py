"""Simulated time: real time sped up, plus manual jumps for deterministic tests."""

from __future__ import annotations

import time
from collections.abc import Callable


class SimClock:
    """Simulated seconds since the clock was created.

    ``now() = (real monotonic seconds elapsed) * time_scale + sum of advance()``.
    A time_scale of 0 freezes time except for explicit ``advance`` calls, which
    is what tests use.
    """

    def __init__(self, time_scale: float, monotonic: Callable[[], float] = time.monotonic) -> None:
        if time_scale < 0:
            raise ValueError("time_scale must be >= 0")
        self.time_scale = time_scale
        self._monotonic = monotonic
        self._start = monotonic()
        self._offset = 0.0

    def now(self) -> float:
        return (self._monotonic() - self._start) * self.time_scale + self._offset

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += seconds
