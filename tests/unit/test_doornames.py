"""The door-name rule, checked by hand for speed, is the regular expression it stands for."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from tumbler.doornames import DOOR_NAME_MAX, is_door_name

RULE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SAMPLES = ["ssh", "a.b-c_d", "X9", "a+b", "-x", "_x", ".x", "x" * 64, "x" * 65, "", "٢٢", "ssh\n"]


def test_samples_agree_with_the_pattern() -> None:
    for name in SAMPLES:
        assert is_door_name(name) == (RULE.fullmatch(name) is not None), name
    assert is_door_name("x" * DOOR_NAME_MAX) and not is_door_name("x" * (DOOR_NAME_MAX + 1))


@given(st.text(alphabet=st.sampled_from("aZ09_.-+@ :\n\té٢"), max_size=70))
def test_any_text_agrees_with_the_pattern(name: str) -> None:
    assert is_door_name(name) == (RULE.fullmatch(name) is not None)
