"""The daemon's config file, in the article's format (Listing Two) with tumbler's added keys.

    [common]
       port = 8675
       log = /var/log/tumblerd.log
    [door-open-ssh]
       secret = open-pAsSwOrD
       command = iptables -I INPUT -p tcp -s %IP% --dport 22 -j ACCEPT

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
from tumbler.doors import DEFAULT_SEQUENCE_TIMEOUT, SequenceDoor, is_door_name
from tumbler.durations import parse_duration
from tumbler.errors import ConfigError
from tumbler.events import NFLOG_GROUP
from tumbler.filemodes import readable_by_others
from tumbler.ports import PortSpec, parse_port, parse_port_list
from tumbler.protocols.tumbler1 import DEFAULT_PORT
from tumbler.secretfile import SecretFileError, read_secret_file

FIREWALLS = firewall_names.NAMES


@dataclass(frozen=True)
class Door:
    """One door: what a knock must prove (a secret or a port sequence) and what it opens."""

    name: str
    line: int
    secret: str | None = field(default=None, repr=False)
    command: str | None = None
    open: tuple[PortSpec, ...] = ()
    timeout: float = 30.0
    firewall: str = "auto"
    set: str | None = None
    sequence: tuple[PortSpec, ...] = ()
    sequence_timeout: float = DEFAULT_SEQUENCE_TIMEOUT
    sequence_door: SequenceDoor | None = field(default=None, repr=False, compare=False)
    """The matcher's door, built (and so checked) once, by the config."""

    @property
    def is_sequence(self) -> bool:
        return bool(self.sequence)


@dataclass(frozen=True)
class Config:
    """A checked config; `warnings` are problems worth logging that do not stop the daemon."""

    path: str
    port: int = DEFAULT_PORT
    log: str | None = None
    listen: tuple[str, ...] = ("0.0.0.0", "::")  # noqa: S104 - listening everywhere is the point
    window: int = 1
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
        return "/run/tumbler/control.sock"
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


_COMMON: dict[str, Callable[[str], object]] = {
    "port": parse_port,
    "log": _text,
    "listen": _listen,
    "window": _int_in(0, 60),
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
    "secret": _text,
    "secret_file": _text,
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
    if has("secret_file"):
        ref = section.get("secret_file", "")
        secret, exposed = _read_secret_file(ref, base, path, section.line_of("secret_file"))
        if exposed is not None:
            secret_files.append(exposed)
    if has("sequence") and secret is not None:
        raise ConfigError(
            f"door {name}: a door is either a secret door or a sequence door, not both",
            path,
            section.line_of("sequence"),
        )
    if secret is None and not has("sequence"):
        raise ConfigError(f"door {name} has no secret (nor a sequence)", path, section.line)
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
    for key in ("timeout", "firewall", "set"):
        if has(key) and not has("open"):
            raise ConfigError(f"door {name}: {key} needs an open", path, section.line_of(key))
    door = Door(
        name=name,
        line=section.line,
        secret=secret,
        command=section.get("command", cast(str | None, None)),
        open=section.get("open", cast(tuple[PortSpec, ...], ())),
        timeout=section.get("timeout", Door.timeout),
        firewall=section.get("firewall", firewall),
        set=section.get("set", cast(str | None, None)),
        sequence=section.get("sequence", cast(tuple[PortSpec, ...], ())),
        sequence_timeout=section.get("sequence_timeout", Door.sequence_timeout),
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
    holds_secret = any("secret" in s.values for s in sections)
    return Config(
        path=path,
        port=common.get("port", Config.port),
        log=common.get("log", cast(str | None, None)),
        listen=common.get("listen", Config.listen),
        window=common.get("window", Config.window),
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
