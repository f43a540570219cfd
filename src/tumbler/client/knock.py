"""Client-side library: turn a `tumbler://` URL and a secret into a knock on the wire.

The `tumbler` CLI is a thin front-end over these functions, so that tests, benchmarks
and later commands (`tumbler ssh-proxy`) knock exactly the way the CLI does. Nothing
here prints; warnings go through a callback and errors are raised as `KnockError`
(runtime failure, exit status 1) or `KnockUsageError` (bad input, exit status 2).
A secret never appears in an error message, a repr or a prompt.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence

from tumbler.addresses import normalize_address
from tumbler.client.sentknocks import SentKnocks
from tumbler.errors import SecretFileError, TumblerError
from tumbler.protocols import tumbler1 as protocol
from tumbler.records import NamedTuple

TYPE_CHECKING = False  # not typing's: see tests/unit/test_client_startup.py
if TYPE_CHECKING:
    from datetime import datetime

SCHEME = "tumbler"
SCHEME2 = "tumbler2"
SSH_SCHEME = "tumbler+ssh"  # signed knocks: client.signed, loaded only for such a URL


def is_ssh_url(text: str) -> bool:
    """A signed-knock URL, told apart here so the other knocks never load client.signed."""
    return text.strip().lower().startswith(SSH_SCHEME + "://")


SECRET_ENV = "TUMBLER_SECRET"  # noqa: S105 (a variable name, not a secret)
# The minutes a knock may be stamped with, in order, when this one was used already: the
# daemon's default window (1) accepts the previous, current and next minute, and the next
# stays valid longest.
FRESH_OFFSETS = (0, 1, -1)

SockAddr = tuple[str, int] | tuple[str, int, int, int]
Warn = Callable[[str], None]


class KnockError(TumblerError):
    """A knock that could not be made (name resolution, network, file): exit status 1."""


class KnockUsageError(KnockError):
    """Bad input from the user (URL, secret, address, port): exit status 2."""


class NoFreshMinute(KnockError):
    """Every minute the daemon would accept was used for this address already."""


# --- URL -------------------------------------------------------------------------------

# Patterns as text: re compiles (and caches) one when first used, not at every start.
_SCHEME_SHAPE = r"[A-Za-z][A-Za-z0-9+.-]*\Z"
_BAD_ESCAPE = r"%(?![0-9A-Fa-f]{2})"
# A host name: letters, digits, `_`, `.` and `-`, neither starting with `.` or `-` nor
# ending with `-` (checked without a regular expression: it is on every knock's path).
_HOST_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _host_name(host: str) -> bool:
    return (
        0 < len(host) <= 253
        and host[0] not in ".-"
        and host[-1] != "-"
        and _HOST_CHARS.issuperset(host)
    )


URL_SHAPE = "tumbler://[SECRET@]HOST[:PORT]/ or tumbler2://[KEY@]HOST[:PORT]/[?realm=REALM]"


class KnockURL(NamedTuple):
    """A parsed door URL; the secret (v1) or key text (v2) is kept out of repr and str.

    `version` is 1 for `tumbler://` and 2 for `tumbler2://`; `realm` is v2's. The records
    of the knock path are named tuples: `dataclasses` costs start-up time.
    """

    host: str
    port: int = protocol.DEFAULT_PORT
    secret: str | None = None
    version: int = 1
    realm: str = ""

    def __repr__(self) -> str:
        return (
            f"KnockURL(host={self.host!r}, port={self.port!r}, "
            f"version={self.version!r}, realm={self.realm!r})"
        )

    def __str__(self) -> str:
        host = f"[{self.host.replace('%', '%25')}]" if ":" in self.host else self.host
        scheme = SCHEME2 if self.version == 2 else SCHEME
        query = f"?realm={_quote(self.realm)}" if self.realm else ""
        return f"{scheme}://{host}:{self.port}/{query}"


def _unquote(text: str, errors: str = "strict") -> str:
    """%-decoding (UTF-8); urllib.parse is loaded only for text that has a `%`."""
    if "%" not in text:
        return text
    import urllib.parse  # costs the client start-up time, and most URLs need none of it

    return urllib.parse.unquote(text, errors=errors)


def _quote(text: str) -> str:
    import urllib.parse  # only to show a v2 URL with a realm

    return urllib.parse.quote(text, safe="")


def _ipv6_literal(text: str) -> bool:
    """What goes in brackets: an IPv6 address, with an optional zone id (`%eth0`)."""
    address, mark, zone = text.partition("%")
    if ":" not in address or (mark and (not zone or "%" in zone)):
        return False
    try:
        normalize_address(address)
    except ValueError:
        return False
    return True


def _bad_url(reason: str) -> KnockUsageError:
    return KnockUsageError(f"bad URL: {reason} (expected {URL_SHAPE})")


def _parse_port(text: str) -> int:
    if not text:
        return protocol.DEFAULT_PORT
    try:
        from tumbler.ports import parse_port  # only for a URL that names its port

        return parse_port(text)
    except ValueError:
        raise _bad_url(f"port {text!r} is not a number from 1 to 65535") from None


def _split_hostport(hostport: str) -> tuple[str, int]:
    """Split HOST[:PORT] or [IPV6][:PORT]; a bare IPv6 address is refused as ambiguous."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            raise _bad_url("missing ']' after the IPv6 address")
        literal = _unquote(hostport[1:close], "replace")  # a zone id is written %25eth0
        after = hostport[close + 1 :]
        if after and not after.startswith(":"):
            raise _bad_url("only ':PORT' may follow ']'")
        if not _ipv6_literal(literal):
            raise _bad_url(f"{literal!r} in brackets is not an IPv6 address")
        return literal, _parse_port(after[1:])
    host, _, port_text = hostport.partition(":")
    if ":" in port_text:
        raise _bad_url("an IPv6 address must be in brackets, as in tumbler://[fd00::1]:8675/")
    if not host:
        raise _bad_url("no host")
    if not _host_name(host):
        raise _bad_url(f"{host!r} is not a host name or address")
    return host, _parse_port(port_text)


