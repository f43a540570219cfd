"""Knocking on fwknop servers: `fwknop://[STANZA@]HOST[:PORT]/[tcp/22,...]` and a .fwknoprc stanza.

The keys never go in a URL or on a command line: they come from a stanza of the user's
`.fwknoprc` (the file the fwknop client already keeps), named before the '@' or found by
its `SPA_SERVER`. The URL's path names the ports to ask for, else the stanza's `ACCESS`.

The address asked for is `--from` when given (`0.0.0.0` asks the server to take the
packet's source, which is how a client behind NAT or on IPv6 asks), else the stanza's
`ALLOW_IP`, else the local IPv4 address the datagram leaves from; over IPv6, which fwknop
messages cannot name, `0.0.0.0`.
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tumbler.client.fwknopurl import SCHEME, URL_SHAPE, FwknopURL, parse_fwknop_url
from tumbler.client.knock import KnockError, KnockUsageError, resolve
from tumbler.errors import ConfigError
from tumbler.filemodes import readable_by_others
from tumbler.ports import PortSpec
from tumbler.protocols import fwknop as spa
from tumbler.protocols.fwknop_access import (
    Stanza,
    parse_fwknop_ports,
    parse_fwknoprc,
    rc_stanza,
    stanza_keys,
)

__all__ = [
    "RC_ENV",
    "SCHEME",
    "URL_SHAPE",
    "FwknopTarget",
    "FwknopURL",
    "default_rc_path",
    "parse_fwknop_url",
    "read_rc",
    "send_spa",
    "target_from_rc",
]

RC_ENV = "FWKNOPRC"

Warn = Callable[[str], None]


# --- the .fwknoprc stanza ----------------------------------------------------------------


def default_rc_path(environ: dict[str, str] | None = None) -> Path:
    """$FWKNOPRC, else ~/.fwknoprc (the fwknop client's own default)."""
    env = os.environ if environ is None else environ
    return Path(env[RC_ENV]).expanduser() if env.get(RC_ENV) else Path.home() / ".fwknoprc"


def read_rc(path: Path, warn: Warn | None = None) -> dict[str, Stanza]:
    """The stanzas of an .fwknoprc; warns if group or others can read its keys."""
    try:
        with open(path, encoding="utf-8") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise KnockError(f"cannot read {path}: {exc}") from None
    if warn is not None and readable_by_others(mode):
        warn(f"{path} holds keys and is readable by group or others; chmod 600 it")
    try:
        return parse_fwknoprc(text, str(path))
    except ConfigError as exc:
        raise KnockUsageError(str(exc)) from None


@dataclass(frozen=True)
class FwknopTarget:
    """Everything a packet needs besides the address and the time; the repr hides the keys."""

    host: str
    port: int
    keys: spa.SpaKeys
    ports: tuple[PortSpec, ...]
    stanza: str
    digest_type: str = "sha256"
    client_timeout: int = 0
    allow_ip: str | None = None  # the stanza's ALLOW_IP; None: pick at send time
    user: str | None = None  # SPOOF_USER


def _find_stanza(stanzas: dict[str, Stanza], url: FwknopURL, path: Path) -> Stanza:
    if url.stanza is not None:
        try:
            return rc_stanza(stanzas, url.stanza)
        except KeyError:
            raise KnockUsageError(f"{path} has no [{url.stanza}] stanza") from None
    named = [n for n, s in stanzas.items() if n != "default" and s.get("SPA_SERVER") == url.host]
    if len(named) != 1:
        why = "no stanza has" if not named else "several stanzas have"
        raise KnockUsageError(
            f"{why} SPA_SERVER {url.host} in {path}; name one: fwknop://STANZA@{url.host}/"
        )
    return rc_stanza(stanzas, named[0])


def target_from_rc(url: FwknopURL, stanzas: dict[str, Stanza], path: Path) -> FwknopTarget:
    """Combine the URL with its .fwknoprc stanza (over [default]); the URL wins."""
    stanza = _find_stanza(stanzas, url, path)
    where = f"{path} [{stanza.name}]"
    if stanza.flag("USE_GPG"):
        raise KnockUsageError(f"{where}: GPG is not supported, only Rijndael keys")
    proto = (stanza.get("SPA_SERVER_PROTO") or "udp").lower()
    if proto != "udp":
        raise KnockUsageError(f"{where}: SPA_SERVER_PROTO {proto} is not supported, only udp")
    access = stanza.get("ACCESS")
    if not url.ports and not access:
        raise KnockUsageError(f"{where}: no ports: give them in the URL or as ACCESS")
    try:
        keys = stanza_keys(stanza, client=True)
        ports = url.ports or parse_fwknop_ports(access or "")
    except ValueError as exc:
        raise KnockUsageError(f"{where}: {exc}") from None
    allow = stanza.get("ALLOW_IP")
    if allow is not None and allow.lower() == "source":
        allow = spa.ANY_ADDRESS
    elif allow is not None and allow.lower() == "resolve":
        raise KnockUsageError(f"{where}: ALLOW_IP resolve is not supported; use --from")
    port_text = stanza.get("SPA_SERVER_PORT") or str(spa.DEFAULT_PORT)
    timeout_text = stanza.get("FW_TIMEOUT") or "0"
    if not port_text.isdigit() or not timeout_text.isdigit():
        raise KnockUsageError(f"{where}: SPA_SERVER_PORT and FW_TIMEOUT must be numbers")
    return FwknopTarget(
        host=url.host,
        port=url.port or int(port_text),
        keys=keys,
        ports=ports,
        stanza=stanza.name,
        digest_type=(stanza.get("DIGEST_TYPE") or "sha256").lower(),
        client_timeout=int(timeout_text),
        allow_ip=allow,
        user=stanza.get("SPOOF_USER"),
    )


# --- sending ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpaResult:
    """What was (or would be) sent; nothing secret."""

    host: str
    target: str
    port: int
    allow_ip: str
    ports: tuple[PortSpec, ...]
    datagram: bytes
    sent: bool


def send_spa(
    target: FwknopTarget,
    *,
    source: str | None = None,
    now: float | None = None,
    family: int = 0,
    dry_run: bool = False,
) -> SpaResult:
    """Build one SPA packet for `target` and send it over UDP (unless `dry_run`)."""
    failure: OSError | None = None
    for fam, sockaddr in resolve(target.host, target.port, family=family):
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        with sock:
            allow = _allow_address(source or target.allow_ip, fam, sock.getsockname()[0])
            try:
                data = spa.build_packet(
                    target.keys,
                    allow_ip=allow,
                    ports=target.ports,
                    user=target.user or getpass.getuser(),
                    timestamp=int(time.time() if now is None else now),
                    client_timeout=target.client_timeout,
                    digest_type=target.digest_type,
                )
            except ValueError as exc:
                raise KnockUsageError(str(exc)) from None
            if not dry_run:
                try:
                    sock.send(data)
                except OSError as exc:
                    raise KnockError(f"cannot send to {target.host}: {exc.strerror}") from None
        return SpaResult(
            target.host, str(sockaddr[0]), target.port, allow, target.ports, data, not dry_run
        )
    raise KnockError(f"cannot reach {target.host}: {failure.strerror if failure else 'no route'}")


def _allow_address(given: str | None, family: int, local: str) -> str:
    if given is not None:
        try:
            ip = ipaddress.ip_address(given)
        except ValueError:
            raise KnockUsageError(f"{given!r} is not an IPv4 address") from None
        if ip.version != 4:
            raise KnockUsageError("fwknop packets name an IPv4 address (or 0.0.0.0)")
        return str(ip)
    return local if family == socket.AF_INET else spa.ANY_ADDRESS
