"""`parse_duration`, read with str methods, follows the pattern it was written from."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tumbler.durations import parse_duration

PATTERN = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)\s*([smh]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600}


def by_pattern(text: str) -> float | None:
    m = PATTERN.fullmatch(text.strip().lower())
    if not m:
        return None
    value = float(m.group(1)) * UNITS[m.group(2)]
    return value if value > 0 else None


def by_parser(text: str) -> float | None:
    try:
        return parse_duration(text)
    except ValueError:
        return None


@pytest.mark.parametrize(
    "text",
    [
        "30",
        "30s",
        " 5m ",
        "1H",
        "1.5 h",
        "0",
        "0.0s",
        "1.",
        ".5",
        "1.1234567",
        "1234567890",
        "123456789",
        "30 S",
        "3 0s",
        "s",
        "",
        "٣٠",
        "30sec",
        "1e3",
        "+1",
        "-1",
        "30\u3000s",
    ],
)
def test_samples(text: str) -> None:
    assert by_parser(text) == by_pattern(text)


@given(st.text(alphabet=st.sampled_from("0123456789.smhSMH \t\u3000\u00a0x-+e٣"), max_size=14))
def test_any_text(text: str) -> None:
    assert by_parser(text) == by_pattern(text)
