"""fwknop's own files, read from text: access.conf, .fwknoprc, and tumblerd doors made from them.

Pure: the caller reads the files. Both formats are `NAME value` lines with `#` comments;
access.conf starts a stanza at each `SOURCE` line, .fwknoprc at each `[name]` header.
`convert_access_conf` writes the equivalent `[door-NAME]` sections of tumblerd's config
and lists, line by line, what it cannot carry over (GPG, NAT, command execution, ...).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from tumbler.errors import ConfigError
from tumbler.ports import PortSpec, parse_port_list
from tumbler.protocols.fwknop import SpaKeys

_LINE = re.compile(r"(\S+)\s+([^;\r\n]*)")
_HEADER = re.compile(r"\[([^\]]+)\]")

# access.conf keys a tumblerd fwknop door carries over (the rest are reported).
_CARRIED = frozenset(
    {
        "SOURCE",
        "KEY",
        "KEY_BASE64",
        "HMAC_KEY",
        "HMAC_KEY_BASE64",
        "HMAC_DIGEST_TYPE",
        "ENCRYPTION_MODE",
        "OPEN_PORTS",
        "RESTRICT_PORTS",
        "FW_ACCESS_TIMEOUT",
        "MAX_FW_TIMEOUT",
        "REQUIRE_SOURCE_ADDRESS",
        "REQUIRE_SOURCE",
        "REQUIRE_USERNAME",
    }
)
# Why the others cannot come along, by key prefix.
_NOT_CARRIED: tuple[tuple[str, str], ...] = (
    ("GPG_", "GPG encryption is not supported (Rijndael with HMAC only)"),
    ("FORCE_", "NAT and forwarding are not supported"),
    ("FORWARD_ALL", "NAT and forwarding are not supported"),
    ("DISABLE_DNAT", "NAT and forwarding are not supported"),
    ("ENABLE_CMD", "command execution from a packet is not supported"),
    ("CMD_EXEC", "command execution from a packet is not supported"),
    ("CMD_SUDO", "command execution from a packet is not supported"),
    ("CMD_CYCLE", "write it as the door's `command` (%IP% for $IP) by hand"),
    ("ACCESS_EXPIRE", "stanza expiry is not supported; remove the door when it expires"),
    ("DESTINATION", "a destination filter is not supported"),
    ("%INCLUDE", "included files are not read; convert each of them too"),
)
_BOOL_TRUE = ("y", "yes", "1", "true", "on")


@dataclass
class Stanza:
    """One stanza: values by upper-case name (the last of a repeated name wins), with lines."""

    name: str
    line: int
    values: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.values.get(key)
        return default if value is None else value.strip().lower() in _BOOL_TRUE


def _pairs(text: str, path: str) -> list[tuple[int, str, str]]:
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        header = _HEADER.fullmatch(line)
        if header:
            out.append((number, "[", header.group(1).strip()))
            continue
        match = _LINE.match(line)
        if not match or not match.group(2).strip():
            raise ConfigError("expected `NAME value`", path, number)
        out.append((number, match.group(1).rstrip(":").upper(), match.group(2).strip()))
    return out


def parse_access_conf(text: str, path: str = "access.conf") -> list[Stanza]:
    """The stanzas of an access.conf, in file order (fwknopd tries them in that order)."""
    stanzas: list[Stanza] = []
    for number, name, value in _pairs(text, path):
        if name == "[":
            raise ConfigError(
                "access.conf has no [sections]; stanzas start at SOURCE", path, number
            )
        if name == "SOURCE":
            stanzas.append(Stanza(value, number))
        elif not stanzas and not name.startswith("%"):
            raise ConfigError(f"{name} before the first SOURCE line", path, number)
        if not stanzas:  # a leading %include: keep it where the report will see it
            stanzas.append(Stanza("", number))
        stanzas[-1].values[name] = value
        stanzas[-1].lines[name] = number
    return stanzas


def parse_fwknoprc(text: str, path: str = ".fwknoprc") -> dict[str, Stanza]:
    """The stanzas of a client's .fwknoprc by name; `default` holds the [default] values."""
    stanzas: dict[str, Stanza] = {}
    current: Stanza | None = None
    for number, name, value in _pairs(text, path):
        if name == "[":
            current = stanzas.setdefault(value, Stanza(value, number))
            continue
        if current is None:
            raise ConfigError(f"{name} before the first [stanza]", path, number)
        current.values[name] = value
        current.lines[name] = number
    return stanzas


def rc_stanza(stanzas: Mapping[str, Stanza], name: str) -> Stanza:
    """A named stanza over the [default] one, as the fwknop client merges them."""
    if name not in stanzas:
        raise KeyError(f"no [{name}] stanza")
    merged = Stanza(name, stanzas[name].line)
    for source in (stanzas.get("default"), stanzas[name]):
        if source is not None:
            merged.values.update(source.values)
            merged.lines.update(source.lines)
    return merged


def stanza_keys(stanza: Stanza, client: bool = False) -> SpaKeys:
    """The keys of an access.conf stanza, or (client) of a .fwknoprc stanza.

    The client adds an HMAC only with `USE_HMAC Y` (a key given implies it, as in fwknop
    2.6); the server checks one whenever the stanza has an HMAC key.
    """
    hmac_key = stanza.get("HMAC_KEY")
    hmac_b64 = stanza.get("HMAC_KEY_BASE64")
    if client and not stanza.flag("USE_HMAC", default=hmac_key is not None or hmac_b64 is not None):
        hmac_key = hmac_b64 = None
    return SpaKeys.from_text(
        key=stanza.get("KEY"),
        key_base64=stanza.get("KEY_BASE64"),
        hmac_key=hmac_key,
        hmac_key_base64=hmac_b64,
        hmac_digest=(stanza.get("HMAC_DIGEST_TYPE") or "sha256"),
        mode=(stanza.get("ENCRYPTION_MODE") or "cbc"),
    )


