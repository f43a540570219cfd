"""OpenSSH `authorized_keys` text, read for signed knocks: which keys, from where, until when.

Pure: takes the file's text and its name (for messages), returns the keys and the warnings.
A line that cannot be used is skipped with a warning naming file and line, never fatal:
one bad line must not lock every other user out.

Options that mean something for a knock are honoured: `from="..."` (address patterns and
CIDR; host names never match, as no DNS lookup is made) and `expiry-time`. Options that
only concern an SSH session (`command=`, `no-pty`, `restrict`, ...) are ignored with a
warning; a `cert-authority` line is skipped, as a CA key is not a user's key.
"""

from __future__ import annotations

import base64
import calendar
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from tumbler.addresses import Address, normalize_address
from tumbler.protocols.sshkeys import (
    UNSUPPORTED_KEY_TYPES,
    PublicKey,
    SshKeyError,
    parse_public_key,
    ssh_string,
)

SESSION_OPTIONS = frozenset(
    {
        "agent-forwarding",
        "command",
        "environment",
        "no-agent-forwarding",
        "no-port-forwarding",
        "no-pty",
        "no-touch-required",
        "no-user-rc",
        "no-x11-forwarding",
        "permitlisten",
        "permitopen",
        "port-forwarding",
        "principals",
        "pty",
        "restrict",
        "tunnel",
        "user-rc",
        "verify-required",
        "x11-forwarding",
    }
)
_KEY_TYPE_SHAPE = re.compile(r"^[a-z0-9][a-z0-9.-]*(@[a-z0-9.-]+)?$")
_EXPIRY = re.compile(r"^(\d{8})(\d{4})?(\d{2})?(Z)?$")


@dataclass(frozen=True)
class AuthorizedKey:
    """One usable key line: the key, its comment, where it was, and its knock options."""

    key: PublicKey
    comment: str
    line: int
    from_patterns: tuple[str, ...] | None = None
    expires: int | None = None  # epoch second after which the key is refused

    def allows(self, address: Address, now: int) -> bool:
        """Whether the line's own options let a knock from `address` at `now` through."""
        if self.expires is not None and now >= self.expires:
            return False
        if self.from_patterns is None:
            return True
        return address_matches(self.from_patterns, normalize_address(address))

    @property
    def label(self) -> str:
        """How the log names the key: comment and fingerprint."""
        return f"{self.comment or '(no comment)'} {self.key.fingerprint}"


@dataclass
class AuthorizedKeys:
    """The usable keys of one file and what was wrong with the rest."""

    keys: list[AuthorizedKey] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def address_matches(patterns: tuple[str, ...], address: str) -> bool:
    """OpenSSH's `from=` rule: a negated match refuses, else any positive match allows."""
    allowed = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        if _pattern_matches(body, address):
            if negated:
                return False
            allowed = True
    return allowed


def _pattern_matches(pattern: str, address: str) -> bool:
    if "/" in pattern:
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(pattern, strict=False)
        except ValueError:
            return False
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()
    )
    return re.fullmatch(regex, address) is not None


def _split_options(text: str) -> tuple[list[tuple[str, str | None]], str]:
    """Split the leading option list off a line; return (options, rest). Raises ValueError."""
    options: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while True:
        start = i
        while i < n and text[i] not in "=, \t":
            i += 1
        name = text[start:i].lower()
        if not name:
            raise ValueError("empty option")
        value: str | None = None
        if i < n and text[i] == "=":
            i += 1
            if i >= n or text[i] != '"':
                raise ValueError(f"option {name} needs a quoted value")
            i += 1
            chars: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] == '"':
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise ValueError(f"option {name} has no closing quote")
            i += 1
            value = "".join(chars)
        options.append((name, value))
        if i < n and text[i] == ",":
            i += 1
            continue
        if i < n and text[i] not in " \t":
            raise ValueError("bad option list")
        return options, text[i:].lstrip()


