"""What a door (and a profile, and any named section of a config) may be called.

Apart from `tumbler.doors` (whose sequence doors are dataclasses) so that the client's
profile parser checks the rule without loading `dataclasses` before every ssh.
"""

from __future__ import annotations

import re

# A door's name tags firewall rules and is substituted into a door's shell command as
# %NAME%, so nothing that a shell or a rule parser would read as syntax.
DOOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DOOR_NAME_RULE = "NAME of letters, digits, '.', '_' and '-'"


def is_door_name(text: str) -> bool:
    """Whether `text` may name a door (see DOOR_NAME)."""
    return DOOR_NAME.fullmatch(text) is not None
