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
    [door-ssh-users]
       authorized_keys = /etc/tumbler/ssh-users   # signed knocks (docs/SIGNED-KNOCKS.md)
       open = tcp/22

Every error names the file and line, because an administrator fixes configs by line.
Reading is all-or-nothing: a config that fails to load changes nothing.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import cast

from tumbler.actions import firewall as firewall_names
from tumbler.actions.firewall.nftables import SetRef
from tumbler.addresses import IPV6_PREFIX, normalize_address
from tumbler.config import fwknop as fwknop_config
from tumbler.config.inifile import NAME_RULE, Section, read_sections
from tumbler.decisions.replay import LOCAL_STORES, ReplaySpec
from tumbler.decisions.replay.redisurl import RedisAccess
from tumbler.decisions.verifier import MAX_WINDOW_MINUTES
from tumbler.decisions.verifier2 import DEFAULT_WINDOW_SECONDS, MAX_WINDOW_SECONDS
from tumbler.doors import DEFAULT_OPEN_TIMEOUT, DEFAULT_SEQUENCE_TIMEOUT, SequenceDoor, is_door_name
from tumbler.durations import parse_duration
from tumbler.errors import ConfigError
from tumbler.events import NFLOG_GROUP
from tumbler.filemodes import readable_by_others, writable_by_others
from tumbler.ports import MAX_PORTS_EACH, PortSpec, parse_port, parse_port_list, port_count
from tumbler.protocols import tumbler2
from tumbler.protocols.authorized_keys import AuthorizedKey, parse_authorized_keys
from tumbler.protocols.fwknop import FwknopDoor
from tumbler.protocols.tumbler1 import DEFAULT_PORT
from tumbler.secretfile import SecretFileError, read_secret_file
from tumbler.sources.spec import SourceSpec

ROOT_CONTROL = "/run/tumbler/control.sock"
FIREWALLS = firewall_names.NAMES
PATHS = ("input", "forward")  # which hook a door's `open` guards: to this host, or through it


def default_state_dir() -> Path:
    """/var/lib/tumbler for root, the XDG state directory for anyone else."""
    if os.geteuid() == 0:
        return Path("/var/lib/tumbler")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tumbler"


def default_state_path() -> str:
    """The state database when the config names none."""
    return str(default_state_dir() / "state.db")


def default_control_path() -> str:
    """Root's socket lives in /run; anyone else's beside the state."""
    if os.geteuid() == 0:
        return ROOT_CONTROL
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return str(Path(runtime) / "tumbler.sock")
    return str(default_state_dir() / "control.sock")


@dataclass(frozen=True)
class Door:
    """One door: what a knock must prove (a secret, a key, SSH keys, a sequence) and what it opens.

    `secret` takes v1 knocks, `key` (32 bytes) v2 knocks; a door with both takes either.
    `authorized_keys` names the file of SSH public keys whose signed knocks the door takes;
    `keys` are the usable keys read from it at load time (a reload reads it again).
    """

    name: str
    line: int
    secret: str | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)
    authorized_keys: str | None = None
    keys: tuple[AuthorizedKey, ...] = field(default=(), repr=False)
    command: str | None = None
    open: tuple[PortSpec, ...] = ()
    timeout: float = DEFAULT_OPEN_TIMEOUT
    firewall: str = "auto"
    set: SetRef | None = None  # an administrator's nftables set to fill
    path: str = "input"
    sequence: tuple[PortSpec, ...] = ()
    sequence_timeout: float = DEFAULT_SEQUENCE_TIMEOUT
    secret_file: Path | None = None  # where `secret` was read from, for the start-up checks
    sequence_door: SequenceDoor | None = field(default=None, repr=False, compare=False)
    """The matcher's door, built (and so checked) once, by the config."""
    kind: str = "tumbler"
    fwknop: FwknopDoor | None = field(default=None, repr=False)  # for kind = fwknop

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
    state: str = field(default_factory=default_state_path)
    replay: ReplaySpec = field(default_factory=ReplaySpec)
    command_timeout: float = 30.0
    firewall: str = "auto"
    sequence_source: SourceSpec = field(default_factory=SourceSpec)
    nflog_group: int = NFLOG_GROUP
    ipv6_prefix: int = IPV6_PREFIX
    control: str = field(default_factory=default_control_path)
    metrics: tuple[str, int] | None = None  # (address, port) of the Prometheus endpoint
    fwknop_port: int = fwknop_config.DEFAULT_PORT
    workers: int = 1  # receiving processes on the knock port (SO_REUSEPORT)
    doors: tuple[Door, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def secret_doors(self) -> tuple[Door, ...]:
        return tuple(d for d in self.doors if d.secret is not None)

    @property
    def key_doors(self) -> tuple[Door, ...]:
        return tuple(d for d in self.doors if d.key is not None)

    @property
    def signed_doors(self) -> tuple[Door, ...]:
        return tuple(d for d in self.doors if d.authorized_keys is not None)

    @property
    def sequence_doors(self) -> tuple[Door, ...]:
        return tuple(d for d in self.doors if d.is_sequence)

    @property
    def fwknop_doors(self) -> tuple[FwknopDoor, ...]:
        """The fwknop doors in file order, which is the order packets are tried in."""
        return tuple(d.fwknop for d in self.doors if d.fwknop is not None)


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,9}", text):
            raise ValueError(f"expected a whole number, got {text!r}")
        value = int(text)
        if not lo <= value <= hi:
            raise ValueError(f"{value} is out of range {lo}-{hi}")
        return value

    return parse