def parse_url(text: str) -> KnockURL:
    """Parse a door URL; the secret is percent-decoded (UTF-8), so it may hold `@ : / %`.

    Error messages name the part that is wrong but never echo the secret.
    """
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise _bad_url("no '://'")
    if scheme.lower() not in (SCHEME, SCHEME2):
        shown = f" {scheme}://" if re.match(_SCHEME_SHAPE, scheme) else ""
        raise _bad_url(f"scheme{shown} is not {SCHEME}:// or {SCHEME2}://")
    version = 2 if scheme.lower() == SCHEME2 else 1
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    realm = ""
    if version == 2:
        realm, tail = _realm_query(tail)
    if tail not in ("", "/"):
        raise _bad_url("nothing may follow HOST:PORT/ (write / ? # in a secret as %2F %3F %23)")
    userinfo, at, hostport = authority.rpartition("@")
    secret: str | None = None
    if at:
        if not userinfo:
            raise KnockUsageError("bad URL: empty secret before '@'")
        if "%" in userinfo and re.search(_BAD_ESCAPE, userinfo):
            raise _bad_url("broken %-escape in the secret (write % itself as %25)")
        try:
            secret = _unquote(userinfo)
        except UnicodeDecodeError:
            raise _bad_url("the secret's %-escapes are not UTF-8") from None
    host, port = _split_hostport(hostport)
    if version == 2 and secret is not None:
        _check_key_text(secret, "the URL")
    return KnockURL(host, port, secret, version, realm)


def _realm_query(tail: str) -> tuple[str, str]:
    """Split `/?realm=R` (or `?realm=R`) off a v2 URL's tail: (realm, what is left)."""
    path, mark, query = tail.partition("?")
    if not mark:
        return "", tail
    name, eq, value = query.partition("=")
    if name != "realm" or not eq or "&" in value or "#" in value:
        raise _bad_url("the only query a tumbler2:// URL takes is ?realm=REALM")
    from tumbler.protocols import tumbler2  # v2 only: kept off the v1 start-up path

    try:
        realm = _unquote(value)
        tumbler2.realm_bytes(realm)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad_url(f"bad realm: {exc}") from None
    return realm, path


def _check_key_text(text: str, origin: str) -> bytes:
    """The key `text` spells, or a usage error that names `origin` but never the text."""
    from tumbler.protocols import tumbler2  # v2 only: kept off the v1 start-up path

    try:
        return tumbler2.decode_key(text)
    except tumbler2.BadKey:
        raise KnockUsageError(
            f"{origin} does not hold a v2 key (43 characters of base64url, as tumbler keygen "
            "prints)"
        ) from None


