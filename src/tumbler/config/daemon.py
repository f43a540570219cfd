"""The daemon's config file, in the article's format (Listing Two) with tumbler's added keys.

    [common]
       port = 8675
       log = /var/log/tumblerd.log
    [door-open-ssh]
       secret = open-pAsSwOrD
       command = iptables -I INPUT -p tcp -s %IP% --dport 22 -j ACCEPT
    [door-ssh]
       protocol = 2                  # v2 knocks (docs/PROTOCOL.md); 1, 2 takes both
       key_file = ssh.key            # or key = the 43 characters of `tumbler keygen`
       open = tcp/22

Every error names the file and line, because an administrator fixes configs by line.
Reading is all-or-nothing: a config that fails to load changes nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from tumbler.actions import firewall as firewall_names
from tumbler.addresses import normalize_address
from tumbler.config.inifile import NAME_RULE, Section, read_sections
from tumbler.decisions.replay import LOCAL_STORES, check_replay_spec
from tumbler.decisions.verifier import MAX_WINDOW_MINUTES
from tumbler.decisions.verifier2 import DEFAULT_WINDOW_SECONDS, MAX_WINDOW_SECONDS
from tumbler.doors import DEFAULT_SEQUENCE_TIMEOUT, SequenceDoor, is_door_name
from tumbler.durations import parse_duration
from tumbler.errors import ConfigError
from tumbler.events import NFLOG_GROUP
from tumbler.filemodes import readable_by_others
from tumbler.ports import MAX_PORTS_EACH, PortSpec, parse_port, parse_port_list, port_count
from tumbler.protocols import tumbler2
from tumbler.protocols.tumbler1 import DEFAULT_PORT
from tumbler.secretfile import SecretFileError, read_secret_file

ROOT_CONTROL = "/run/tumbler/control.sock"
FIREWALLS = firewall_names.NAMES


@dataclass(frozen=True)
class Door:
    """One door: what a knock must prove (a secret, a key or a port sequence) and what it opens.

    `secret` takes v1 knocks, `key` (32 bytes) v2 knocks; a door with both takes either.
    """

    name: str
    line: int
    secret: str | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)
    command: str | None = None
    open: tuple[PortSpec, ...] = ()
    timeout: float = 30.0
    firewall: str = "auto"
    set: str | None = None
    sequence: tuple[PortSpec, ...] = ()
    sequence_timeout: float = DEFAULT_SEQUENCE_TIMEOUT
    secret_file: Path | None = None  # where `secret` was read from, for the start-up checks
    sequence_door: SequenceDoor | None = field(default=None, repr=False, compare=False)
    """The matcher's door, built (and so checked) once, by the config."""

    @property
    def is_sequence(self) -> bool:
        return bool(self.sequence)

    @property
    def protocols(self) -> tuple[int, ...]:
        """The knock versions this door takes."""
        return tuple(v for v, c in ((1, self.secret), (2, self.key)) if c is not None)


@dataclass(frozen=True)
class Config:
    """A checked config; `warnings` are problems worth logging that do not stop the daemon."""

    path: str
    port: int = DEFAULT_PORT
    log: str | None = None
    listen: tuple[str, ...] = ("0.0.0.0", "::")  # noqa: S104 - listening everywhere is the point
    window: int = 1
    window_seconds: int = DEFAULT_WINDOW_SECONDS
    realm: str = ""
    state: str = ""
    replay: str = "sqlite"
    replay_fallback: str | None = None
    command_timeout: float = 30.0
    firewall: str = "auto"
    sequence_source: str = "nflog"
    nflog_group: int = NFLOG_GROUP
    control: str = ""
    doors: tuple[Door, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def secret_doors(self) -> tuple[Door, ...]:
        return tuple(d for d in self.doors if d.secret is not None)

    @property
    def key_doors(self) -> tuple[Door, ...]:
        return tuple(d for d in self.doors if d.key is not None)

    @property
    def sequence_doors(self) -> tuple[Door, ...]:
        return tuple(d for d in self.doors if d.is_sequence)


def default_state_dir() -> Path:
    """/var/lib/tumbler for root, the XDG state directory for anyone else."""
    if os.geteuid() == 0:
        return Path("/var/lib/tumbler")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tumbler"


def default_control_path() -> str:
    """Root's socket lives in /run; anyone else's beside the state."""
    if os.geteuid() == 0:
        return ROOT_CONTROL
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return str(Path(runtime) / "tumbler.sock")
    return str(default_state_dir() / "control.sock")


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,9}", text):
            raise ValueError(f"expected a whole number, got {text!r}")
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range {lo}-{hi}")
        return value

    return parse


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return text

    return parse


