"""Online anomaly detection: each home's own normal, learned per hour of the day.

Plain Python with no Home Assistant import, cheap enough for a Raspberry Pi. Readings are folded
into one-minute means (five-second readings average their privacy noise away by √12). For each
continuous sensor a baseline of mean and variance is learned per hour of the day, separately for
workdays and weekends (falling back to all days while a bin is young); a fast and a slow moving
average of the standardised residual catch spikes and surges, and drifts, stuck values and
flatlines. Motion is judged by how many minutes had motion in short and long windows against the
rate learned for those hours, which catches false triggers, a stuck sensor and activity at odd
hours despite randomized response. Memory is fixed per node; the state is JSON-native.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
import functools
import math
from typing import Any, Final

from .severity import SENSOR_NAMES, Assessment, Level, Rule

CONTINUOUS: Final = ("t", "h", "g", "l")
WARMUP_SAMPLES: Final = 120  # per hour bin: two days
BIN_ALPHA: Final = 1 / 300  # a bin forgets over about five days of its hour
FAST_ALPHA: Final = 0.3
SLOW_ALPHA: Final = 1 / 90
# Alarm when the fast average of z passes FAST_LIMIT or the slow one passes SLOW_LIMIT.
FAST_LIMIT: Final = 3.2
SLOW_LIMIT: Final = 2.3
# Never judge against less spread than the sensors' own jitter (t, h, g, l).
MIN_SCALE: Final[Mapping[str, float]] = {"t": 0.25, "h": 1.0, "g": 0.01, "l": 15.0}
# How much a sensor's level varies from one day to the next at the same hour (weather, the week's
# rhythm); a baseline learned over days cannot know it yet, and it is no anomaly.
DAY_SPREAD: Final[Mapping[str, float]] = {"t": 0.6, "h": 3.0, "g": 0.01, "l": 30.0}
FROZEN_MINUTES: Final = 15
# ... or this many times the longest run of one value the sensor showed lately, if longer.
FROZEN_RUNS: Final = 2
RUN_FADE: Final = 0.5 ** (1 / (7 * 24 * 60))  # per minute: half of it is forgotten in a week
FROZEN_LEARN: Final = 5 * 24 * 60
# Minutes scoring this much of the alarm threshold or more are not learned.
LEARN_BELOW: Final = 0.5
# A deviation that outweighs ordinary minutes by this many is the new normal: learning resumes.
ACCEPT_AFTER: Final = 12 * 60
# Minutes of motion are counted over these windows: short bursts, an hour, an afternoon.
MOTION_WINDOWS: Final = (20, 60, 180)
MOTION_LIMIT: Final = 5.0
# The share of the way from the flip rate to certainty a minute's motion readings must reach.
MOTION_QUORUM: Final = 0.25
STATE_VERSION: Final = 1
# Anomalies alone raise at most this severity: hazards stay threshold-driven.
MAX_ANOMALY_LEVEL: Final = Level.MEDIUM
# A finding this far past its limit, or several sensors at once, is worth MEDIUM; else LOW.
STRONG_SCORE: Final = 2.0
RULE_PREFIX: Final = "anomaly_"


type Bins = tuple[int, int, tuple[int, ...], tuple[int, ...]]


def _bin(when: datetime) -> Bins:
    """Return a moment's own bins (day-type×hour, all-days hour) and its neighbourhoods.

    Routines jitter: a shower or the lamps at bedtime come a little earlier or later each day.
    A value is judged against its hour and the hours either side, so that a routine shifted by
    half an hour is not an anomaly, while one at an hour nothing like it happens still is.
    """
    hour = when.hour
    base = 24 if when.weekday() >= 5 else 0  # noqa: PLR2004
    around = ((hour - 1) % 24, hour, (hour + 1) % 24)
    return base + hour, 48 + hour, tuple(base + h for h in around), tuple(48 + h for h in around)


@dataclass(slots=True)
class Finding:
    """What the detector says about one minute of one sensor."""

    sensor: str
    score: float  # 1.0 at the alarm threshold
    direction: int  # +1 higher than usual, -1 lower

    @property
    def anomalous(self) -> bool:
        """Say whether this is an alarm."""
        return self.score >= 1.0


class _Continuous:
    """Seasonal baseline and residual averages of one continuous sensor."""

    __slots__ = (
        "alarm_minutes",
        "fast",
        "last",
        "longest",
        "mean",
        "n",
        "repeats",
        "sensor",
        "slow",
        "var",
        "watched",
    )

    def __init__(self, sensor: str) -> None:
        """Start with empty bins: 48 day-type×hour bins and 24 all-days bins."""
        self.sensor = sensor
        self.mean = [0.0] * 72
        self.var = [0.0] * 72
        self.n = [0] * 72
        self.fast = 0.0
        self.slow = 0.0
        self.alarm_minutes = 0
        self.last: float | None = None
        self.repeats = 0
        # The longest run of one value seen lately (minutes, fading over weeks): a coarse
        # sensor (a DHT11 reads whole degrees) repeats itself for hours in a quiet night.
        self.longest = 0.0
        self.watched = 0  # minutes seen, up to FROZEN_LEARN

    def _learn(self, index: int, value: float) -> None:
        """Update one bin's mean and variance (Welford first, then exponential)."""
        self.n[index] += 1
        alpha = max(1.0 / self.n[index], BIN_ALPHA)
        delta = value - self.mean[index]
        self.mean[index] += alpha * delta
        self.var[index] = (1 - alpha) * (self.var[index] + alpha * delta * delta)

    def _frozen_score(self, value: float) -> float:
        """Score how far a run of one value exceeds what this sensor does when it is fine."""
        limit = max(FROZEN_MINUTES, FROZEN_RUNS * self.longest)
        self.watched = min(self.watched + 1, FROZEN_LEARN)
        if value == self.last and value != 0:
            self.repeats += 1
        else:
            # A run that ended without raising an alarm is one this sensor does when fine.
            if self.repeats < limit:
                self.longest = max(self.longest, float(self.repeats))
            self.repeats = 0
        self.longest *= RUN_FADE
        # Runs are judged once the sensor's quiet nights and weekends have been seen.
        return self.repeats / limit if self.watched >= FROZEN_LEARN else 0.0

    def update(self, value: float, bins: Bins, noise: float) -> Finding | None:
        """Judge one minute's mean; None while the baseline is still warming up."""
        specific, general, near_specific, near_general = bins
        candidates = near_specific if self.n[specific] >= WARMUP_SAMPLES else near_general
        finding = None
        z: float | None = None
        for index in candidates:
            if self.n[index] < WARMUP_SAMPLES:
                continue
            spread = DAY_SPREAD[self.sensor]
            scale = math.sqrt(self.var[index] + noise * noise + spread * spread)
            scale = max(scale, MIN_SCALE[self.sensor])
            candidate = (value - self.mean[index]) / scale
            if z is None or abs(candidate) < abs(z):
                z = candidate
        if z is not None:
            self.fast += FAST_ALPHA * (z - self.fast)
            self.slow += SLOW_ALPHA * (z - self.slow)
            score = max(abs(self.fast) / FAST_LIMIT, abs(self.slow) / SLOW_LIMIT)
            # A live sensor jitters: the very same value far longer than this sensor usually
            # keeps one is a frozen sensor. (The node's privacy noise hides this; it can only
            # be seen with the noise off.) Zero is where dark rooms and clean air sit
            # naturally: not evidence of a frozen one.
            score = max(score, self._frozen_score(value))
            main = (
                self.fast
                if abs(self.fast) / FAST_LIMIT >= abs(self.slow) / SLOW_LIMIT
                else self.slow
            )
            finding = Finding(self.sensor, score, 1 if main >= 0 else -1)
            # How much of the recent past was too unusual to learn: up by one for each such
            # minute, down by one for each ordinary one. A lasting change (a new thermostat
            # setting) climbs past ACCEPT_AFTER even though noise lets some minutes look normal.
            unlearned = finding.score >= LEARN_BELOW
            self.alarm_minutes = max(0, self.alarm_minutes + (1 if unlearned else -1))
        # Do not learn a fault as normal, unless it has lasted so long that it is the new normal.
        self.last = value
        # A bin still warming up always learns: how weekends differ must be learned even while
        # they are judged against all days.
        learn = finding is None or finding.score < LEARN_BELOW or self.alarm_minutes > ACCEPT_AFTER
        for index in (specific, general):
            if learn or self.n[index] < WARMUP_SAMPLES:
                self._learn(index, value)
        return finding

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "mean": list(self.mean),
            "var": list(self.var),
            "n": list(self.n),
            "fast": self.fast,
            "slow": self.slow,
            "alarm": self.alarm_minutes,
            "longest": self.longest,
            "watched": self.watched,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a stored state of the same shape."""
        mean, var, n = list(data["mean"]), list(data["var"]), list(data["n"])
        if not len(mean) == len(var) == len(n) == len(self.mean):
            raise ValueError("stored baseline has another shape")
        self.mean = [float(v) for v in mean]
        self.var = [float(v) for v in var]
        self.n = [int(v) for v in n]
        self.fast, self.slow = float(data["fast"]), float(data["slow"])
        self.alarm_minutes = int(data["alarm"])
        self.longest = float(data.get("longest", 0.0))
        self.watched = int(data.get("watched", 0))


class _Window:
    """Running sums over the last `size` minutes of motion and its expected rates."""

    __slots__ = ("items", "seen", "size", "sums")

    def __init__(self, size: int) -> None:
        """Start empty."""
        self.size = size
        self.items: deque[tuple[int, float, float]] = deque()
        self.seen = 0
        # expected count and variance, against the busiest and the quietest neighbouring hour
        self.sums = [0.0, 0.0, 0.0, 0.0]

    def push(self, bit: int, high: float, low: float) -> None:
        """Add a minute, dropping the oldest beyond the window."""
        self._apply(bit, high, low, 1)
        self.items.append((bit, high, low))
        if len(self.items) > self.size:
            self._apply(*self.items.popleft(), -1)

    def _apply(self, bit: int, high: float, low: float, sign: int) -> None:
        """Add or remove one minute from the sums."""
        self.seen += sign * bit
        sums = self.sums
        sums[0] += sign * high
        sums[1] += sign * high * (1 - high)
        sums[2] += sign * low
        sums[3] += sign * low * (1 - low)

    def score(self) -> tuple[float, int]:
        """Return how far the count is from the expected one, in MOTION_LIMITs, and which way."""
        if len(self.items) < self.size:
            return 0.0, 1
        more = (self.seen - self.sums[0]) / math.sqrt(max(self.sums[1], 1e-9))
        less = (self.sums[2] - self.seen) / math.sqrt(max(self.sums[3], 1e-9))
        if more >= less:
            return more / MOTION_LIMIT, 1
        return less / MOTION_LIMIT, -1

    def clear(self) -> None:
        """Forget the window."""
        self.items.clear()
        self.seen = 0
        self.sums = [0.0, 0.0, 0.0, 0.0]


class _Motion:
    """Motion rate per hour bin and windows of recent minutes."""

    __slots__ = ("n", "rate", "windows")

    def __init__(self) -> None:
        """Start with no history."""
        self.rate = [0.0] * 72
        self.n = [0] * 72
        self.windows = [_Window(size) for size in MOTION_WINDOWS]

    def update(self, moved: bool, bins: Bins, flip: float) -> Finding | None:
        """Judge the last windows of minutes; None while the rates are still warming up."""
        specific, general, near_specific, near_general = bins
        candidates = near_specific if self.n[specific] >= WARMUP_SAMPLES else near_general
        rates = [self.rate[i] for i in candidates if self.n[i] >= WARMUP_SAMPLES]
        finding = None
        if rates:
            # More motion than usual is judged against the busiest neighbouring hour, less
            # against the quietest; randomized response never lets a rate be exactly 0 or 1.
            high = min(max(*rates, flip, 0.01), 0.99)
            low = min(max(min(rates), flip, 0.01), 0.99)
            finding = Finding("m", 0.0, 1)
            for window in self.windows:
                window.push(int(moved), high, low)
                score, direction = window.score()
                if score > finding.score:
                    finding = Finding("m", score, direction)
        else:
            for window in self.windows:
                window.clear()
        # Learn every minute but alarming ones: a routine that starts earlier than it used to
        # must become known, not stay an alarm. A bin still warming up always learns.
        learn = finding is None or not finding.anomalous
        for i in (specific, general):
            if learn or self.n[i] < WARMUP_SAMPLES:
                self.n[i] += 1
                alpha = max(1.0 / self.n[i], BIN_ALPHA)
                self.rate[i] += alpha * (float(moved) - self.rate[i])
        return finding

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "rate": list(self.rate),
            "n": list(self.n),
            "window": [list(item) for item in self.windows[-1].items],
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a stored state of the same shape."""
        rate, n = list(data["rate"]), list(data["n"])
        if not len(rate) == len(n) == len(self.rate):
            raise ValueError("stored motion rates have another shape")
        self.rate = [float(v) for v in rate]
        self.n = [int(v) for v in n]
        self.windows = [_Window(size) for size in MOTION_WINDOWS]
        for bit, high, low in data["window"]:
            for window in self.windows:
                window.push(int(bit), float(high), float(low))