def _at_most(value: float, limit: float) -> float:
    if value > limit:
        raise ValueError(f"{value:g} s is more than {limit:g} s")
    return value


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


def _metrics(text: str) -> tuple[str, int]:
    """`127.0.0.1:9675` or `[::1]:9675`: where to serve metrics."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"metrics is ADDRESS:PORT, e.g. 127.0.0.1:9675, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 metrics address goes in brackets, e.g. [::1]:9675: {text!r}")
    return normalize_address(host), parse_port(port)


def metrics_warning(address: tuple[str, int] | None) -> str | None:
    """What to say when metrics are served beyond loopback, else None."""
    if address is None or ipaddress.ip_address(address[0]).is_loopback:
        return None
    return (
        f"metrics served on {address[0]}:{address[1]}, not a loopback address: whoever "
        "reaches it reads door names and knock counts; firewall it or use 127.0.0.1"
    )


MAX_WORKERS = 256


def _workers(text: str) -> int:
    """`auto` (one per CPU) or a count of receiving processes, 1 to MAX_WORKERS."""
    if text == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_WORKERS))
    return _int_in(1, MAX_WORKERS)(text)


def _fallback(text: str) -> str:
    return _choice(*LOCAL_STORES)(text)


def _log_prefix(text: str) -> str:
    if not 0 < len(text) <= 127 or not text.isprintable() or "=" in text:
        raise ValueError(
            f"sequence_log_prefix must be 1-127 printable characters, no '=': {text!r}"
        )
    return text


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
    "replay": ReplaySpec.parse,
    "replay_fallback": _fallback,
    "replay_acks": _int_in(0, 16),
    "replay_ack_timeout": lambda t: _at_most(parse_duration(t), 5.0),
    "replay_user": _text,
    "replay_password": _text,
    "replay_password_file": _text,
    "replay_tls_ca": _text,
    "replay_tls_cert": _text,
    "replay_tls_key": _text,
    "command_timeout": parse_duration,
    "firewall": _choice(*FIREWALLS),
    "sequence_source": SourceSpec.parse,
    "sequence_log_prefix": _log_prefix,
    "nflog_group": _int_in(1, 65535),
    "ipv6_prefix": _int_in(1, 128),
    "control": _text,
    "metrics": _metrics,
    "fwknop_port": _int_in(1, 65535),
    "workers": _workers,
}

_DOOR: dict[str, Callable[[str], object]] = {
    "protocol": _protocols,
    "secret": _text,
    "secret_file": _text,
    "key": _key,
    "key_file": _text,
    "authorized_keys": _text,
    "command": _text,
    "open": lambda t: parse_port_list(t, allow_range=True),
    "timeout": parse_duration,
    "firewall": _choice(*FIREWALLS),
    "set": SetRef.parse,
    "path": _choice(*PATHS),
    "sequence": lambda t: parse_port_list(t, allow_range=False),
    "sequence_timeout": parse_duration,
    **fwknop_config.DOOR_KEYS,
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


def _read_secret_file(
    ref: str, base: Path, path: str, line: int, key: str = "secret_file"
) -> tuple[str, Path | None]:
    """The secret (or password), and its file's path when group or others can read it."""
    secret_path = _beside(ref, base)
    try:
        found = read_secret_file(secret_path)
    except SecretFileError as exc:
        raise ConfigError(f"{key} {str(secret_path)!r}: {exc.reason}", path, line) from None
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


def _beside(ref: str, base: Path) -> Path:
    """A path from the config, relative to the config's folder unless absolute."""
    return (base / ref) if not os.path.isabs(ref) else Path(ref)


_REDIS_KEYS = (
    "replay_fallback",
    "replay_acks",
    "replay_ack_timeout",
    "replay_user",
    "replay_password",
    "replay_password_file",
    "replay_tls_ca",
    "replay_tls_cert",
    "replay_tls_key",
)