def _listen(text: str) -> tuple[str, ...]:
    addresses = tuple(a.strip() for a in text.replace(",", " ").split() if a.strip())
    if not addresses:
        raise ValueError("listen needs at least one address")
    for address in addresses:
        normalize_address(address)  # raises ValueError on a bad one
    return addresses


def _fallback(text: str) -> str:
    return _choice(*LOCAL_STORES)(text)


def _sequence_source(text: str) -> str:
    if text == "nflog" or (text.startswith("file:") and len(text) > len("file:")):
        return text
    raise ValueError(f"sequence_source must be nflog or file:PATH, got {text!r}")


def _set_name(text: str) -> str:
    parts = text.split()
    if (
        len(parts) != 3
        or parts[0] not in ("inet", "ip", "ip6")
        or not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", p) for p in parts[1:])
    ):
        raise ValueError(
            f"set must be 'FAMILY TABLE SET' (e.g. 'inet filter tumbler_ssh'): {text!r}"
        )
    return " ".join(parts)


def _text(text: str) -> str:
    if not text:
        raise ValueError("empty value")
    return text


def _realm(text: str) -> str:
    tumbler2.realm_bytes(text)  # raises ValueError, which names no part of the value
    return text


def _protocols(text: str) -> tuple[int, ...]:
    versions = [v.strip() for v in text.replace(",", " ").split()]
    if (
        not versions
        or any(v not in ("1", "2") for v in versions)
        or len(set(versions)) < len(versions)
    ):
        raise ValueError(f"protocol is 1, 2 or '1, 2', got {text!r}")
    return tuple(sorted(int(v) for v in versions))


def _key(text: str) -> bytes:
    return tumbler2.decode_key(text)  # BadKey is a ValueError and never quotes the text


_COMMON: dict[str, Callable[[str], object]] = {
    "port": parse_port,
    "log": _text,
    "listen": _listen,
    "window": _int_in(0, MAX_WINDOW_MINUTES),
    "window_seconds": _int_in(0, MAX_WINDOW_SECONDS),
    "realm": _realm,
    "state": _text,
    "replay": check_replay_spec,
    "replay_fallback": _fallback,
    "command_timeout": parse_duration,
    "firewall": _choice(*FIREWALLS),
    "sequence_source": _sequence_source,
    "nflog_group": _int_in(1, 65535),
    "control": _text,
}

_DOOR: dict[str, Callable[[str], object]] = {
    "protocol": _protocols,
    "secret": _text,
    "secret_file": _text,
    "key": _key,
    "key_file": _text,
    "command": _text,
    "open": lambda t: parse_port_list(t, allow_range=True),
    "timeout": parse_duration,
    "firewall": _choice(*FIREWALLS),
    "set": _set_name,
    "sequence": lambda t: parse_port_list(t, allow_range=False),
    "sequence_timeout": parse_duration,
}


def _schema(name: str) -> Mapping[str, Callable[[str], object]] | None:
    if name == "common":
        return _COMMON
    if name.startswith("door-") and is_door_name(name[len("door-") :]):
        return _DOOR
    return None


def _split(text: str, path: str) -> list[Section]:
    return read_sections(text, path, _schema, f"[common] or [door-NAME], {NAME_RULE}")


def _others_can_read(path: Path) -> bool:
    try:
        return readable_by_others(path.stat().st_mode)
    except OSError:
        return False


def _read_secret_file(ref: str, base: Path, path: str, line: int) -> tuple[str, Path | None]:
    """The door's secret, and its file's path when group or others can read that file."""
    secret_path = (base / ref) if not os.path.isabs(ref) else Path(ref)
    try:
        found = read_secret_file(secret_path)
    except SecretFileError as exc:
        raise ConfigError(f"secret_file {str(secret_path)!r}: {exc.reason}", path, line) from None
    return found.secret, (secret_path if found.exposed else None)