# --- secret ----------------------------------------------------------------------------


class Secret(NamedTuple):
    """A door secret and where it came from (the origin may be shown, the value never)."""

    value: str
    origin: str

    def __repr__(self) -> str:
        return f"Secret(origin={self.origin!r})"


def _nonempty(value: str, origin: str) -> Secret:
    if not value:
        raise KnockUsageError(f"empty secret from {origin}")
    return Secret(value, origin)


def read_secret_file(path: str, warn: Warn | None = None) -> str:
    """The secret in `path`, by the one rule of `tumbler.secretfile` (first line, UTF-8).

    Warns when a regular file is readable by group or others: the secret opens a door.
    Pipes (`--secret-file <(pass show door)`) are read without the permission check.
    """
    from tumbler import secretfile  # only for --secret-file (or a profile's secret_file)

    try:
        found = secretfile.read_secret_file(path)
    except SecretFileError as exc:
        if exc.unreadable:
            raise KnockError(str(exc)) from None
        if exc.reason == secretfile.EMPTY:
            raise KnockUsageError(f"empty secret from --secret-file {path}") from None
        raise KnockUsageError(str(exc)) from None
    if warn is not None and found.exposed:
        warn(f"secret file {path} is readable by group or others; chmod 600 it")
    return found.secret


def prompt_secret(label: str) -> str:
    """Ask on the terminal without echo; refuse rather than read an echoing stdin."""
    import getpass  # only when asking: the knock path needs no terminal handling
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", getpass.GetPassWarning)
        try:
            return getpass.getpass(f"Secret for {label}: ")
        except getpass.GetPassWarning:
            raise KnockUsageError(
                f"no secret given and no terminal to ask on; use --secret-file or {SECRET_ENV}"
            ) from None
        except EOFError:
            raise KnockUsageError("no secret entered") from None


def resolve_secret(
    url: KnockURL,
    *,
    secret_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    prompt: Callable[[str], str] | None = prompt_secret,
    warn: Warn | None = None,
) -> Secret:
    """Find the secret: URL, then `secret_file`, then $TUMBLER_SECRET, then the prompt.

    The first source present wins, and an empty secret from it is an error rather than
    a reason to fall through: an empty variable or file is a mistake worth hearing about.
    For a v2 URL the result is always key text: the URL, the file and the variable must
    hold a key, and what is typed at the prompt is a passphrase, turned into the key with
    the URL's realm (docs/PROTOCOL.md, "Passphrases").
    """
    found = _find_secret(url, secret_file, environ, prompt, warn)
    if url.version != 2:
        return found
    from tumbler.protocols import tumbler2  # v2 only: kept off the v1 start-up path

    if found.origin == "the prompt":
        key = tumbler2.derive_key(found.value, url.realm)
        return Secret(tumbler2.encode_key(key), "the prompt (a passphrase)")
    _check_key_text(found.value, found.origin)
    return found


def _find_secret(
    url: KnockURL,
    secret_file: str | None,
    environ: Mapping[str, str] | None,
    prompt: Callable[[str], str] | None,
    warn: Warn | None,
) -> Secret:
    environ = os.environ if environ is None else environ
    if url.secret is not None:
        if secret_file is not None and warn is not None:
            warn("the URL holds a secret; --secret-file is ignored")
        return _nonempty(url.secret, "the URL")
    if secret_file is not None:
        return _nonempty(read_secret_file(secret_file, warn), f"--secret-file {secret_file}")
    if SECRET_ENV in environ:
        return _nonempty(environ[SECRET_ENV], SECRET_ENV)
    if prompt is None:
        raise KnockUsageError(f"no secret given; use the URL, --secret-file or {SECRET_ENV}")
    label = f"{url} (its passphrase)" if url.version == 2 else str(url)
    return _nonempty(prompt(label), "the prompt")


# --- addresses -------------------------------------------------------------------------


def normalize_source(text: str) -> str:
    """Validate a `--from` address and give it the form that enters the hash."""
    try:
        return normalize_address(text.strip())
    except ValueError:
        raise KnockUsageError(f"--from {text!r} is not an IP address") from None


