"""What a door (and a profile, and any named section of a config) may be called.

Apart from `tumbler.doors` (whose sequence doors are dataclasses) so that the client's
profile parser checks the rule without loading `dataclasses` before every ssh.
"""

from __future__ import annotations

# A door's name tags firewall rules and is substituted into a door's shell command as
# %NAME%, so nothing that a shell or a rule parser would read as syntax: an ASCII letter or
# digit, then up to 63 of those and `_`, `.`, `-` (checked without a regular expression,
# whose compiling would cost the client's start-up more than every name it checks).
DOOR_NAME_RULE = "NAME of letters, digits, '.', '_' and '-'"
DOOR_NAME_MAX = 64
_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_REST = _FIRST | frozenset("_.-")


def is_door_name(text: str) -> bool:
    """Whether `text` may name a door (see DOOR_NAME_RULE)."""
    return 0 < len(text) <= DOOR_NAME_MAX and text[0] in _FIRST and _REST.issuperset(text)