@functools.cache
def _motion_rule(readings: int, flip: float) -> tuple[int, float]:
    """Return how many motion readings make a minute one with motion, and how often by chance.

    Randomized response flips each reading with probability `flip`, so an empty minute of
    twelve five-second readings says "motion" about 1.4 times at ε_m = 2: "any motion in the
    minute" would be true of most empty minutes. A minute counts as moving when a quarter of
    the way from `flip` to 1 - `flip` of its readings say so (one reading without noise).
    """
    if flip <= 0:
        return 1, 0.0  # every reading is the sensor's own: any motion is motion
    needed = max(1, math.ceil(readings * (flip + (1 - 2 * flip) * MOTION_QUORUM) - 1e-9))
    false_rate = sum(
        math.comb(readings, k) * flip**k * (1 - flip) ** (readings - k)
        for k in range(needed, readings + 1)
    )
    return needed, false_rate


@dataclass(frozen=True, slots=True)
class Verdict:
    """The detector's view of one minute: an overall score and the sensors that alarm."""

    score: float
    findings: tuple[Finding, ...]

    @property
    def anomalous(self) -> bool:
        """Say whether any sensor alarms."""
        return self.score >= 1.0

    @property
    def sensors(self) -> tuple[str, ...]:
        """Return the sensors that alarm."""
        return tuple(f.sensor for f in self.findings if f.anomalous)


