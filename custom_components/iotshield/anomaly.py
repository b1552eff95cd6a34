"""Online anomaly detection: each home's own normal, learned per hour of the day.

Plain Python with no Home Assistant import, cheap enough for a Raspberry Pi. Readings are folded
into one-minute means (five-second readings average their privacy noise away by √12). For each
continuous sensor a baseline of mean and variance is learned per hour of the day, separately for
workdays and weekends (falling back to all days while a bin is young), with a day-to-day spread
each sensor learns; a fast and a slow moving average of the standardised residual catch spikes
and surges, and drifts; runs of one value longer than the sensor's own catch stuck values and
flatlines. Motion is judged by how many minutes had motion in short and long windows against the
rate learned for those hours, which catches false triggers, a stuck sensor and activity at odd
hours despite randomized response. Less light or motion than usual never alarms: absence is not
a fault. A reading stands for the minutes since the one before (up to an hour), so nodes that
publish every few seconds or every hour are judged alike. Memory is fixed per node; the state is
JSON-native.
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
# ... the least it is assumed to vary: each sensor learns how much its hours really move from day
# to day (sun on a window, a wet week), from hourly means, over about two weeks of hours. Each
# hour's deviation is clipped to this many spreads, so a fault widens it only a little.
LEVEL_ALPHA: Final = 1 / (14 * 24)
LEVEL_CLIP: Final = 3.0
FROZEN_MINUTES: Final = 15
# ... or this many times the longest run of one value the sensor showed lately, if longer.
FROZEN_RUNS: Final = 2
RUN_FADE: Final = 0.5 ** (1 / (7 * 24 * 60))  # per minute: half of it is forgotten in a week
FROZEN_LEARN: Final = 5 * 24 * 60
# A reading stands for the minutes since the one before, up to an hour: a node publishing every
# ten minutes or every hour learns a day's baseline in a day, not in ten or sixty.
MAX_GAP: Final = 60
# Minutes scoring this much of the alarm threshold or more are not learned.
LEARN_BELOW: Final = 0.5
# Unusual minutes are learned at this fraction of an ordinary minute's weight: a shower every
# evening becomes known within days, while one fault hardly moves the baseline.
UNUSUAL_WEIGHT: Final = 0.1
# A deviation that outweighs ordinary minutes by this many is the new normal: learning resumes.
ACCEPT_AFTER: Final = 12 * 60
# Minutes of motion are counted over these windows: short bursts, an hour, an afternoon.
MOTION_WINDOWS: Final = (20, 60, 180)
MOTION_LIMIT: Final = 5.0
# The share of the way from the flip rate to certainty a minute's motion readings must reach.
MOTION_QUORUM: Final = 0.25
# Less motion or less light than usual is shown (the score rises) but never alarms: an empty,
# dark home is ordinary life, and a node whose sensors died is still seen by its other sensors
# (without privacy noise) and by readings that stop.
ABSENCE_CAP: Final = 0.9
STATE_VERSION: Final = 1
# Anomalies alone raise at most this severity: hazards stay threshold-driven.
MAX_ANOMALY_LEVEL: Final = Level.MEDIUM
# A finding this far past its limit, or several sensors at once, is worth MEDIUM; else LOW.
STRONG_SCORE: Final = 2.0
RULE_PREFIX: Final = "anomaly_"


type Bins = tuple[int, int, tuple[int, ...], tuple[int, ...]]


def _per(alpha: float, minutes: int) -> float:
    """Return the weight a per-minute smoothing factor gives to a value standing for minutes."""
    return alpha if minutes == 1 else 1 - (1 - alpha) ** minutes


def _bin(when: datetime) -> Bins:
    """Return a moment's own bins (day-type×hour, all-days hour) and its neighbourhoods.

    Routines jitter: a shower or the lamps at bedtime come a little earlier or later each day.
    A value is judged against its hour and the hours either side, so that a routine shifted by
    half an hour is not an anomaly, while one at an hour nothing like it happens still is. The
    hours either side are those of the neighbouring day across midnight: Monday 00:10 is judged
    against Sunday night too, so the weekend does not end in a seam.
    """
    return _bins_of(when.weekday(), when.hour)


@functools.cache
def _bins_of(weekday: int, hour: int) -> Bins:
    """Return the bins of an hour of a weekday (168 of them, computed once)."""
    around = []
    for offset in (-1, 0, 1):
        day, moment = divmod(weekday * 24 + hour + offset, 24)
        around.append((24 if day % 7 >= 5 else 0) + moment)  # noqa: PLR2004 - Saturday
    near = tuple(around)
    general = tuple(48 + (hour + offset) % 24 for offset in (-1, 0, 1))
    return near[1], 48 + hour, near, general


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


class _Runs:
    """How long one value (or several at once) has been held, against the longest runs seen."""

    __slots__ = ("longest", "repeats", "watched")

    def __init__(self) -> None:
        """Start without history."""
        self.repeats = 0  # minutes the current value has been held
        # The longest run seen lately (minutes, fading over weeks): a coarse sensor (a DHT11
        # reads whole degrees) repeats itself for hours in a quiet night.
        self.longest = 0.0
        self.watched = 0  # minutes seen, up to FROZEN_LEARN

    def score(self, same: bool, minutes: int) -> float:
        """Score how far the current run exceeds what the sensor does when it is fine."""
        limit = max(FROZEN_MINUTES, FROZEN_RUNS * self.longest)
        learning = self.watched < FROZEN_LEARN
        self.watched = min(self.watched + minutes, FROZEN_LEARN)
        if same:
            self.repeats += minutes
        else:
            # A run that ended is one this sensor does when fine: a slow or coarse sensor holds
            # a value for hours. In its first days every run is learned, however long; later a
            # run that alarmed counts only up to the limit it passed, so a sensor that really
            # holds values longer raises its limit step by step, while one repaired fault
            # cannot blind the rule for long.
            run = float(self.repeats if learning else min(self.repeats, limit))
            self.longest = max(self.longest, run)
            self.repeats = 0
        self.longest *= RUN_FADE if minutes == 1 else RUN_FADE**minutes
        # Runs are judged once the sensor's quiet nights and weekends have been seen.
        return self.repeats / limit if self.watched >= FROZEN_LEARN else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {"longest": self.longest, "watched": self.watched}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Take back a stored state."""
        self.longest = float(data.get("longest", 0.0))
        self.watched = int(data.get("watched", 0))