def _parse_expiry(value: str) -> int:
    """`expiry-time` as epoch seconds; OpenSSH's YYYYMMDD[HHMM[SS]][Z], read here as UTC."""
    m = _EXPIRY.match(value)
    if m is None:
        raise ValueError(f"bad expiry-time {value!r}")
    date, hm, sec = m.group(1), m.group(2) or "0000", m.group(3) or "00"
    fields = (int(date[:4]), int(date[4:6]), int(date[6:8]), int(hm[:2]), int(hm[2:]), int(sec))
    if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60):
        raise ValueError(f"bad expiry-time {value!r}")
    return calendar.timegm((*fields, 0, 0, 0))


def _read_key(text: str) -> tuple[PublicKey, str] | None:
    """`type base64 [comment]` when its blob says the same type; None if it is not a key."""
    parts = text.split(None, 2)
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    if not blob.startswith(ssh_string(parts[0].encode())):
        return None
    key = parse_public_key(blob)  # SshKeyError for a known but unusable key
    if key.key_type != parts[0]:
        return None
    return key, parts[2].strip() if len(parts) == 3 else ""


def _problem_with(*texts: str) -> str:
    """Name what is wrong with a line (whole, or after its options) that held no key."""
    for text in texts:
        parts = text.split(None, 2)
        if not parts:
            continue
        if parts[0] in UNSUPPORTED_KEY_TYPES:
            return f"key type {parts[0]} is not supported for signed knocks"
        if len(parts) < 2 or not _KEY_TYPE_SHAPE.match(parts[0]):
            continue
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except ValueError:
            continue
        # An unknown type still names itself at the start of its own blob.
        if blob.startswith(ssh_string(parts[0].encode())):
            return f"unknown key type {parts[0]}"
    return "not a key line"


def parse_authorized_keys(text: str, path: str = "authorized_keys") -> AuthorizedKeys:
    """Read the usable keys of an `authorized_keys` file; warnings say `path:line: why`."""
    result = AuthorizedKeys()
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue

        def warn(message: str, number: int = number) -> None:
            result.warnings.append(f"{path}:{number}: {message}")

        options: list[tuple[str, str | None]] = []
        rest = line
        try:
            found = _read_key(line)
            if found is None:
                try:
                    options, rest = _split_options(line)
                except ValueError as exc:
                    warn(f"{_problem_with(line)} ({exc})")
                    continue
                found = _read_key(rest) if rest else None
        except SshKeyError as exc:
            warn(str(exc))
            continue
        if found is None:
            warn(_problem_with(line, rest))
            continue
        key, comment = found
        usable = _apply_options(key, comment, number, options, warn)
        if usable is None:
            continue
        if key.key_id in seen:
            warn(f"same key as line {seen[key.key_id]}; this line is ignored")
            continue
        seen[key.key_id] = number
        result.keys.append(usable)
    return result


def _apply_options(
    key: PublicKey,
    comment: str,
    number: int,
    options: list[tuple[str, str | None]],
    warn: Callable[[str], None],
) -> AuthorizedKey | None:
    """The key with the options that apply to knocks; None when the line must be skipped."""
    from_patterns: tuple[str, ...] | None = None
    expires: int | None = None
    ignored: list[str] = []
    for name, value in options:
        if name == "cert-authority":
            warn("cert-authority keys are not accepted for signed knocks; line skipped")
            return None
        if name == "from" and value is not None:
            patterns = tuple(p.strip() for p in value.split(",") if p.strip())
            for p in patterns:
                body = p.lstrip("!")
                if "/" in body:
                    try:
                        ipaddress.ip_network(body, strict=False)
                    except ValueError:
                        warn(f"from= pattern {p!r} is not a network; it never matches")
                elif re.search(r"[g-z]", body.lower()):
                    warn(f"from= pattern {p!r} names a host; knocks match addresses only")
            from_patterns = (from_patterns or ()) + patterns
        elif name == "expiry-time" and value is not None:
            try:
                expires = _parse_expiry(value)
            except ValueError as exc:
                warn(f"{exc}; line skipped")
                return None
            if not value.endswith("Z"):
                warn("expiry-time without Z is read as UTC")
        elif name in SESSION_OPTIONS:
            ignored.append(name)
        else:
            warn(f"unknown option {name}; ignored")
    if ignored:
        several = len(ignored) > 1
        names = ", ".join(ignored)
        warn(f"option{'s' if several else ''} {names} {'do' if several else 'does'} not apply")
    return AuthorizedKey(key, comment, number, from_patterns, expires)