class AnomalyDetector:
    """One node's online detector: feed readings, get a verdict per completed minute."""

    def __init__(self, noise: Mapping[str, float] | None = None, flip: float = 0.0) -> None:
        """Use the node's announced privacy noise (σ per sensor, motion flip rate)."""
        self._noise = dict.fromkeys(CONTINUOUS, 0.0)
        self.set_noise(noise or {}, flip)
        self._continuous: dict[str, _Continuous] = {}
        self._motion = _Motion()
        self._minute: tuple[datetime, Bins] | None = None
        self._sums = dict.fromkeys(CONTINUOUS, 0.0)
        self._counts = dict.fromkeys(CONTINUOUS, 0)
        # Readings of the open minute that said motion, and that said anything about motion.
        self._moving = 0
        self._motion_readings = 0
        self.latest: Verdict | None = None
        # Minutes judged (or learned from) since start: tells a caller a minute has closed.
        self.minutes = 0
        self.reset()

    def reset(self) -> None:
        """Forget what was learned (the node moved, the home changed); keep the noise."""
        self._continuous = {key: _Continuous(key) for key in CONTINUOUS}
        self._motion = _Motion()
        self._minute = None
        self._sums = dict.fromkeys(CONTINUOUS, 0.0)
        self._counts = dict.fromkeys(CONTINUOUS, 0)
        self._moving = self._motion_readings = 0
        self.latest = None

    @property
    def noise(self) -> tuple[dict[str, float], float]:
        """Return the noise readings are judged with: σ per continuous sensor, motion flip rate."""
        return dict(self._noise), self._flip

    def set_noise(self, noise: Mapping[str, float], flip: float) -> None:
        """Take the noise a node announces."""
        for key, sigma in noise.items():
            if key in self._noise and sigma >= 0:
                self._noise[key] = sigma
        self._flip = max(0.0, min(flip, 0.5))

    def add(self, when: datetime, readings: Mapping[str, float | bool | None]) -> Verdict | None:
        """Take one reading (keys t, h, g, l, m); return a verdict when a minute completes."""
        minute = when.replace(second=0, microsecond=0)
        verdict = None
        if self._minute is not None and minute != self._minute[0]:
            verdict = self._close()
        if self._minute is None or minute != self._minute[0]:
            self._minute = (minute, _bin(minute))
        for key in CONTINUOUS:
            value = readings.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._sums[key] += float(value)
                self._counts[key] += 1
        motion = readings.get("m")
        if isinstance(motion, bool):
            self._motion_readings += 1
            self._moving += motion
        return verdict

    def _close(self) -> Verdict | None:
        """Judge the minute that just ended."""
        assert self._minute is not None  # only called with a minute open
        self.minutes += 1
        bins = self._minute[1]
        findings: list[Finding] = []
        for key in CONTINUOUS:
            count = self._counts[key]
            if count:
                # The mean of n readings carries noise σ/√n.
                noise = self._noise[key] / math.sqrt(count)
                found = self._continuous[key].update(self._sums[key] / count, bins, noise)
                if found is not None:
                    findings.append(found)
            self._sums[key], self._counts[key] = 0.0, 0
        if self._motion_readings:
            needed, false_rate = _motion_rule(self._motion_readings, self._flip)
            found = self._motion.update(self._moving >= needed, bins, false_rate)
            if found is not None:
                findings.append(found)
        self._moving = self._motion_readings = 0
        if not findings:
            self.latest = None
            return None
        self.latest = Verdict(max(f.score for f in findings), tuple(findings))
        return self.latest

    def progress(self) -> float:
        """Return how much of the daily baseline is learned, 0–1, over the sensors seen so far."""
        counts = [d.n for d in self._continuous.values()] + [self._motion.n]
        seen = [n for n in counts if any(n)]
        if not seen:
            return 0.0
        hours = range(48, 72)  # the all-days bins, which judge until the day-type ones are ready
        learned = sum(min(n[i], WARMUP_SAMPLES) for n in seen for i in hours)
        return learned / (len(seen) * len(hours) * WARMUP_SAMPLES)

    def as_dict(self) -> dict[str, Any]:
        """Return the learned state, JSON-native, to survive a restart."""
        return {
            "version": STATE_VERSION,
            "continuous": {key: d.as_dict() for key, d in self._continuous.items()},
            "motion": self._motion.as_dict(),
        }

    def restore(self, data: Mapping[str, Any] | None) -> bool:
        """Take back a stored state; False (and a fresh start) when there is none or it is bad."""
        if not data or data.get("version") != STATE_VERSION:
            return False
        try:
            for key, detector in self._continuous.items():
                detector.restore(data["continuous"][key])
            self._motion.restore(data["motion"])
        except (KeyError, TypeError, ValueError):
            self.reset()
            return False
        return True