def _check_port_limit(section: Section, name: str, path: str, firewall: str) -> None:
    """Refuse a door that opens more ports than nftables (which `auto` tries first) holds.

    Without an administrator's `set`, nftables keeps every opened port as its own element;
    checked here so that the first knock does not find out.
    """
    if firewall not in ("nftables", "auto") or "set" in section.values:
        return
    count = port_count(section.get("open", cast(tuple[PortSpec, ...], ())))
    if count > MAX_PORTS_EACH:
        chosen = "auto, which tries nftables first" if firewall == "auto" else "nftables"
        raise ConfigError(
            f"door {name} opens {count} ports, but with firewall = {chosen} a door opens at "
            f"most {MAX_PORTS_EACH} (iptables has no such limit)",
            path,
            section.line_of("open"),
        )


def _door_key(
    section: Section, name: str, base: Path, path: str, secret_files: list[Path]
) -> bytes | None:
    """The door's v2 key from `key` or `key_file` (its first line, as key text), if any."""
    if "key" in section.values and "key_file" in section.values:
        raise ConfigError(
            f"door {name}: give key or key_file, not both", path, section.line_of("key_file")
        )
    if "key_file" not in section.values:
        return section.get("key", cast(bytes | None, None))
    line = section.line_of("key_file")
    ref = section.get("key_file", "")
    text, exposed = _read_secret_file(ref, base, path, line)
    if exposed is not None:
        secret_files.append(exposed)
    try:
        return tumbler2.decode_key(text)
    except tumbler2.BadKey as exc:
        raise ConfigError(f"key_file {ref!r}: {exc}", path, line) from None


def _check_protocols(section: Section, name: str, secret: bool, key: bool, path: str) -> None:
    """`protocol` says what the door takes: it must match the secret and key it was given."""
    versions = section.get("protocol", cast(tuple[int, ...], ()))
    line = section.line_of("protocol")
    if 1 in versions and not secret:
        raise ConfigError(f"door {name}: protocol 1 needs a secret or secret_file", path, line)
    if 2 in versions and not key:
        raise ConfigError(f"door {name}: protocol 2 needs a key or key_file", path, line)
    if secret and 1 not in versions:
        raise ConfigError(f"door {name}: a secret is for protocol 1, not listed here", path, line)
    if key and 2 not in versions:
        raise ConfigError(f"door {name}: a key is for protocol 2, not listed here", path, line)


def _door(section: Section, base: Path, path: str, firewall: str) -> tuple[Door, list[Path]]:
    name = section.name[len("door-") :]
    has = section.values.__contains__
    secret_files: list[Path] = []
    if has("secret") and has("secret_file"):
        raise ConfigError(
            f"door {name}: give secret or secret_file, not both",
            path,
            section.line_of("secret_file"),
        )
    secret = section.get("secret", cast(str | None, None))
    secret_path: Path | None = None
    if has("secret_file"):
        ref = section.get("secret_file", "")
        secret_path = (base / ref) if not os.path.isabs(ref) else Path(ref)
        secret, exposed = _read_secret_file(ref, base, path, section.line_of("secret_file"))
        if exposed is not None:
            secret_files.append(exposed)
    key = _door_key(section, name, base, path, secret_files)
    if has("sequence") and (secret is not None or key is not None):
        raise ConfigError(
            f"door {name}: a door is either a secret or key door or a sequence door, not both",
            path,
            section.line_of("sequence"),
        )
    if secret is None and key is None and not has("sequence"):
        raise ConfigError(f"door {name} has no secret, key or sequence", path, section.line)
    if has("protocol"):
        _check_protocols(section, name, secret is not None, key is not None, path)
    if has("sequence_timeout") and not has("sequence"):
        raise ConfigError(
            f"door {name}: sequence_timeout without a sequence",
            path,
            section.line_of("sequence_timeout"),
        )
    if not has("command") and not has("open"):
        raise ConfigError(
            f"door {name} does nothing: give it a command, an open, or both", path, section.line
        )
    sequence_door = None
    if has("sequence"):
        try:
            sequence_door = SequenceDoor(
                name,
                section.get("sequence", ()),
                section.get("sequence_timeout", Door.sequence_timeout),
            )
        except ValueError as exc:
            raise ConfigError(f"door {name}: {exc}", path, section.line_of("sequence")) from None
    for option in ("timeout", "firewall", "set"):
        if has(option) and not has("open"):
            raise ConfigError(f"door {name}: {option} needs an open", path, section.line_of(option))
    _check_port_limit(section, name, path, section.get("firewall", firewall))
    door = Door(
        name=name,
        line=section.line,
        secret=secret,
        key=key,
        command=section.get("command", cast(str | None, None)),
        open=section.get("open", cast(tuple[PortSpec, ...], ())),
        timeout=section.get("timeout", Door.timeout),
        firewall=section.get("firewall", firewall),
        set=section.get("set", cast(str | None, None)),
        sequence=section.get("sequence", cast(tuple[PortSpec, ...], ())),
        sequence_timeout=section.get("sequence_timeout", Door.sequence_timeout),
        secret_file=secret_path,
        sequence_door=sequence_door,
    )
    return door, secret_files