def resolve(
    host: str, port: int, *, family: int = 0, socktype: int = socket.SOCK_DGRAM
) -> list[tuple[int, SockAddr]]:
    """getaddrinfo for `host`, IPv4 and IPv6 only, duplicates dropped, resolver order kept."""
    try:
        # An ASCII name goes as bytes: as text, socket would load the IDNA codec (and
        # unicodedata) at every start of the client.
        name: str | bytes = host.encode("ascii") if host.isascii() else host
        infos = socket.getaddrinfo(name, port, family, socktype)
    except socket.gaierror as exc:
        which = {int(socket.AF_INET): " as IPv4", int(socket.AF_INET6): " as IPv6"}.get(family, "")
        raise KnockError(f"cannot resolve {host}{which}: {exc.strerror}") from None
    except UnicodeError:
        raise KnockUsageError(f"{host!r} is not a host name") from None
    found: list[tuple[int, SockAddr]] = []
    for fam, _type, _proto, _name, sockaddr in infos:
        if fam not in (socket.AF_INET, socket.AF_INET6):
            continue
        # An IP family's address is (host, port[, flow, scope]), never bytes; typing.cast
        # would load typing at every start of the client.
        entry: tuple[int, SockAddr] = (int(fam), sockaddr)  # type: ignore[assignment]
        if entry not in found:
            found.append(entry)
    if not found:
        raise KnockError(f"cannot resolve {host}: no IPv4 or IPv6 address")
    return found


def _connected_udp(host: str, port: int, family: int) -> tuple[socket.socket, SockAddr]:
    """A UDP socket connected to the first address of `host` that has a route."""
    failure: OSError | None = None
    for fam, sockaddr in resolve(host, port, family=family):
        sock = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        return sock, sockaddr
    reason = failure.strerror if failure is not None else "no address"
    raise KnockError(f"cannot reach {host}: {reason}")


def udp_target(host: str, port: int, *, family: int = 0) -> str:
    """The address a knock to `host` goes to: the first of its addresses with a route."""
    sock, sockaddr = _connected_udp(host, port, family)
    with sock:
        return normalize_address(sockaddr[0])


def local_address(host: str, port: int = protocol.DEFAULT_PORT, *, family: int = 0) -> str:
    """The local address the kernel picks to reach `host`, as the original client did.

    Connecting a UDP socket sends nothing; it only makes the kernel choose a route.
    """
    sock, _ = _connected_udp(host, port, family)
    with sock:
        return normalize_address(sock.getsockname()[0])


# --- Tumbler knock ---------------------------------------------------------------------


class KnockResult(NamedTuple):
    """What was (or would be) sent: enough to explain a knock, nothing secret."""

    host: str
    target: str  # the IP address the datagram goes to
    port: int
    address: str  # the address inside the hash
    address_given: bool  # True when --from chose it, False when the kernel did
    seconds: float  # the moment knocked for, since the epoch (`when` as a datetime)
    stamp: str  # v1: the minute stamp; v2: the time in seconds since the epoch
    datagram: bytes
    sent: bool
    version: int = 1

    @property
    def when(self) -> datetime:
        """The moment knocked for, in UTC (datetime is loaded only to explain a knock)."""
        from datetime import UTC, datetime

        return datetime.fromtimestamp(self.seconds, UTC)

    @property
    def digest(self) -> str:
        """v1: the knock K, as a receiver parses it out of the datagram; v2: the MAC, in hex."""
        if self.version == 2:
            from tumbler.protocols import tumbler2  # v2 only: kept off the v1 start-up path

            return tumbler2.parse(self.datagram).mac.hex()
        return protocol.parse_datagram(self.datagram)

    @property
    def shown(self) -> str:
        """The datagram as text: v1's is ASCII, v2's is binary and shown in hex."""
        return self.datagram.hex() if self.version == 2 else self.datagram.decode("ascii")