def anomaly_rules(verdict: Verdict | None, cap: Level = MAX_ANOMALY_LEVEL) -> tuple[Rule, ...]:
    """Turn a verdict's alarms into severity rules, never above `cap` nor MEDIUM."""
    cap = min(cap, MAX_ANOMALY_LEVEL)
    if verdict is None or cap <= Level.NORMAL:
        return ()
    alarms = [finding for finding in verdict.findings if finding.anomalous]
    rules = []
    for finding in alarms:
        # Two sensors unusual at once corroborate each other.
        strong = finding.score >= STRONG_SCORE or len(alarms) > 1
        level = min(Level.MEDIUM if strong else Level.LOW, cap)
        name = SENSOR_NAMES[finding.sensor]
        rules.append(Rule(f"{RULE_PREFIX}{name}", (finding.sensor,), level, anomaly=True))
    return tuple(rules)


def with_anomalies(
    assessment: Assessment, verdict: Verdict | None, cap: Level = MAX_ANOMALY_LEVEL
) -> Assessment:
    """Add a verdict's rules to a threshold assessment; each sensor's own level is unchanged."""
    rules = anomaly_rules(verdict, cap)
    if not rules:
        return assessment
    combined = assessment.rules + rules
    return Assessment(max(rule.level for rule in combined), assessment.sensors, combined)


def unusual(verdict: Verdict | None) -> dict[str, int]:
    """Return the sensors that alarm, by name, with +1 for higher (more) and -1 for lower."""
    if verdict is None:
        return {}
    return {
        SENSOR_NAMES[finding.sensor]: finding.direction
        for finding in verdict.findings
        if finding.anomalous
    }