def _replay(common: Section, base: Path, path: str) -> tuple[ReplaySpec, list[Path]]:
    """The replay store, with the replay_* keys beside a Redis URL: login, TLS, fallback."""
    replay = common.get("replay", ReplaySpec())
    has = common.values.__contains__
    target = replay.target
    for key in _REDIS_KEYS:
        if has(key) and target is None:
            raise ConfigError(
                f"{key} only applies to a redis replay store", path, common.line_of(key)
            )
    if target is None:
        return replay, []
    if has("replay_password") and has("replay_password_file"):
        raise ConfigError(
            "give replay_password or replay_password_file, not both",
            path,
            common.line_of("replay_password_file"),
        )
    password: str | None = common.get("replay_password", cast(str | None, None))
    files: list[Path] = []
    if has("replay_password_file"):
        line = common.line_of("replay_password_file")
        ref = common.get("replay_password_file", "")
        password, exposed = _read_secret_file(ref, base, path, line, "replay_password_file")
        if exposed is not None:
            files.append(exposed)
    tls_files: dict[str, str | None] = {}
    for key in ("replay_tls_ca", "replay_tls_cert", "replay_tls_key"):
        given = common.get(key, cast(str | None, None))
        if given is None:
            tls_files[key] = None
            continue
        if not target.tls:
            raise ConfigError(
                f"{key} needs TLS: use rediss:// (or rediss+sentinel://, rediss+cluster://)",
                path,
                common.line_of(key),
            )
        file = _beside(given, base)
        if not file.is_file() or not os.access(file, os.R_OK):
            raise ConfigError(
                f"{key} {str(file)!r} is not a readable file", path, common.line_of(key)
            )
        tls_files[key] = str(file)
    if (tls_files["replay_tls_cert"] is None) != (tls_files["replay_tls_key"] is None):
        key = "replay_tls_cert" if has("replay_tls_cert") else "replay_tls_key"
        raise ConfigError(
            "replay_tls_cert and replay_tls_key go together", path, common.line_of(key)
        )
    access = RedisAccess(
        user=common.get("replay_user", cast(str | None, None)),
        password=password,
        tls_ca=tls_files["replay_tls_ca"],
        tls_cert=tls_files["replay_tls_cert"],
        tls_key=tls_files["replay_tls_key"],
        acks=common.get("replay_acks", cast(int | None, None)),
        ack_timeout=common.get("replay_ack_timeout", RedisAccess.ack_timeout),
    )
    fallback = common.get("replay_fallback", cast(str | None, None))
    return replace(replay, fallback=fallback, access=access), files


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


def _read_authorized_keys(
    ref: str, base: Path, name: str, path: str, line: int
) -> tuple[str, tuple[AuthorizedKey, ...], list[str]]:
    """The usable keys of a door's `authorized_keys` file, and warnings about the rest.

    A file that cannot be read, or that group or others may change, leaves the door with
    no keys and a warning rather than refusing the config: a reload must never keep
    trusting keys that may have been removed, and the door's other knocks (a secret) keep
    working. At start-up tumblerd refuses such a file outright (daemon/paths.py).
    """
    keys_path = Path(ref).expanduser()
    keys_path = keys_path if keys_path.is_absolute() else base / keys_path
    try:
        text = keys_path.read_text(encoding="utf-8")
        mode = keys_path.stat().st_mode
    except (OSError, ValueError) as exc:  # ValueError: undecodable, or a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return (
            str(keys_path),
            (),
            [
                f"{path}:{line}: door {name}: cannot read authorized_keys {keys_path}: {reason}; "
                "the door takes no signed knocks"
            ],
        )
    if writable_by_others(mode):
        return (
            str(keys_path),
            (),
            [
                f"{path}:{line}: door {name}: authorized_keys {keys_path} is writable by group "
                f"or others, who could add a key; the door takes no signed knocks; "
                f"run: chmod go-w {keys_path}"
            ],
        )
    parsed = parse_authorized_keys(text, str(keys_path))
    warnings = list(parsed.warnings)
    if not parsed.keys:
        warnings.append(f"{keys_path}: no usable key; door {name} takes no signed knocks")
    return str(keys_path), tuple(parsed.keys), warnings


