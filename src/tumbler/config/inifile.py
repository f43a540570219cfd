"""The article's config format (Listing Two), read the same way for tumblerd and the client.

    [section-name]
       key = value        # indentation allowed; a comment after whitespace
    # '#' or ';' first on a line makes it a comment

One comment rule for tumblerd's config and the client's profiles: a line whose first
non-blank character is `#` or `;` is a comment, and so is the rest of a line from a `#`
that follows whitespace. The values of `secret` and `command` are the exception: they run
to the end of the line, so a secret or a shell command may hold ` #` (a `#` with no space
before it works in every value). Control characters (a NUL, an escape) are refused in any
line: they cannot be meant, and a value holding one would fail only when used.

Each line is checked on its own and each value parsed by its key's parser, so an error
names the file and line. No message quotes a value, nor a key that does not look like
one: a line of a config may be a secret with a typo in it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from tumbler.doornames import DOOR_NAME_RULE, is_door_name
from tumbler.errors import ConfigError

TYPE_CHECKING = False  # not typing's: the client reads profiles with this before every ssh
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T")

# A section's name after its kind, e.g. `ssh` in [door-ssh] or `web1` in [host-web1],
# follows the door-name rule.
is_name = is_door_name
NAME_RULE = DOOR_NAME_RULE
# The rules below are applied with str methods, not regular expressions: compiling those
# cost the client's start-up (it reads the profile file before every ssh) more than the
# whole file's reading. tests/unit/test_config.py holds them to the patterns they were.
# C0 controls but tab, DEL and C1: refused in any line.
_CONTROL = frozenset(chr(c) for c in (*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0)))
_KEY_SHAPE = r"[A-Za-z_][A-Za-z0-9_]*"  # compiled (by re) only for an error's message
# Keys whose value is free text taken to the end of the line (see the module docstring).
VERBATIM = frozenset({"secret", "command"})

Parser = Callable[[str], object]


def split_lines(text: str) -> list[str]:
    """Lines as an editor counts them: at \\r\\n, \\r or \\n (str.splitlines also breaks
    at \\f, \\x85, \\u2028...)."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def strip_comment(text: str) -> str:
    """`text` without a trailing comment: from the first `#` that follows whitespace."""
    start = text.find("#", 1)
    while start != -1:
        if text[start - 1].isspace():
            return text[: start - 1].rstrip()
        start = text.find("#", start + 1)
    return text


class Section:
    """One `[header]` and its parsed values, each with the line it came from.

    A plain class, not a dataclass: `dataclasses` (and `inspect` under it) would cost the
    client's start-up more than reading a whole profile file.
    """

    __slots__ = ("line", "name", "values")

    def __init__(
        self, name: str, line: int, values: dict[str, tuple[Any, int]] | None = None
    ) -> None:
        self.name = name
        self.line = line
        self.values: dict[str, tuple[Any, int]] = {} if values is None else values

    def __repr__(self) -> str:
        return f"Section(name={self.name!r}, line={self.line!r}, values={self.values!r})"

    def get(self, key: str, default: T) -> T:
        """A parsed value; its type is the one its key's parser returns."""
        if key in self.values:
            value: T = self.values[key][0]
            return value
        return default

    def line_of(self, key: str) -> int:
        return self.values[key][1]

    def __contains__(self, key: str) -> bool:
        return key in self.values


def _shown(key: str) -> str:
    """A key as an error may show it: a key that does not look like one may be a secret
    lacking its '=' ('secret aGVs=')."""
    import re  # an error's message only

    return repr(key) if re.fullmatch(_KEY_SHAPE, key) else "(not shown)"


def read_sections(
    text: str,
    path: str,
    schema: Callable[[str], Mapping[str, Parser] | None],
    expected: str,
) -> list[Section]:
    """Cut `text` into sections of parsed values; raise ConfigError at the first bad line.

    `schema(header)` gives the parsers of a section's keys, or None for a header that is
    not allowed; `expected` names the allowed headers in errors.
    """
    sections: list[Section] = []
    seen: set[str] = set()
    for number, raw in enumerate(split_lines(text), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if not raw.isprintable() and not _CONTROL.isdisjoint(raw):
            raise ConfigError("control character in line (only tabs and spaces)", path, number)
        if line.startswith("["):
            line = strip_comment(line)
            if not line.endswith("]"):
                raise ConfigError(f"bad section header {line!r}", path, number)
            name = line[1:-1].strip()
            if schema(name) is None:
                raise ConfigError(f"unknown section [{name}] (expected {expected})", path, number)
            if name in seen:
                raise ConfigError(f"section [{name}] appears twice", path, number)
            seen.add(name)
            sections.append(Section(name, number))
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if key not in VERBATIM:
            value = strip_comment(value)
        if not sep or not key:
            raise ConfigError("expected 'key = value' or a [section] header", path, number)
        if not sections:
            raise ConfigError(f"key {_shown(key)} outside any section", path, number)
        section = sections[-1]
        known = schema(section.name) or {}
        if key not in known:
            raise ConfigError(
                f"unknown key {_shown(key)} in [{section.name}] "
                f"(known: {', '.join(sorted(known))})",
                path,
                number,
            )
        if key in section.values:
            raise ConfigError(f"key {key!r} given twice in [{section.name}]", path, number)
        try:
            section.values[key] = (known[key](value), number)
        except ValueError as exc:
            # Parsers never quote a secret: secrets and commands are only checked for emptiness.
            raise ConfigError(f"{key}: {exc}", path, number) from None
    return sections
