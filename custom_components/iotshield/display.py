"""What a reading entity shows and when it writes: a throttled mean of the node's noised readings.

Plain Python with no Home Assistant import. Every reading carries deliberate privacy noise, so a
state per reading makes every value new: one recorder row per reading and a dashboard that jitters
by the noise. Averaging the readings costs no privacy (it is post-processing) and divides the
noise by √n. A routine write comes at most once a minute, and only when the last minute's mean
moved beyond what its own noise explains; otherwise the mean of everything since the last write
is written every few minutes. A change of what matters for safety (availability, severity,
hazards) is written at once and starts a new average, so a hazard's value is not diluted by the
calm minute before it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
import math

# Seconds of readings whose mean tells whether the room changed; also the least time between
# two routine writes.
WINDOW = 60.0
# Seconds after which the mean since the last write is written even in a steady room, so that
# history and long-term statistics (five-minute periods) follow slow drifts.
HEARTBEAT = 300.0
# A last-minute mean this many of its standard errors away from the value shown is a change, not
# noise: in a steady room about one minute in a hundred passes for one by chance.
CHANGE_SIGMAS = 3.5
# Readings it takes to estimate their noise.
MIN_SPREAD_READINGS = 2


@dataclass(slots=True)
class Decision:
    """Whether to write now, and the value to show if so."""

    write: bool
    value: float | None = None


@dataclass
class ReadingMean:
    """Averages one continuous reading and decides when its entity writes its state.

    `step` is the smallest change worth showing (the entity's display precision); `digits` how
    many decimals the written mean keeps.
    """

    step: float
    digits: int
    window: float = WINDOW
    heartbeat: float = HEARTBEAT
    shown: float | None = None
    _written_at: float | None = None
    _urgent: Hashable = None
    _recent: deque[tuple[float, float]] = field(default_factory=deque)
    _since_sum: float = 0.0
    _since_squares: float = 0.0
    _since_count: int = 0

    def add(self, at: float, value: float | None, urgent: Hashable) -> Decision:
        """Take a reading (None: the sensor failed) received at `at` seconds; say what to write.

        `urgent` sums up what must be shown at once when it changes: availability, severity and
        hazards. The first reading, and the first after an unknown value, is written at once too.
        """
        settled = urgent == self._urgent and self._written_at is not None
        if value is None:
            # A failed sensor is news: shown at once as unknown, a new average follows.
            if settled and self.shown is None:
                return Decision(write=False)
            self._urgent = urgent
            self._restart()
            return self._write(at, None)
        if not settled or self.shown is None:
            self._urgent = urgent
            self._restart()
            self._keep(at, value)
            return self._write(at, value)
        self._keep(at, value)
        return self._routine(at)

    def _routine(self, at: float) -> Decision:
        """Decide on a calm reading: a real change at most once a minute, else a heartbeat."""
        assert self._written_at is not None
        since = at - self._written_at
        if since < self.window:
            return Decision(write=False)
        recent = self._recent_mean()
        if self.shown is None or abs(recent - self.shown) > self._band():
            return self._write(at, recent)
        if since >= self.heartbeat:
            return self._write(at, self._mean_since())
        return Decision(write=False)

    def change(self, urgent: Hashable) -> bool:
        """Say whether a change without a reading (e.g. availability) must be written now."""
        if urgent == self._urgent:
            return False
        self._urgent = urgent
        self._restart()
        return True

    def _keep(self, at: float, value: float) -> None:
        """Add a reading to the last minute and to the period since the last write."""
        while self._recent and self._recent[0][0] <= at - self.window:
            self._recent.popleft()
        # The reading itself always counts, whatever the window (tests use none).
        self._recent.append((at, value))
        self._since_sum += value
        self._since_squares += value * value
        self._since_count += 1

    def _restart(self) -> None:
        """Forget the readings before a change: they describe another situation."""
        self._recent.clear()
        self._since_sum = self._since_squares = 0.0
        self._since_count = 0
        self._written_at = None

    def _write(self, at: float, value: float | None) -> Decision:
        """Show a value from now on and start a new period."""
        self._written_at = at
        self._since_sum = self._since_squares = 0.0
        self._since_count = 0
        self.shown = None if value is None else round(value, self.digits)
        return Decision(write=True, value=self.shown)

    def _mean_since(self) -> float:
        """Return the mean of the readings since the last write."""
        return self._since_sum / self._since_count

    def _recent_mean(self) -> float:
        """Return the mean of the last minute's readings."""
        return math.fsum(value for _, value in self._recent) / len(self._recent)

    def _band(self) -> float:
        """Return how far the last minute's mean may be from the value shown by noise alone.

        The noise is estimated from every reading since the last write (one to five minutes of
        them), steadier than from the last minute's alone: an underestimate would let noise pass
        for a change, and write exactly the outlying means a steady display should not show.
        """
        count = self._since_count
        if count < MIN_SPREAD_READINGS:
            # A node publishing once a minute or slower: each reading is written, as it comes.
            return self.step
        mean = self._since_sum / count
        variance = max(0.0, (self._since_squares - count * mean * mean) / (count - 1))
        return max(self.step, CHANGE_SIGMAS * math.sqrt(variance / len(self._recent)))


@dataclass
class WriteThrottle:
    """Writes a value that changes with every reading (a timestamp) at most once per interval.

    A change of `urgent` (availability) is written at once.
    """

    interval: float = WINDOW
    _written_at: float | None = None
    _urgent: Hashable = None

    def due(self, at: float, urgent: Hashable) -> bool:
        """Say whether to write at `at` seconds."""
        changed = urgent != self._urgent
        if changed or self._written_at is None or at - self._written_at >= self.interval:
            self._urgent = urgent
            self._written_at = at
            return True
        return False