def parse_fwknop_ports(text: str) -> tuple[PortSpec, ...]:
    """`tcp/22, udp/53` as OPEN_PORTS and ACCESS write them (single ports only)."""
    return parse_port_list(text, allow_range=False)


def parse_sources(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """SOURCE's comma list of addresses and networks; `ANY` is the empty tuple (anyone)."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if any(item.upper() == "ANY" for item in items):
        return ()
    return tuple(ipaddress.ip_network(item, strict=False) for item in items)


# --- access.conf to tumblerd doors --------------------------------------------------------


@dataclass
class Conversion:
    """tumblerd door sections for an access.conf, and what could not come along."""

    text: str
    doors: list[str]
    not_carried: list[str]
    warnings: list[str]


def _reason(key: str) -> str | None:
    for prefix, why in _NOT_CARRIED:
        if key.startswith(prefix):
            return why
    return None if key in _CARRIED else "not a key tumblerd knows"


def _seconds(value: str, what: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{what} is not a positive number of seconds")
    return int(value)


def _convert_stanza(stanza: Stanza, name: str, path: str) -> tuple[list[str], list[str]]:
    """The lines of one door, and notes about it; ValueError if it cannot be a door at all."""
    notes: list[str] = []
    if not (stanza.get("KEY") or stanza.get("KEY_BASE64")):
        raise ValueError("no Rijndael KEY or KEY_BASE64 (a GPG-only stanza)")
    keys = stanza_keys(stanza)  # checks lengths, digest and mode as fwknopd would
    out = [f"[door-{name}]", "kind = fwknop"]
    if parse_sources(stanza.name):
        out.append(f"fwknop_source = {', '.join(str(n) for n in parse_sources(stanza.name))}")
    for key, door_key in (
        ("KEY", "fwknop_key"),
        ("KEY_BASE64", "fwknop_key_base64"),
        ("HMAC_KEY", "fwknop_hmac_key"),
        ("HMAC_KEY_BASE64", "fwknop_hmac_key_base64"),
    ):
        value = stanza.get(key)
        if value is not None:
            out.append(f"{door_key} = {value}")
    if keys.hmac_key is not None:
        out.append(f"fwknop_hmac_digest = {keys.hmac_digest}")
    out.append(f"fwknop_mode = {keys.mode}")
    opened = stanza.get("OPEN_PORTS")
    restrict = stanza.get("RESTRICT_PORTS")
    restricted = parse_fwknop_ports(restrict) if restrict else ()
    if opened is None:
        out.append("# open = ...   fwknopd opened any port asked for; list the ports here")
        notes.append(f"door-{name}: no OPEN_PORTS; fwknopd opened any port, a door needs `open`")
    else:
        ports = [p for p in parse_fwknop_ports(opened) if p not in restricted]
        out.append(f"open = {', '.join(str(p) for p in ports)}")
    out.append(
        f"timeout = {_seconds(stanza.get('FW_ACCESS_TIMEOUT') or '30', 'FW_ACCESS_TIMEOUT')}s"
    )
    out.append(
        f"fwknop_max_timeout = {_seconds(stanza.get('MAX_FW_TIMEOUT') or '300', 'MAX_FW_TIMEOUT')}"
    )
    out.append("fwknop_max_age = 120")
    require = stanza.flag("REQUIRE_SOURCE_ADDRESS") or stanza.flag("REQUIRE_SOURCE")
    out.append(f"fwknop_require_source = {'yes' if require else 'no'}")
    user = stanza.get("REQUIRE_USERNAME")
    if user is not None:
        out.append(f"fwknop_require_user = {user}")
    if keys.hmac_key is None:
        out.append("fwknop_allow_no_hmac = yes")
        notes.append(f"door-{name}: no HMAC key, so every packet costs a decryption")
    for key, line in stanza.lines.items():
        why = _reason(key)
        if why is not None:
            notes.append(f"{path}:{line}: {key} not carried over: {why}")
    return out, notes


def convert_access_conf(text: str, path: str = "access.conf") -> Conversion:
    """tumblerd `[door-fwknop-N]` sections for each Rijndael stanza of an access.conf.

    MAX_SPA_PACKET_AGE lives in fwknopd.conf, so each door gets fwknopd's default of 120 s.
    """
    doors: list[str] = []
    blocks: list[str] = []
    not_carried: list[str] = []
    warnings: list[str] = []
    for index, stanza in enumerate(parse_access_conf(text, path), start=1):
        name = f"fwknop-{index}"
        if not stanza.name:  # only %include lines before the first SOURCE
            for key, line in stanza.lines.items():
                not_carried.append(f"{path}:{line}: {key} not carried over: {_reason(key)}")
            continue
        try:
            lines, notes = _convert_stanza(stanza, name, path)
        except ValueError as exc:
            not_carried.append(f"{path}:{stanza.line}: stanza SOURCE {stanza.name} skipped: {exc}")
            continue
        doors.append(name)
        blocks.append(f"# from {path}:{stanza.line} (SOURCE {stanza.name})\n" + "\n".join(lines))
        for note in notes:
            (not_carried if " not carried over: " in note else warnings).append(note)
    return Conversion("\n\n".join(blocks) + ("\n" if blocks else ""), doors, not_carried, warnings)
