"""Durations as the config files and options write them: `30`, `30s`, `5m`, `1h`."""

from __future__ import annotations

import re

_DURATION = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([smh]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """Seconds from `30`, `30s`, `5m` or `1h`."""
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        raise ValueError(f"bad duration {text!r} (use 30, 30s, 5m or 1h)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if value <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return value