def _one_iptables_variant(doors: list[Door], path: str) -> None:
    """Refuse doors that mix iptables variants: they would share one chain and its closes."""
    first: Door | None = None
    for door in doors:
        if not door.open or not door.firewall.startswith("iptables"):
            continue
        if first is None:
            first = door
        elif door.firewall != first.firewall:
            raise ConfigError(
                f"door {door.name} uses firewall {door.firewall} but door {first.name} uses "
                f"{first.firewall}: both would manage the one TUMBLER chain; pick one variant",
                path,
                door.line,
            )


def _permission_warnings(path: str, holds_secret: bool, exposed: list[Path]) -> list[str]:
    """`exposed`: the secret files that group or others can read."""
    config = Path(path)
    files = [config] if holds_secret and path != "<config>" and _others_can_read(config) else []
    return [
        f"{f} holds a secret and is readable by group or others; run: chmod 600 {f}"
        for f in files + exposed
    ]


def parse_config(text: str, path: str = "<config>", base: Path | None = None) -> Config:
    """Parse and check config text; raise ConfigError naming path and line on the first problem."""
    base = base if base is not None else Path(path).parent
    sections = _split(text, path)
    common = next((s for s in sections if s.name == "common"), Section("common", 0))
    firewall = common.get("firewall", Config.firewall)
    doors: list[Door] = []
    secret_files: list[Path] = []
    secrets: dict[str, str] = {}
    key_ids: dict[bytes, str] = {}
    for section in sections:
        if section.name == "common":
            continue
        door, files = _door(section, base, path, firewall)
        secret_files += files
        if door.secret is not None:
            if door.secret in secrets:
                raise ConfigError(
                    f"door {door.name} has the same secret as door {secrets[door.secret]}",
                    path,
                    section.line,
                )
            secrets[door.secret] = door.name
        if door.key is not None:
            kid = tumbler2.key_id(door.key)
            if kid in key_ids:
                raise ConfigError(
                    f"door {door.name} has the same key as door {key_ids[kid]}",
                    path,
                    section.line,
                )
            key_ids[kid] = door.name
        doors.append(door)
    if not doors:
        raise ConfigError("no [door-NAME] section: the daemon would have nothing to open", path)
    _one_iptables_variant(doors, path)
    replay = common.get("replay", Config.replay)
    if "replay_fallback" in common.values and replay in LOCAL_STORES:
        raise ConfigError(
            "replay_fallback only applies to a redis:// replay store",
            path,
            common.line_of("replay_fallback"),
        )
    holds_secret = any("secret" in s.values or "key" in s.values for s in sections)
    return Config(
        path=path,
        port=common.get("port", Config.port),
        log=common.get("log", cast(str | None, None)),
        listen=common.get("listen", Config.listen),
        window=common.get("window", Config.window),
        window_seconds=common.get("window_seconds", Config.window_seconds),
        realm=common.get("realm", Config.realm),
        state=common.get("state", str(default_state_dir() / "state.db")),
        replay=replay,
        replay_fallback=common.get("replay_fallback", cast(str | None, None)),
        command_timeout=common.get("command_timeout", Config.command_timeout),
        firewall=firewall,
        sequence_source=common.get("sequence_source", Config.sequence_source),
        nflog_group=common.get("nflog_group", Config.nflog_group),
        control=common.get("control", default_control_path()),
        doors=tuple(doors),
        warnings=tuple(_permission_warnings(path, holds_secret, secret_files)),
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the config file at `path`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of line 1
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", str(p)) from None
    return parse_config(text, str(p), p.parent)