def _fresh_minute(
    now: float,
    address: str,
    secret: str,
    sent: SentKnocks | None,
    offsets: Sequence[int],
) -> tuple[float, str, str]:
    """(moment, stamp, digest) of the first minute in `offsets` this user has not knocked
    with yet for `address` and `secret`; without `sent`, simply the minute of `now`.

    Moments are seconds since the epoch: datetime costs the client start-up time.
    """
    candidates: list[tuple[float, str, str, float]] = []
    for offset in offsets if sent is not None else (0,):
        minute = int(now // 60) + offset
        stamp = protocol.stamp_for_minute(minute)
        # Another client picks this minute again only while it is within a minute of now.
        expires = float((minute + 2) * 60)
        moment = now + 60 * offset
        candidates.append((moment, stamp, protocol.knock_digest(stamp, address, secret), expires))
    if sent is None:
        return candidates[0][:3]
    try:
        index = sent.claim_first([(c[2], c[3]) for c in candidates], now)
    except OSError:
        return candidates[0][:3]  # no state directory: knock as the article's client does
    if index is None:
        wait = 60 - int(now) % 60
        raise NoFreshMinute(
            f"already knocked {len(candidates)} times this minute for {address}: tumblerd "
            f"would refuse another as a replay; try again in {wait} s"
        )
    return candidates[index][:3]


class KnockOptions(NamedTuple):
    """How a knock is made, besides where to and with which secret.

    `source` is the hashed address when given (a client behind NAT knows its public
    address), else the local address of the very socket the datagram leaves from. `when`
    (a datetime, or seconds since the epoch) defaults to now; tests and clock-skew checks
    pass their own. With `sent`, a v1 minute is the first of `offsets` (from `when`) not
    used for this address and secret yet (see client.sentknocks), and NoFreshMinute says
    when none is left. A `version` 2 knock takes key text as the secret, and the `realm`
    the server is configured with; its nonce makes every knock new, so it needs no such
    memory. (A named tuple: `dataclasses` costs the client start-up time.)
    """

    source: str | None = None
    when: datetime | float | None = None
    family: int = 0
    sent: SentKnocks | None = None
    offsets: Sequence[int] = FRESH_OFFSETS
    version: int = 1
    realm: str = ""


DEFAULTS = KnockOptions()  # now, the kernel's address, either family, no memory of minutes


def _knock(host: str, port: int, secret: str, options: KnockOptions, send: bool) -> KnockResult:
    if not secret:
        raise KnockUsageError("empty secret")
    version, source, when = options.version, options.source, options.when
    key = _check_key_text(secret, "the secret") if version == 2 else b""
    if when is None:
        now = time.time()
    else:
        now = when if isinstance(when, int | float) else when.timestamp()
    address = normalize_source(source) if source is not None else None
    sock, sockaddr = _connected_udp(host, port, options.family)
    with sock:
        if address is None:
            address = normalize_address(sock.getsockname()[0])
        if version == 2:
            import secrets

            from tumbler.protocols import tumbler2  # v2 only: kept off the v1 start-up path

            moment = now
            seconds = int(now)
            stamp = str(seconds)
            datagram = tumbler2.build(
                key, seconds, secrets.token_bytes(tumbler2.NONCE_LEN), address, options.realm
            )
        else:  # v1: the minute must be one this user has not knocked with yet
            moment, stamp, digest = _fresh_minute(
                now, address, secret, options.sent if send else None, options.offsets
            )
            datagram = protocol.encode_datagram(digest)
        if send:
            try:
                sock.send(datagram)
            except OSError as exc:
                raise KnockError(f"cannot send to {host} port {port}: {exc.strerror}") from None
    return KnockResult(
        host=host,
        target=normalize_address(sockaddr[0]),
        port=port,
        address=address,
        address_given=source is not None,
        seconds=moment,
        stamp=stamp,
        datagram=datagram,
        sent=send,
        version=version,
    )


def build_knock(host: str, port: int, secret: str, options: KnockOptions = DEFAULTS) -> KnockResult:
    """Resolve `host` and pick the address as `send_knock` would, but send nothing (and
    claim no minute: `sent` is not consulted)."""
    return _knock(host, port, secret, options, send=False)


def send_knock(host: str, port: int, secret: str, options: KnockOptions = DEFAULTS) -> KnockResult:
    """Send one Tumbler datagram to `host`, made as `options` say; nothing comes back, by
    design."""
    return _knock(host, port, secret, options, send=True)


def knock_url(
    url: KnockURL, secret: str, options: KnockOptions = DEFAULTS, *, dry_run: bool = False
) -> KnockResult:
    """`send_knock` (or `build_knock` when `dry_run`) for a parsed URL, of its version and
    realm."""
    options = options._replace(version=url.version, realm=url.realm)
    return _knock(url.host, url.port, secret, options, send=not dry_run)