def _door(
    section: Section, base: Path, path: str, firewall: str, warnings: list[str]
) -> tuple[Door, list[Path]]:
    name = section.name[len("door-") :]
    has = section.values.__contains__
    if section.get("kind", "tumbler") == "fwknop":
        spa_door, notes = fwknop_config.fwknop_door(section, name, path)
        warnings += notes
        door = Door(
            name=name,
            line=section.line,
            command=section.get("command", cast(str | None, None)),
            open=spa_door.open_ports,
            timeout=section.get("timeout", Door.timeout),
            firewall=section.get("firewall", firewall),
            set=section.get("set", cast(SetRef | None, None)),
            kind="fwknop",
            fwknop=spa_door,
        )
        return door, []
    fwknop_config.check_not_fwknop(section, name, path)
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
    authorized_keys: str | None = None
    keys: tuple[AuthorizedKey, ...] = ()
    if has("authorized_keys"):
        line = section.line_of("authorized_keys")
        ref = section.get("authorized_keys", "")
        authorized_keys, keys, notes = _read_authorized_keys(ref, base, name, path, line)
        warnings += notes
    if has("sequence") and (secret is not None or key is not None or authorized_keys is not None):
        raise ConfigError(
            f"door {name}: a door is either a secret or key door or a sequence door, not both",
            path,
            section.line_of("sequence"),
        )
    if secret is None and key is None and authorized_keys is None and not has("sequence"):
        raise ConfigError(
            f"door {name} has no secret, key, authorized_keys or sequence", path, section.line
        )
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
    for option in ("timeout", "firewall", "set", "path"):
        if has(option) and not has("open"):
            raise ConfigError(f"door {name}: {option} needs an open", path, section.line_of(option))
    if section.get("path", Door.path) == "forward" and has("set"):
        raise ConfigError(
            f"door {name}: a forward door fills tumbler's own forward chain, not a set",
            path,
            section.line_of("set"),
        )
    _check_port_limit(section, name, path, section.get("firewall", firewall))
    door = Door(
        name=name,
        line=section.line,
        secret=secret,
        key=key,
        authorized_keys=authorized_keys,
        keys=keys,
        command=section.get("command", cast(str | None, None)),
        open=section.get("open", cast(tuple[PortSpec, ...], ())),
        timeout=section.get("timeout", Door.timeout),
        firewall=section.get("firewall", firewall),
        set=section.get("set", cast(SetRef | None, None)),
        path=section.get("path", Door.path),
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
        f"{f} holds a secret or password and is readable by group or others; run: chmod 600 {f}"
        for f in files + exposed
    ]


def parse_config(text: str, path: str = "<config>", base: Path | None = None) -> Config:
    """Parse and check config text; raise ConfigError naming path and line on the first problem."""
    base = base if base is not None else Path(path).parent
    sections = _split(text, path)
    common = next((s for s in sections if s.name == "common"), Section("common", 0))
    firewall = common.get("firewall", Config.firewall)
    doors: list[Door] = []
    warnings: list[str] = []
    secret_files: list[Path] = []
    secrets: dict[str, str] = {}
    key_ids: dict[bytes, str] = {}
    for section in sections:
        if section.name == "common":
            continue
        door, files = _door(section, base, path, firewall, warnings)
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
    replay, password_files = _replay(common, base, path)
    secret_files += password_files
    sequence_source = common.get("sequence_source", SourceSpec())
    if "sequence_log_prefix" in common.values:
        if sequence_source.kind != "file":
            raise ConfigError(
                "sequence_log_prefix only applies to sequence_source = file:PATH",
                path,
                common.line_of("sequence_log_prefix"),
            )
        sequence_source = replace(sequence_source, prefix=common.get("sequence_log_prefix", ""))
    holds_secret = any(
        key in s.values for s in sections for key in ("secret", "key", *fwknop_config.SECRET_KEYS)
    ) or ("replay_password" in common.values)
    metrics = common.get("metrics", cast(tuple[str, int] | None, None))
    if (said := metrics_warning(metrics)) is not None:
        warnings.append(said)
    return Config(
        path=path,
        port=common.get("port", Config.port),
        log=common.get("log", cast(str | None, None)),
        listen=common.get("listen", Config.listen),
        window=common.get("window", Config.window),
        window_seconds=common.get("window_seconds", Config.window_seconds),
        realm=common.get("realm", Config.realm),
        state=common.get("state", default_state_path()),
        replay=replay,
        command_timeout=common.get("command_timeout", Config.command_timeout),
        firewall=firewall,
        sequence_source=sequence_source,
        nflog_group=common.get("nflog_group", Config.nflog_group),
        ipv6_prefix=common.get("ipv6_prefix", Config.ipv6_prefix),
        control=common.get("control", default_control_path()),
        fwknop_port=common.get("fwknop_port", fwknop_config.DEFAULT_PORT),
        workers=common.get("workers", Config.workers),
        metrics=metrics,
        doors=tuple(doors),
        warnings=tuple(_permission_warnings(path, holds_secret, secret_files) + warnings),
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and check the config file at `path`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark is not part of line 1
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config: {exc}", str(p)) from None
    return parse_config(text, str(p), p.parent)
