"""`fwknop://[STANZA@]HOST[:PORT]/[tcp/22,...]`: the URL of an fwknop server's door.

Apart from `client.fwknop` (the SPA packet, its cipher, the .fwknoprc) so that a profile
file naming such a door is read without loading them: ssh-proxy reads the file before
every ssh, and loads the machinery only when the door it knocks on is an fwknop one. The
ports are read by the rule of fwknop's own lists, `protocols.fwknop_access.
parse_fwknop_ports` (single ports, no ranges; tests/unit/test_one_rule.py).
"""

from __future__ import annotations

from tumbler.client import knock
from tumbler.client.knock import KnockUsageError
from tumbler.ports import PortSpec, parse_port, parse_port_list
from tumbler.records import NamedTuple

SCHEME = "fwknop"
# fwknop's UDP port, `protocols.fwknop.DEFAULT_PORT`, written here too so that reading a
# URL does not load the SPA protocol (and its cipher); tests/unit/test_fwknop_client.py.
DEFAULT_PORT = 62201
URL_SHAPE = "fwknop://[STANZA@]HOST[:PORT]/[tcp/22,udp/53]"


class FwknopURL(NamedTuple):
    """A parsed fwknop URL; nothing secret is in it (the keys live in the stanza)."""

    host: str
    port: int | None = None  # None: the stanza's SPA_SERVER_PORT, else DEFAULT_PORT
    stanza: str | None = None
    ports: tuple[PortSpec, ...] = ()

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        who = f"{self.stanza}@" if self.stanza else ""
        port = f":{self.port}" if self.port else ""
        return f"{SCHEME}://{who}{host}{port}/{','.join(str(p) for p in self.ports)}"


def _bad(reason: str) -> KnockUsageError:
    return KnockUsageError(f"bad URL: {reason} (expected {URL_SHAPE})")


def parse_fwknop_url(text: str) -> FwknopURL:
    """Parse `fwknop://[STANZA@]HOST[:PORT]/[PORTS]`; IPv6 literals go in brackets."""
    scheme, sep, rest = text.strip().partition("://")
    if not sep or scheme.lower() != SCHEME:
        raise _bad("the scheme is not fwknop://")
    authority, _, path = rest.partition("/")
    stanza, at, hostport = authority.rpartition("@")
    if at and not stanza:
        raise _bad("empty stanza name before '@'")
    if hostport.startswith("["):
        literal, close, after = hostport[1:].partition("]")
        if not close or (after and not after.startswith(":")):
            raise _bad("an IPv6 address goes in brackets, as in fwknop://[fd00::1]/")
        import ipaddress  # only for an address in brackets

        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            raise _bad(f"{literal!r} in brackets is not an IPv6 address") from None
        host, port_text = literal, after[1:]
    else:
        host, _, port_text = hostport.partition(":")
        if ":" in port_text:
            raise _bad("an IPv6 address goes in brackets, as in fwknop://[fd00::1]/")
    if not host:
        raise _bad("no host")
    port: int | None = None
    if port_text:
        try:
            port = parse_port(port_text)
        except ValueError as exc:
            raise _bad(str(exc)) from None
    ports: tuple[PortSpec, ...] = ()
    path = knock._unquote(path.rstrip("/"), "replace")
    if path:
        try:
            ports = parse_port_list(path, allow_range=False)  # as fwknop's parse_fwknop_ports
        except ValueError as exc:
            raise _bad(str(exc)) from None
    return FwknopURL(host, port, knock._unquote(stanza, "replace") or None, ports)