class _Continuous:
    """Seasonal baseline and residual averages of one continuous sensor."""

    __slots__ = (
        "alarm_minutes",
        "fast",
        "held",
        "hour_minutes",
        "hour_sum",
        "last",
        "level_var",
        "mean",
        "n",
        "runs",
        "sensor",
        "slow",
        "var",
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
        # Whether the last minute repeated the one before, and how long such runs last.
        self.held = False
        self.runs = _Runs()
        # The day-to-day variance of this sensor's hours, and the hour being summed for it.
        self.level_var = DAY_SPREAD[sensor] ** 2
        self.hour_sum = 0.0
        self.hour_minutes = 0

    def _learn(self, index: int, value: float, minutes: int, weight: float = 1.0) -> None:
        """Update one bin's mean and variance with a value standing for some minutes."""
        if weight < 1.0:
            # Only nudged: an unusual minute does not count towards the warm-up.
            alpha = weight * _per(BIN_ALPHA, minutes)
        else:
            self.n[index] += minutes
            alpha = minutes / self.n[index]
            least = BIN_ALPHA if minutes == 1 else _per(BIN_ALPHA, minutes)
            alpha = max(alpha, least)
        delta = value - self.mean[index]
        self.mean[index] += alpha * delta
        self.var[index] = (1 - alpha) * (self.var[index] + alpha * delta * delta)

    def _learn_level(self, value: float, index: int, minutes: int) -> None:
        """Fold each hour's mean deviation from its baseline into the day-to-day variance."""
        if self.n[index] < WARMUP_SAMPLES:
            return
        self.hour_sum += (value - self.mean[index]) * minutes
        self.hour_minutes += minutes
        if self.hour_minutes < 60:  # noqa: PLR2004 - an hour
            return
        bound = LEVEL_CLIP * math.sqrt(self.level_var)
        deviation = min(max(self.hour_sum / self.hour_minutes, -bound), bound)
        self.level_var += LEVEL_ALPHA * (deviation * deviation - self.level_var)
        self.level_var = max(self.level_var, DAY_SPREAD[self.sensor] ** 2)
        self.hour_sum, self.hour_minutes = 0.0, 0

    def update(self, value: float, bins: Bins, noise: float, minutes: int = 1) -> Finding | None:
        """Judge one minute's mean, standing for `minutes`; None while warming up."""
        specific, general, near_specific, near_general = bins
        candidates = near_specific if self.n[specific] >= WARMUP_SAMPLES else near_general
        finding = None
        z: float | None = None
        n, var, mean = self.n, self.var, self.mean
        shared = noise * noise + self.level_var
        floor = MIN_SCALE[self.sensor]
        for index in candidates:
            if n[index] < WARMUP_SAMPLES:
                continue
            candidate = (value - mean[index]) / max(math.sqrt(var[index] + shared), floor)
            if z is None or abs(candidate) < abs(z):
                z = candidate
        if z is not None:
            if minutes == 1:
                self.fast += FAST_ALPHA * (z - self.fast)
                self.slow += SLOW_ALPHA * (z - self.slow)
            else:
                self.fast += _per(FAST_ALPHA, minutes) * (z - self.fast)
                self.slow += _per(SLOW_ALPHA, minutes) * (z - self.slow)
            score = max(abs(self.fast) / FAST_LIMIT, abs(self.slow) / SLOW_LIMIT)
            # A live sensor jitters: the very same value far longer than this sensor usually
            # keeps one is a frozen sensor. (The node's privacy noise hides this; it can only
            # be seen with the noise off.) Zero is where dark rooms and clean air sit
            # naturally: not evidence of a frozen one.
            self.held = value == self.last and value != 0
            score = max(score, self.runs.score(self.held, minutes))
            main = (
                self.fast
                if abs(self.fast) / FAST_LIMIT >= abs(self.slow) / SLOW_LIMIT
                else self.slow
            )
            direction = 1 if main >= 0 else -1
            if self.sensor == "l" and direction < 0 and not self.held:
                # Absence is not a fault: a room darker than usual is a day nobody is home.
                score = min(score, ABSENCE_CAP)
            finding = Finding(self.sensor, score, direction)
            # How much of the recent past was too unusual to learn: up by one for each such
            # minute, down by one for each ordinary one. A lasting change (a new thermostat
            # setting) climbs past ACCEPT_AFTER even though noise lets some minutes look normal.
            unlearned = finding.score >= LEARN_BELOW
            self.alarm_minutes = max(0, self.alarm_minutes + (minutes if unlearned else -minutes))
            self._learn_level(
                value, specific if self.n[specific] >= WARMUP_SAMPLES else general, minutes
            )
        # Do not learn a fault as normal, unless it has lasted so long that it is the new normal.
        self.last = value
        # A bin still warming up always learns: how weekends differ must be learned even while
        # they are judged against all days.
        learn = finding is None or finding.score < LEARN_BELOW or self.alarm_minutes > ACCEPT_AFTER
        for index in (specific, general):
            if learn or self.n[index] < WARMUP_SAMPLES:
                self._learn(index, value, minutes)
            else:
                self._learn(index, value, minutes, UNUSUAL_WEIGHT)
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
            **self.runs.as_dict(),
            "level": self.level_var,
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
        self.runs.restore(data)
        self.level_var = max(float(data.get("level", 0.0)), DAY_SPREAD[self.sensor] ** 2)


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
        # Absence is not a fault: less motion than usual is a day nobody is home.
        return min(less / MOTION_LIMIT, ABSENCE_CAP), -1

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

    def update(self, moved: bool, bins: Bins, flip: float, minutes: int = 1) -> Finding | None:
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
                self.n[i] += minutes
                alpha = max(minutes / self.n[i], _per(BIN_ALPHA, minutes))
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
        self._together = _Runs()
        self._minute: tuple[datetime, Bins] | None = None
        # The last minute judged: how long a sparse node's reading stands for.
        self._previous: datetime | None = None
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
        # Runs of every continuous sensor held at once: rarer than one sensor's, so a node
        # whose sensors all stopped is seen sooner than one stuck sensor.
        self._together = _Runs()
        self._minute = None
        self._previous = None
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
        when, bins = self._minute
        minutes = 1
        if self._previous is not None:
            gap = (when - self._previous).total_seconds() // 60
            minutes = int(min(max(gap, 1), MAX_GAP))
        self._previous = when
        findings: list[Finding] = []
        present = held = resting = 0
        sums, counts = self._sums, self._counts
        for key in CONTINUOUS:
            count = counts[key]
            if count:
                detector = self._continuous[key]
                # The mean of n readings carries noise σ/√n.
                noise = self._noise[key] / math.sqrt(count)
                found = detector.update(sums[key] / count, bins, noise, minutes)
                present += 1
                held += detector.held
                resting += detector.last == 0
                if found is not None:
                    findings.append(found)
                sums[key], counts[key] = 0.0, 0
        if present > 1:
            # Zero (a dark room, clean air) is no evidence either way, as for one sensor.
            same = held > 1 and held + resting == present
            together = self._together.score(same, minutes)
            if together:
                for finding in findings:
                    finding.score = max(finding.score, together)
        if self._motion_readings:
            needed, false_rate = _motion_rule(self._motion_readings, self._flip)
            found = self._motion.update(self._moving >= needed, bins, false_rate, minutes)
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
            "together": self._together.as_dict(),
        }

    def restore(self, data: Mapping[str, Any] | None) -> bool:
        """Take back a stored state; False (and a fresh start) when there is none or it is bad."""
        if not data or data.get("version") != STATE_VERSION:
            return False
        try:
            for key, detector in self._continuous.items():
                detector.restore(data["continuous"][key])
            self._motion.restore(data["motion"])
            self._together.restore(data.get("together", {}))
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
