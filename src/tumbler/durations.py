"""Durations as the config files and options write them: `30`, `30s`, `5m`, `1h`.

Read with str methods rather than a regular expression: compiling one costs the client's
start-up (a profile's `wait_timeout`, before every ssh) more than all else here. The
rule is the pattern `([0-9]{1,9}(?:\\.[0-9]{1,6})?)\\s*([smh]?)` (tests/unit/test_durations.py).
"""

from __future__ import annotations

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def _digits(text: str, most: int) -> bool:
    return 0 < len(text) <= most and text.isascii() and text.isdigit()


def parse_duration(text: str) -> float:
    """Seconds from `30`, `30s`, `5m` or `1h`."""
    written = text.strip().lower()
    unit = written[-1:] if written[-1:] in ("s", "m", "h") else ""
    number = written[: len(written) - len(unit)].rstrip()
    whole, dot, fraction = number.partition(".")
    if not _digits(whole, 9) or (dot and not _digits(fraction, 6)):
        raise ValueError(f"bad duration {text!r} (use 30, 30s, 5m or 1h)")
    value = float(number) * _UNITS[unit]
    if value <= 0:
        raise ValueError(f"duration must be positive: {text!r}")
    return value
