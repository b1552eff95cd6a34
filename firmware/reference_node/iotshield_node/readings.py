"""One set of sensor readings, before or after the privacy layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Readings:
    """The six readings of PROTOCOL.md §4; None marks a sensor that could not be read."""

    t: float | None
    h: float | None
    g: float | None
    l: float | None  # noqa: E741 - the protocol's own key for light
    f: bool | None
    m: bool | None
