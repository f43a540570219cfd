"""What a `replay = ...` Redis URL names: one server, a Sentinel service, or a Cluster.

One parser for the config (which refuses a bad URL with its line) and the store (which
connects to what it names), so the two can never read the same URL differently.

    redis://[USER:PASS@]HOST[:PORT][/DB]           one server (rediss:// with TLS; unix://)
    redis+sentinel://HOST:PORT[,HOST:PORT...]/SERVICE[/DB]
    redis+cluster://HOST:PORT[,HOST:PORT...]
    rediss+sentinel://...  rediss+cluster://...    the same over TLS
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

Kind = Literal["single", "sentinel", "cluster"]

SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}
PREFIXES = tuple(f"{scheme}://" for scheme in SCHEMES)
DEFAULT_PORTS = {"single": 6379, "sentinel": 26379, "cluster": 6379}
_SERVICE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]{1,253}")

# A claim must reach this many replicas by default: none for one server (there is nothing
# to fail over to, and WAIT would refuse every knock where no replica runs), one where
# Sentinel or Cluster may promote a replica (see docs/FLEET.md for the trade-off).
DEFAULT_ACKS: dict[Kind, int] = {"single": 0, "sentinel": 1, "cluster": 1}


@dataclass(frozen=True)
class RedisTarget:
    """A parsed replay URL: which kind of deployment, where, and whether over TLS."""

    url: str = field(repr=False)  # may hold a password: never log it, use `where`
    kind: Kind
    tls: bool
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0

    @property
    def where(self) -> str:
        """The URL without user, password or query, fit for a log line."""
        return redact_url(self.url)


@dataclass(frozen=True)
class RedisAccess:
    """How to log in and what to trust: the config's replay_* keys besides the URL."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    acks: int | None = None  # None: DEFAULT_ACKS for the kind of deployment
    ack_timeout: float = 0.25  # seconds WAIT may block the receive loop for the replicas


def is_redis_url(text: str) -> bool:
    return text.startswith(PREFIXES)


def redact_url(url: str) -> str:
    """The URL without user, password or query, fit for a log line."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        return "<unparsable redis URL>"
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, slash, path = rest.partition("/")
    hosts = netloc.rpartition("@")[2]
    if scheme == "unix":
        return f"unix://{hosts}{slash}{path}"
    if SCHEMES[scheme][0] == "single":
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return "<unparsable redis URL>"
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}{port}{parts.path}"
    return f"{scheme}://{hosts}{slash}{path}"


def _node(text: str, default_port: int) -> tuple[str, int]:
    m = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(?::([0-9]{1,5}))?", text)
    if not m or not _HOST.fullmatch(m.group(1)):
        raise ValueError(f"bad host {text!r} (use HOST:PORT or [IPV6]:PORT)")
    port = int(m.group(2)) if m.group(2) else default_port
    if not 1 <= port <= 65535:
        raise ValueError(f"bad port in {text!r}")
    return m.group(1).strip("[]"), port


def parse_redis_url(url: str) -> RedisTarget:
    """Check a replay URL and say what it names; ValueError says what is wrong."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError(f"not a redis URL (schemes: {', '.join(SCHEMES)})")
    kind, tls = SCHEMES[scheme]
    if kind == "single":
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"bad redis URL {redact_url(url)}: {exc}") from None
        if scheme != "unix" and not parts.hostname:
            raise ValueError(f"bad redis URL {redact_url(url)}: no host")
        return RedisTarget(url=url, kind=kind, tls=tls)
    if "?" in rest or "#" in rest:
        raise ValueError(f"{scheme}:// takes no query: give options as replay_* keys")
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        raise ValueError(f"{scheme}:// takes no password in the URL: use replay_password")
    nodes = tuple(_node(n.strip(), DEFAULT_PORTS[kind]) for n in netloc.split(",") if n.strip())
    if not nodes:
        raise ValueError(f"{scheme}:// needs at least one HOST:PORT")
    segments = [s for s in path.split("/") if s] if path else []
    if kind == "cluster":
        if segments:
            raise ValueError("a cluster has only database 0: give no path after the hosts")
        return RedisTarget(url=url, kind=kind, tls=tls, nodes=nodes)
    if not segments or len(segments) > 2 or not _SERVICE.fullmatch(segments[0]):
        raise ValueError(f"{scheme}:// needs the service name: HOST:PORT[,...]/SERVICE[/DB]")
    db = 0
    if len(segments) == 2:
        if not re.fullmatch(r"[0-9]{1,5}", segments[1]):
            raise ValueError(f"bad database number {segments[1]!r}")
        db = int(segments[1])
    return RedisTarget(url=url, kind=kind, tls=tls, nodes=nodes, service=segments[0], db=db)
