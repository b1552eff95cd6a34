"""The guard that fails tests on deprecation reports really catches them."""

from __future__ import annotations

import logging

from .conftest import deprecation_reports


def _record(message: str) -> logging.LogRecord:
    """Make a log record as Home Assistant's frame helper would."""
    return logging.LogRecord(
        "homeassistant.helpers.frame", logging.WARNING, "", 0, message, (), None
    )


def test_guard_catches_each_marker() -> None:
    """Every phrase Home Assistant uses for deprecated calls is caught; other lines are not."""
    messages = [
        "Detected that custom integration 'iotshield' calls async_forward_entry_setup",
        "Detected code that accesses hass.components, please report this issue",
        "Foo is deprecated. This will stop working in Home Assistant 2025.12",
        "We found a custom integration iotshield which has not been tested",
    ]
    assert deprecation_reports([_record(m) for m in messages]) == messages[:3]
