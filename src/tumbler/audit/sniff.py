"""`tumbler sniff`: the knock auditor of the article's Listing One, improved.

An eavesdropper who can read `tcpdump` output learns a classic port-knock sequence:
every TCP connection attempt that never got a SYN-ACK back is a knock, and it can
be replayed at will. This module shows that to an administrator, and shows next to
it why a Tumbler knock is different: each datagram is listed with its digest, a
repeat is flagged as a replay, and with the door's secret it tells which minute and
which address a knock was made for (so a replay from elsewhere, or later, is plain).

Input is `tcpdump -n` text (old 3.x and current 4.99 formats, with or without
timestamps, `-v` two-line forms, `-X`/`-A` payload dumps) or a pcap/pcapng file,
told apart by magic bytes. Lines that are not understood are skipped and counted,
never fatal, and so are records with a time no date can hold and lines longer than
`MAX_LINE` (tcpdump never prints one; a hostile file may). Every line is read in time
linear in its length. Pcap needs dpkt (the `pcap` extra), imported only when a capture
is read.

Decisions, so that the report means one thing:

- A knock is a SYN without ACK that no SYN-ACK answered (the article's rule). A SYN
  answered by RST is a *refused* attempt to a closed port with no filter; it is
  still a knock (a knock daemon reading the firewall log sees it just the same) and
  `--no-refused` leaves those out. A retransmitted SYN (same 4-tuple, same sequence
  number when known) counts once.
- UDP has no handshake, so classic UDP knocks (`Knock on HOST:udp/PORT`) are only
  reported with `--udp`: datagrams to a port that never sent anything back to the
  sender in the capture. Tumbler datagrams are always reported, recognised by
  content when the payload is known (pcap, `-X`, `-A`); from plain text, a UDP
  datagram of 73..77 bytes to the Tumbler port is reported as a *likely* knock.
- Times from text: `-tt` (epoch) is exact; `-tttt` dates are read in the local time
  zone (set TZ), as tcpdump printed them; a bare time of day has no date, so the
  minute check says "unknown time" unless `--date` supplies it.
"""

from __future__ import annotations

import base64
import io
import re
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from struct import error as struct_error
from typing import IO, Any, BinaryIO

from tumbler.addresses import normalize_address
from tumbler.errors import MalformedDatagram, TumblerError
from tumbler.protocols import sshsig, tumbler2
from tumbler.protocols.authorized_keys import AuthorizedKey
from tumbler.protocols.sshkeys import SshSupportMissing, load_verifier
from tumbler.protocols.tumbler1 import DEFAULT_PORT, knock_digest, minute_stamp
from tumbler.protocols.tumbler1 import parse_datagram as _parse_datagram

JSON_VERSION = 1
DEFAULT_WINDOW = 10
# Lengths a Tumbler datagram can have on the wire (v1: protocol.MIN/MAX_DATAGRAM; v2: 68).
LIKELY_LENGTHS = (tumbler2.DATAGRAM_LEN, *range(73, 78))
MAX_CANDIDATE_ADDRESSES = 64
MAX_LINE = 64 * 1024
"""Longer text lines are skipped unread: tcpdump's longest are a few hundred bytes."""
READ_CHUNK = 64 * 1024

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": "pcap",
    b"\xa1\xb2\xc3\xd4": "pcap",
    b"\x4d\x3c\xb2\xa1": "pcap",
    b"\xa1\xb2\x3c\x4d": "pcap",
    b"\x0a\x0d\x0d\x0a": "pcapng",
}


class SniffError(TumblerError):
    """An input that cannot be read at all (as opposed to a line that is skipped)."""


# --------------------------------------------------------------------------- model


@dataclass(slots=True)
class Packet:
    """One TCP segment or UDP datagram, whatever the input format it came from."""

    proto: str  # "tcp" or "udp"
    src: str
    sport: int
    dst: str
    dport: int
    time: datetime | None = None  # aware UTC, when the input gives a full date
    time_text: str | None = None  # the timestamp as the input printed it
    syn: bool = False
    ack: bool = False
    rst: bool = False
    seq: int | None = None
    length: int | None = None  # UDP payload length, when known
    payload: bytes | None = None  # UDP payload, when known


@dataclass(slots=True)
class Stats:
    """What the reader saw: `skipped` counts lines (or packets) it did not understand."""

    format: str = "text"
    lines: int = 0
    packets: int = 0
    skipped: int = 0


@dataclass(slots=True)
class Knock:
    """A failed connection attempt (TCP) or an unanswered datagram (UDP, with --udp)."""

    kind: str  # "tcp" or "udp"
    src: str
    sport: int
    dst: str
    dport: int
    time: datetime | None
    time_text: str | None
    order: int
    seq: int | None = None
    answer: str = "none"  # "none", "refused" (RST), or "open" (SYN-ACK: not a knock)
    retransmissions: int = 0


@dataclass(frozen=True, slots=True)
class Check:
    """What the secrets say about one Tumbler datagram.

    status: "match", "no-match", "unknown-time" (no date to search around) or
    "no-payload" (text without a dump: the digest is not known).
    """

    status: str
    secret: int | None = None  # 1-based index into the secrets given
    stamp: str | None = None
    minute: datetime | None = None
    offset_minutes: int | None = None  # knock minute minus capture minute
    made_for: str | None = None
    for_source: bool | None = None
    window: int | None = None
    offset_seconds: int | None = None  # v2: the knock's time minus the capture's


@dataclass(frozen=True, slots=True)
class V2Fields:
    """What a v2 datagram shows anyone: its key id and the sender's clock."""

    key_id: str
    sent: int  # seconds since the epoch, as the sender's clock said
    knock: tumbler2.Knock2 = field(repr=False, compare=False)


@dataclass(slots=True)
class Signed:
    """What a signed knock (docs/SIGNED-KNOCKS.md) shows without a key, and with one.

    `signature` is None when no key was given for its key id, else "for its source",
    "for ADDRESS, NOT its source", "bad" (no address in the capture makes it valid), or
    "not checked" (without the `cryptography` package).
    """

    key_id: bytes
    sent: int  # the time inside the knock, epoch seconds
    offset_seconds: int | None  # sent minus capture time, when the capture has a date
    key: str | None = None  # "comment SHA256:..." of the key, when given
    signature: str | None = None


def fingerprint_prefix(key_id: bytes) -> str:
    """The start of the key's `SHA256:` fingerprint that its 8-byte key id fixes (10 chars)."""
    return "SHA256:" + base64.b64encode(key_id).decode("ascii")[:10] + "..."


@dataclass(slots=True)
class TumblerKnock:
    """A Tumbler datagram (or, from text without payload, a likely one)."""

    number: int
    src: str
    sport: int
    dst: str
    dport: int
    time: datetime | None
    time_text: str | None
    order: int
    length: int | None
    digest: str | None  # None: payload unknown, a likely knock by size and port only
    replay_of: int | None = None
    check: Check | None = None
    v2: V2Fields | None = None  # set for a version 2 datagram (its digest is then the MAC)
    signed: Signed | None = None


@dataclass(slots=True)
class Report:
    """The analysis: knocks and Tumbler datagrams, plus the real connections seen."""

    stats: Stats
    knocks: list[Knock] = field(default_factory=list)
    tumbler: list[TumblerKnock] = field(default_factory=list)
    connections: list[Knock] = field(default_factory=list)

    def by_source(self) -> dict[str, list[Knock | TumblerKnock]]:
        """Knocks and Tumbler datagrams per source, sources in order of first appearance."""
        events: list[Knock | TumblerKnock] = sorted(
            [*self.knocks, *self.tumbler], key=lambda e: e.order
        )
        groups: dict[str, list[Knock | TumblerKnock]] = {}
        for event in events:
            groups.setdefault(event.src, []).append(event)
        return groups


# --------------------------------------------------------------------- text parser

_ADDR = r"[0-9A-Fa-f:.]+(?:%[\w.-]+)?"
_ENDPOINTS = re.compile(rf"(?:^|\s)({_ADDR})\.([\w-]+) > ({_ADDR})\.([\w-]+):(?:\s|$)")
_TS_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s")
_TS_EPOCH = re.compile(r"^(\d{9,11})(?:\.(\d{1,9}))?\s")
_TS_TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s")
_NEW_FLAGS = re.compile(r"\bFlags \[([A-Za-z.]*)\]")
_OLD_FLAGS = re.compile(r"^\s*([SFRPWEU]+|\.)(?:\s|$)")
_OLD_SEQ = re.compile(r"^\s*(?:[SFRPWEU]+|\.)\s+(\d+):\d+\(\d+\)")
_NEW_SEQ = re.compile(r"\bseq (\d+)")
_ACK = re.compile(r"\back \d+")
_UDP_LEN = re.compile(r"\bUDP, (?:bad )?length (\d+)|^\s*udp (\d+)\b")
_PROTO_HINT = re.compile(r"\b(?:proto|next-header) (TCP|UDP) \(\d+\)")
_HEXDUMP = re.compile(r"^\s+0x[0-9a-fA-F]{4,}:\s+((?:[0-9a-fA-F]{2,4} )*[0-9a-fA-F]{2,4})")
_TUMBLER_TEXT = re.compile(r"TUMBLER1: ?[0-9A-Fa-f]{64}")
_IP_WORD = re.compile(r"(?:^|\s)IP6?\s*\(")
_IP_END = re.compile(r"(?:^|\s)IP6?$")
_ETHERTYPE_END = re.compile(r"ethertype IPv[46] \(0x[0-9a-f]+\), length \d+:$")
_OTHER_PACKET = re.compile(r"(?:IP6?|ARP|RARP|ethertype|[0-9a-f]{2}(?::[0-9a-f]{2}){5}) ")
_OTHER_PROTOS = re.compile(r"\b(?:sctp|SCTP|dccp|DCCP|ICMP|icmp)\b")


def _ip_tagged(before: str) -> bool:
    """Whether the text before the endpoints ends in an `IP`/`IP6` tag, `IP (...)` or
    `ethertype IPv4 (0x0800), length N:`; each search is linear in the text's length."""
    text = before.rstrip()
    if _IP_END.search(text) or _ETHERTYPE_END.search(text):
        return True
    return text.endswith(")") and _IP_WORD.search(text) is not None


def _port(token: str, proto: str) -> int:
    """A port as tcpdump printed it: a number, or a service name when run without -n."""
    if token.isdigit():
        value = int(token)
    else:
        try:
            value = socket.getservbyname(token, proto)
        except OSError as exc:
            raise ValueError(f"unknown service {token!r}") from exc
    if not 0 <= value <= 65535:
        raise ValueError("port out of range")
    return value


def _fraction(text: str | None) -> int:
    return int((text or "0").ljust(6, "0")[:6])


def parse_timestamp(line: str, day: date | None = None) -> tuple[datetime | None, str | None, str]:
    """Split a leading timestamp off a line: (UTC time or None, its text or None, rest).

    `-tttt` dates are local time as tcpdump printed them; a bare time of day only
    becomes a time when `day` is given (also local).
    """
    m = _TS_DATE.match(line)
    if m:
        d = date.fromisoformat(m.group(1))
        t = time(int(m.group(2)), int(m.group(3)), int(m.group(4)), _fraction(m.group(5)))
        moment = datetime.combine(d, t).astimezone(UTC)
        return moment, line[: m.end()].strip(), line[m.end() :]
    m = _TS_EPOCH.match(line)
    if m:
        moment = datetime.fromtimestamp(int(m.group(1)), UTC)
        moment = moment.replace(microsecond=_fraction(m.group(2)))
        return moment, line[: m.end()].strip(), line[m.end() :]
    m = _TS_TIME.match(line)
    if m:
        text = line[: m.end()].strip()
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if day is None or hour > 23 or minute > 59 or second > 60:
            return None, text, line[m.end() :]
        t = time(hour, minute, min(second, 59), _fraction(m.group(4)))
        return datetime.combine(day, t).astimezone(UTC), text, line[m.end() :]
    return None, None, line


def parse_text_line(
    line: str, day: date | None = None, proto_hint: str | None = None
) -> Packet | None:
    """Parse one `tcpdump -n` line into a Packet, or None when it is not TCP/UDP we know.

    `proto_hint` is the protocol from a `-v` header line that precedes this one.
    """
    moment, ts_text, rest = parse_timestamp(line, day)
    hint = _PROTO_HINT.search(rest)
    if hint:
        proto_hint = hint.group(1).lower()
    for m in _ENDPOINTS.finditer(rest):
        try:
            src, dst = normalize_address(m.group(1)), normalize_address(m.group(3))
        except ValueError:
            continue
        before, after = rest[: m.start()], rest[m.end() :]
        packet = _classify(after, before, proto_hint, (src, m.group(2), dst, m.group(4)))
        if packet is not None:
            packet.time, packet.time_text = moment, ts_text
        return packet
    return None


def _classify(
    after: str, before: str, hint: str | None, ends: tuple[str, str, str, str]
) -> Packet | None:
    """Decide TCP or UDP from what follows the endpoints, and read flags and lengths."""
    src, sport_text, dst, dport_text = ends
    new = _NEW_FLAGS.search(after)
    old = None if new else _OLD_FLAGS.match(after)
    if new or old:
        sport, dport = _port(sport_text, "tcp"), _port(dport_text, "tcp")
        if new:
            flags = "" if new.group(1) == "none" else new.group(1)
            ack = "." in flags
            seq_m = _NEW_SEQ.search(after)
        else:
            assert old is not None
            flags = old.group(1).replace(".", "")
            ack = bool(_ACK.search(after))
            seq_m = _OLD_SEQ.match(after)
        return Packet(
            "tcp",
            src,
            sport,
            dst,
            dport,
            syn="S" in flags,
            ack=ack,
            rst="R" in flags,
            seq=int(seq_m.group(1)) if seq_m else None,
        )
    udp = _UDP_LEN.search(after)
    # In the current format every TCP line has "Flags [", so a line with ports after
    # an `IP`/`IP6` tag and no flags is UDP printed by a port's own dissector.
    tagged = _ip_tagged(before)
    if udp or hint == "udp" or (tagged and hint is None and not _OTHER_PROTOS.search(after)):
        length = None
        if udp:
            length = int(udp.group(1) or udp.group(2))
        return Packet(
            "udp", src, _port(sport_text, "udp"), dst, _port(dport_text, "udp"), length=length
        )
    return None


def _payload_from_dump(packet: Packet, dump: bytearray, ascii_lines: list[str]) -> None:
    """Recover a UDP payload from `-X` hex or `-A` text that followed its line."""
    if packet.proto != "udp" or packet.length is None:
        return
    if len(dump) >= packet.length + 8:
        # The dump is the IP packet (or the frame, with -XX); the payload is its tail.
        # Datagrams this long are never padded, so the tail is exact.
        packet.payload = bytes(dump[len(dump) - packet.length :])
        return
    for text in ascii_lines:
        m = _TUMBLER_TEXT.search(text)
        if m:
            found = m.group(0).encode("ascii")
            extra = packet.length - len(found)
            if extra in (0, 1, 2):  # -A shows the trailing \n or \r\n as a line break
                packet.payload = found + (b"", b"\n", b"\r\n")[extra]
            return


def iter_text_packets(
    lines: Iterable[str | bytes], stats: Stats | None = None, day: date | None = None
) -> Iterator[Packet]:
    """Packets from `tcpdump -n` text; what is not understood is counted in `stats.skipped`.

    A packet is yielded once the lines after it (a `-X`/`-A` dump) have been read.
    """
    stats = stats if stats is not None else Stats()
    pending: Packet | None = None
    dump = bytearray()
    ascii_lines: list[str] = []
    header: tuple[datetime | None, str | None, str | None] | None = None  # -v first line
    quoted = False  # inside the packet an ICMP error quotes (-v prints it as an indented pair)

    def flush() -> Iterator[Packet]:
        nonlocal pending
        if pending is not None:
            _payload_from_dump(pending, dump, ascii_lines)
            stats.packets += 1
            yield pending
        pending = None
        dump.clear()
        ascii_lines.clear()

    for raw in lines:
        stats.lines += 1
        if len(raw) > MAX_LINE:
            stats.skipped += 1
            continue
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            hexm = _HEXDUMP.match(line)
            if hexm and pending is not None:
                dump.extend(bytes.fromhex(hexm.group(1).replace(" ", "")))
                continue
            if quoted and line[:1].isspace():
                quoted = False  # the quoted packet's endpoints: it was not sent again
                stats.skipped += 1
                continue
            quoted = False
            if line[:1].isspace() and header is not None:
                # Second line of a -v pair: the endpoints, under the header's timestamp.
                moment, ts_text, hint = header
                header = None
                packet = parse_text_line(line, day, hint)
                if packet is not None:
                    yield from flush()
                    packet.time, packet.time_text = moment, ts_text
                    pending = packet
                    continue
                stats.skipped += 1
                continue
            packet = parse_text_line(line, day)
            if packet is not None:
                header = None
                yield from flush()
                pending = packet
                continue
            moment, ts_text, rest = parse_timestamp(line, day)
            if re.match(r"\s*IP6? \(", rest):
                yield from flush()  # a new packet: a dump below is no longer pending's
                if line[:1].isspace():  # not a packet's header: the one an ICMP error quotes
                    header, quoted = None, True
                    stats.skipped += 1
                    continue
                found = _PROTO_HINT.search(rest)
                header = (moment, ts_text, found.group(1).lower() if found else "other")
                continue
            if ts_text is not None or _OTHER_PACKET.match(rest):
                # A packet we do not read (ICMP, ARP...) begins: its -X dump, which may
                # quote a datagram, must not be taken for the pending packet's.
                yield from flush()
                header = None
                stats.skipped += 1
                continue
            if pending is not None and _TUMBLER_TEXT.search(line):
                ascii_lines.append(line)
                continue
            header = None
            stats.skipped += 1
        except (ValueError, IndexError, OverflowError):
            stats.skipped += 1
    yield from flush()


# --------------------------------------------------------------------- pcap reader


def _import_dpkt() -> Any:
    try:
        import dpkt  # optional extra: only capture files need it
    except ImportError as exc:
        raise SniffError(
            "reading pcap/pcapng needs dpkt: install the extra, pip install 'tumbler[pcap]'"
        ) from exc
    return dpkt


def _network_layer(dpkt: Any, linktype: int, buf: bytes) -> Any:
    """The IP or IP6 object inside a frame of the capture's link type, or None."""
    if linktype == 1:  # Ethernet (dpkt also strips VLAN tags)
        inner = dpkt.ethernet.Ethernet(buf).data
        return inner if isinstance(inner, dpkt.ip.IP | dpkt.ip6.IP6) else None
    offsets = {0: 4, 108: 4, 113: 16, 276: 20, 12: 0, 14: 0, 101: 0, 228: 0, 229: 0}
    if linktype not in offsets:
        return None
    raw = buf[offsets[linktype] :]
    version = raw[0] >> 4 if raw else 0
    if version == 4:
        return dpkt.ip.IP(raw)
    if version == 6:
        return dpkt.ip6.IP6(raw)
    return None


def iter_pcap_packets(stream: BinaryIO, stats: Stats | None = None) -> Iterator[Packet]:
    """Packets from a pcap or pcapng stream, with UDP payloads and exact UTC times."""
    stats = stats if stats is not None else Stats()
    dpkt = _import_dpkt()
    head = stream.read(4)
    stream.seek(0)
    kind = PCAP_MAGICS.get(head)
    if kind is None:
        raise SniffError("not a pcap or pcapng file")
    stats.format = kind
    try:
        reader = dpkt.pcapng.Reader(stream) if kind == "pcapng" else dpkt.pcap.Reader(stream)
    except (ValueError, dpkt.Error) as exc:
        raise SniffError(f"unreadable {kind} header: {exc}") from exc
    linktype = reader.datalink()
    records = iter(reader)
    while True:
        try:
            ts, buf = next(records)
        except StopIteration:
            break
        except (ValueError, dpkt.Error, struct_error):
            stats.skipped += 1  # a truncated record: the rest of the file is unreadable
            break
        stats.lines += 1
        try:
            packet = _packet_from_frame(dpkt, linktype, bytes(buf))
            moment = datetime.fromtimestamp(float(ts), UTC)
        except (ValueError, IndexError, OverflowError, OSError, dpkt.Error, struct_error):
            packet = None  # OverflowError, ValueError: a time no date can hold
        if packet is None:
            stats.skipped += 1
            continue
        packet.time = moment
        packet.time_text = moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
        stats.packets += 1
        yield packet


def _packet_from_frame(dpkt: Any, linktype: int, buf: bytes) -> Packet | None:
    ip = _network_layer(dpkt, linktype, buf)
    if ip is None:
        return None
    src = normalize_address(bytes(ip.src))
    dst = normalize_address(bytes(ip.dst))
    l4 = ip.data
    if isinstance(l4, dpkt.tcp.TCP):
        flags = l4.flags
        return Packet(
            "tcp",
            src,
            l4.sport,
            dst,
            l4.dport,
            syn=bool(flags & dpkt.tcp.TH_SYN),
            ack=bool(flags & dpkt.tcp.TH_ACK),
            rst=bool(flags & dpkt.tcp.TH_RST),
            seq=l4.seq,
        )
    if isinstance(l4, dpkt.udp.UDP):
        payload = bytes(l4.data)
        return Packet("udp", src, l4.sport, dst, l4.dport, length=l4.ulen - 8, payload=payload)
    return None


# ------------------------------------------------------------------------ analysis


def check_digest(
    digest: str,
    source: str,
    moment: datetime | None,
    secrets: Sequence[str],
    window: int = DEFAULT_WINDOW,
    candidates: Sequence[str] = (),
) -> Check:
    """Which minute, address and secret made `digest`: searched around the capture time.

    The source address is tried first, then the other `candidates` (addresses seen in
    the capture), so a knock replayed from another host shows whom it was made for.
    """
    if moment is None:
        return Check("unknown-time", window=window)
    base = moment.astimezone(UTC).replace(second=0, microsecond=0)
    offsets = [0]
    for k in range(1, window + 1):
        offsets += [-k, k]
    source = normalize_address(source)
    addresses = [source] + [a for a in dict.fromkeys(candidates) if a != source]
    for address in addresses[: MAX_CANDIDATE_ADDRESSES + 1]:
        for offset in offsets:
            try:
                minute = base + timedelta(minutes=offset)
            except OverflowError:  # past year 9999 or before year 1: no such minute
                continue
            stamp = minute_stamp(minute)
            for index, secret in enumerate(secrets, 1):
                if knock_digest(stamp, address, secret) == digest:
                    return Check(
                        "match",
                        secret=index,
                        stamp=stamp,
                        minute=minute,
                        offset_minutes=offset,
                        made_for=address,
                        for_source=address == source,
                        window=window,
                    )
    return Check("no-match", window=window)


def check_v2(
    knock: tumbler2.Knock2,
    source: str,
    moment: datetime | None,
    keys: Sequence[bytes],
    realm: str = "",
    candidates: Sequence[str] = (),
) -> Check:
    """Which key and address made a v2 knock: the key by its id, then one MAC per address.

    status: "match", "unknown-key" (no key given has this id) or "bad-mac" (the key, but
    neither the source nor any address in the capture: another realm, or a forgery).
    """
    index = next((i for i, key in enumerate(keys, 1) if tumbler2.key_id(key) == knock.key_id), None)
    if index is None:
        return Check("unknown-key")
    source = normalize_address(source)
    addresses = [source] + [a for a in dict.fromkeys(candidates) if a != source]
    for address in addresses[: MAX_CANDIDATE_ADDRESSES + 1]:
        if tumbler2.verify(knock, keys[index - 1], address, realm):
            offset = None if moment is None else tumbler2.clock_offset(knock, moment.timestamp())
            sent = datetime.fromtimestamp(min(knock.time, 253402300799), UTC)
            return Check(
                "match",
                secret=index,
                stamp=str(knock.time),
                minute=sent,
                made_for=address,
                for_source=address == source,
                offset_seconds=offset,
            )
    return Check("bad-mac", secret=index)


def tumbler_digest(payload: bytes) -> str | None:
    """The digest of a Tumbler datagram, or None for any other payload."""
    try:
        return _parse_datagram(payload)
    except MalformedDatagram:
        return None


def signed_knock(payload: bytes) -> sshsig.SignedKnock | None:
    """A signed knock's fields, or None for any other payload."""
    if not sshsig.looks_signed(payload):
        return None
    try:
        return sshsig.parse_datagram(payload)
    except MalformedDatagram:
        return None


def check_signed(
    knock: sshsig.SignedKnock,
    entry: AuthorizedKey,
    source: str,
    realm: str,
    candidates: Sequence[str],
) -> str:
    """For which address of the capture the knock's signature is valid (see `Signed`)."""
    try:
        verify = load_verifier(entry.key)
    except SshSupportMissing:
        return "not checked"
    source = normalize_address(source)
    addresses = [source] + [a for a in dict.fromkeys(candidates) if a != source]
    for address in addresses[: MAX_CANDIDATE_ADDRESSES + 1]:
        if sshsig.verify_knock(entry.key, verify, knock, address, realm):
            return "for its source" if address == source else f"for {address}, NOT its source"
    return "bad"


def _signed_info(
    knock: sshsig.SignedKnock,
    p: Packet,
    keys: Mapping[bytes, AuthorizedKey],
    realm: str,
    candidates: Sequence[str],
) -> Signed:
    capture = int(p.time.timestamp()) if p.time is not None else None
    info = Signed(knock.key_id, knock.time, None if capture is None else knock.time - capture)
    entry = keys.get(knock.key_id)
    if entry is not None:
        info.key = entry.label
        info.signature = check_signed(knock, entry, p.src, realm, candidates)
    return info


def analyze(
    packets: Iterable[Packet],
    *,
    stats: Stats | None = None,
    tumbler_port: int = DEFAULT_PORT,
    secrets: Sequence[str] = (),
    window: int = DEFAULT_WINDOW,
    include_refused: bool = True,
    udp_knocks: bool = False,
    keys: Sequence[bytes] = (),
    ssh_keys: Sequence[AuthorizedKey] = (),
    realm: str = "",
) -> Report:
    """Pair SYNs with their answers and pick out knocks and Tumbler datagrams.

    Pure: time comes from the packets, nothing is read or sent.
    """
    report = Report(stats if stats is not None else Stats())
    by_id = {entry.key.key_id: entry for entry in ssh_keys}
    signed_packets: list[tuple[TumblerKnock, sshsig.SignedKnock, Packet]] = []
    attempts: dict[tuple[str, int, str, int], Knock] = {}
    all_attempts: list[Knock] = []
    datagrams: list[Knock] = []
    replied: set[tuple[str, int, str, int]] = set()
    seen_digests: dict[str, int] = {}
    seen_addresses: dict[str, None] = {}
    for order, p in enumerate(packets):
        seen_addresses.setdefault(p.src)
        seen_addresses.setdefault(p.dst)
        if p.proto == "tcp":
            key = (p.src, p.sport, p.dst, p.dport)
            back = (p.dst, p.dport, p.src, p.sport)
            if p.syn and not p.ack:
                a = attempts.get(key)
                if a is not None and (
                    a.seq == p.seq
                    if a.seq is not None and p.seq is not None
                    else a.answer == "none"
                ):
                    a.retransmissions += 1
                    continue
                a = Knock("tcp", p.src, p.sport, p.dst, p.dport, p.time, p.time_text, order, p.seq)
                attempts[key] = a
                all_attempts.append(a)
            elif p.syn and p.ack:
                a = attempts.get(back)
                if a is not None:
                    a.answer = "open"
            elif p.rst:
                a = attempts.get(back)
                if a is not None and a.answer == "none":
                    a.answer = "refused"
            continue
        replied.add((p.dst, p.dport, p.src, p.sport))
        v2: V2Fields | None = None
        if p.payload is not None and tumbler2.is_v2(p.payload):
            k2 = tumbler2.parse(p.payload)
            v2 = V2Fields(k2.key_id.hex(), k2.time, k2)
            digest: str | None = k2.mac.hex()
        else:
            digest = tumbler_digest(p.payload) if p.payload is not None else None
        signed = signed_knock(p.payload) if p.payload is not None and digest is None else None
        if signed is not None:
            digest = sshsig.claim_token(signed)
        likely = p.payload is None and p.dport == tumbler_port and p.length in LIKELY_LENGTHS
        if digest is None and not likely:
            datagrams.append(
                Knock("udp", p.src, p.sport, p.dst, p.dport, p.time, p.time_text, order)
            )
            continue
        number = len(report.tumbler) + 1
        t = TumblerKnock(
            number, p.src, p.sport, p.dst, p.dport, p.time, p.time_text, order, p.length, digest
        )
        t.v2 = v2
        if digest is not None:
            t.replay_of = seen_digests.get(digest)
            seen_digests.setdefault(digest, number)
        if signed is not None:
            signed_packets.append((t, signed, p))
        report.tumbler.append(t)
    for t, signed, p in signed_packets:
        t.signed = _signed_info(signed, p, by_id, realm, list(seen_addresses))

    for a in all_attempts:
        if a.answer == "open":
            report.connections.append(a)
        elif a.answer == "none" or include_refused:
            report.knocks.append(a)
    if udp_knocks:
        report.knocks += [d for d in datagrams if (d.src, d.sport, d.dst, d.dport) not in replied]
        report.knocks.sort(key=lambda k: k.order)
    if keys:
        for t in report.tumbler:
            if t.v2 is not None:
                t.check = check_v2(t.v2.knock, t.src, t.time, keys, realm, list(seen_addresses))
    if secrets:
        cache: dict[tuple[str, str, datetime | None], Check] = {}
        candidates = list(seen_addresses)
        for t in report.tumbler:
            if t.v2 is not None or t.signed is not None:
                continue  # checked with keys, not secrets
            if t.digest is None:
                t.check = Check("no-payload", window=window)
                continue
            minute = t.time.replace(second=0, microsecond=0) if t.time else None
            seen = (t.digest, t.src, minute)
            if seen not in cache:
                cache[seen] = check_digest(t.digest, t.src, t.time, secrets, window, candidates)
            t.check = cache[seen]
    return report


# ------------------------------------------------------------------------- output


def _hostport(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _describe_check2(check: Check, source: str) -> str:
    if check.status == "match":
        whom = "for its source" if check.for_source else f"for {check.made_for}, NOT its source"
        offset = (
            "capture time unknown"
            if check.offset_seconds is None
            else f"{check.offset_seconds:+d} s from capture"
        )
        return f"made with key {check.secret} ({offset}) {whom}"
    if check.status == "bad-mac":
        return (
            f"key {check.secret} by its id, but the MAC fits neither {source} nor any address"
            " in the capture (another realm, or forged)"
        )
    return "no key given has this key id"


def _describe_check(check: Check, source: str) -> str:
    if check.status == "match":
        assert check.minute is not None
        minute = check.minute.strftime("%Y-%m-%d %H:%M UTC")
        whom = "for its source" if check.for_source else f"for {check.made_for}, NOT its source"
        return (
            f"made for minute {check.stamp} ({minute}, {check.offset_minutes:+d} min"
            f" from capture) {whom}, secret {check.secret}"
        )
    if check.status == "no-match":
        return (
            f"no secret matches {source} or any address in the capture"
            f" within ±{check.window} minutes"
        )
    if check.status == "unknown-time":
        return "minute unknown (no date in the input; use -tt, -tttt, --date or a pcap)"
    return "digest unknown (no payload in text; use a pcap or tcpdump -X)"


def _describe_signed(e: TumblerKnock, where: str, verbose: bool) -> list[str]:
    s = e.signed
    assert s is not None
    sent = datetime.fromtimestamp(min(s.sent, 253402300799), UTC)
    line = f"  Signed knock #{e.number} on {where} key {fingerprint_prefix(s.key_id)}"
    line += f" sent {sent:%Y-%m-%d %H:%M:%S} UTC"
    if s.offset_seconds is not None:
        line += f" ({s.offset_seconds:+d} s from capture)"
    if e.replay_of is not None:
        line += f" REPLAY of #{e.replay_of}"
    if verbose and e.time_text:
        line += f" [at {e.time_text}, from port {e.sport}]"
    lines = [line]
    if s.key is not None:
        verdicts = {
            "bad": "signature valid for no address in the capture (or another realm)",
            "not checked": "signature not checked (needs the cryptography package)",
        }
        verdict = verdicts.get(s.signature or "", f"signature valid {s.signature}")
        lines.append(f"      by {s.key}: {verdict}")
    return lines


def format_report(report: Report, verbose: bool = False) -> str:
    """The human report: a `From SRC:` header per source, then its knocks in order."""
    out: list[str] = []
    groups = report.by_source()
    for source, events in groups.items():
        out.append(f"From {source}:")
        for e in events:
            if isinstance(e, Knock):
                port = e.dport if e.kind == "tcp" else f"udp/{e.dport}"
                line = f"  Knock on {_hostport(e.dst, port)}"
                if verbose:
                    details = [f"at {e.time_text}"] if e.time_text else []
                    details.append(f"from port {e.sport}")
                    if e.kind == "tcp":
                        details.append("refused (RST)" if e.answer == "refused" else "no answer")
                    if e.retransmissions:
                        s = "s" if e.retransmissions > 1 else ""
                        details.append(f"{e.retransmissions} retransmission{s}")
                    line += f"  [{', '.join(details)}]"
                out.append(line)
                continue
            where = _hostport(e.dst, e.dport)
            if e.signed is not None:
                out += _describe_signed(e, where, verbose)
                continue
            if e.v2 is not None:
                sent = _iso(datetime.fromtimestamp(min(e.v2.sent, 253402300799), UTC))
                line = f"  Tumbler v2 knock #{e.number} on {where} key id {e.v2.key_id} sent {sent}"
            elif e.digest is None:
                line = f"  Likely Tumbler knock #{e.number} on {where} (UDP, {e.length} bytes)"
            else:
                line = f"  Tumbler knock #{e.number} on {where} digest {e.digest[:16]}..."
            if e.replay_of is not None:
                line += f" REPLAY of #{e.replay_of}"
            if verbose and e.time_text:
                line += f" [at {e.time_text}, from port {e.sport}]"
            out.append(line)
            if e.check is not None and e.v2 is not None:
                out.append(f"      {_describe_check2(e.check, e.src)}")
            elif e.check is not None:
                out.append(f"      {_describe_check(e.check, e.src)}")
    if not groups:
        out.append("No knocks found.")
    if verbose and report.connections:
        out.append("Real connections (answered by SYN-ACK, not knocks):")
        for c in report.connections:
            out.append(f"  {_hostport(c.src, c.sport)} -> {_hostport(c.dst, c.dport)}")
    return "\n".join(out) + "\n"


def report_to_json(report: Report) -> dict[str, Any]:
    """The `--json` structure (version 1); keys are only ever added, never changed.

    {"version": 1,
     "input": {"format": "text"|"pcap"|"pcapng", "lines" (records, for a capture),
               "packets", "skipped"},
     "sources": [{"address", "knocks": [{"kind": "tcp"|"udp", "host", "port",
                  "source_port", "time" (ISO UTC or null), "time_text", "answer":
                  "none"|"refused"|null (udp), "retransmissions"}],
                  "tumbler": [{"number", "host", "port", "source_port", "time",
                  "time_text", "length", "digest" (null: likely, payload unknown; v2: the
                  MAC), "replay_of" (number or null), "check" (null without --secret or
                  --key), and for v2 only "version": 2, "key_id", "sent" (epoch s);
                  "signed" (null but for a signed knock: {"key_id", "fingerprint_prefix",
                  "time", "offset_seconds", "key" and "signature", both null without
                  --authorized-keys)}]}],
     "connections": [{"source", "source_port", "host", "port", "time", "time_text"}]}

    check: {"status": "match"|"no-match"|"unknown-time"|"no-payload", "secret",
    "stamp", "minute", "offset_minutes", "made_for", "for_source", "window_minutes"};
    for v2 the status is "match"|"unknown-key"|"bad-mac", "secret" is the key's number,
    "stamp" the sent time, and a match adds "offset_seconds" when the capture has a date.
    """
    sources = []
    for source, events in report.by_source().items():
        knocks: list[dict[str, Any]] = []
        tumbler: list[dict[str, Any]] = []
        for e in events:
            base = {
                "host": e.dst,
                "port": e.dport,
                "source_port": e.sport,
                "time": _iso(e.time),
                "time_text": e.time_text,
            }
            if isinstance(e, Knock):
                knocks.append(
                    {
                        "kind": e.kind,
                        **base,
                        "answer": e.answer if e.kind == "tcp" else None,
                        "retransmissions": e.retransmissions,
                    }
                )
            else:
                tumbler.append(
                    {
                        "number": e.number,
                        **base,
                        "length": e.length,
                        "digest": e.digest,
                        "replay_of": e.replay_of,
                        "check": _check_json(e.check),
                        **(
                            {"version": 2, "key_id": e.v2.key_id, "sent": e.v2.sent}
                            if e.v2 is not None
                            else {}
                        ),
                        "signed": _signed_json(e.signed),
                    }
                )
        sources.append({"address": source, "knocks": knocks, "tumbler": tumbler})
    return {
        "version": JSON_VERSION,
        "input": {
            "format": report.stats.format,
            "lines": report.stats.lines,
            "packets": report.stats.packets,
            "skipped": report.stats.skipped,
        },
        "sources": sources,
        "connections": [
            {
                "source": c.src,
                "source_port": c.sport,
                "host": c.dst,
                "port": c.dport,
                "time": _iso(c.time),
                "time_text": c.time_text,
            }
            for c in report.connections
        ],
    }


def _signed_json(signed: Signed | None) -> dict[str, Any] | None:
    if signed is None:
        return None
    return {
        "key_id": signed.key_id.hex(),
        "fingerprint_prefix": fingerprint_prefix(signed.key_id),
        "time": signed.sent,
        "offset_seconds": signed.offset_seconds,
        "key": signed.key,
        "signature": signed.signature,
    }


def _check_json(check: Check | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {
        "status": check.status,
        "secret": check.secret,
        "stamp": check.stamp,
        "minute": _iso(check.minute),
        "offset_minutes": check.offset_minutes,
        "made_for": check.made_for,
        "for_source": check.for_source,
        "window_minutes": check.window,
        **({"offset_seconds": check.offset_seconds} if check.offset_seconds is not None else {}),
    }


# --------------------------------------------------------------------------- input


def _split_lines(head: bytes, stream: IO[bytes], stats: Stats) -> Iterator[bytes]:
    """The lines of `head` and then `stream`, each byte looked at once.

    A line longer than MAX_LINE is not kept: it is counted as a skipped line, and what
    follows it up to the next newline is dropped as it is read.
    """
    partial: list[bytes] = []
    kept = 0  # bytes in `partial`
    overlong = False
    chunk = head
    while chunk:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if overlong or kept + end - start > MAX_LINE:
                stats.lines += 1
                stats.skipped += 1
            else:
                yield b"".join([*partial, chunk[start:end]])
            partial, kept, overlong = [], 0, False
            start = end + 1
        if not overlong and start < len(chunk):
            partial.append(chunk[start:])
            kept += len(chunk) - start
            if kept > MAX_LINE:
                partial, kept, overlong = [], 0, True
        chunk = stream.read(READ_CHUNK)
    if overlong:
        stats.lines += 1
        stats.skipped += 1
    elif partial:
        yield b"".join(partial)


def read_packets(
    stream: BinaryIO, stats: Stats | None = None, day: date | None = None
) -> Iterator[Packet]:
    """Packets from text or a capture, told apart by the first four bytes."""
    stats = stats if stats is not None else Stats()
    head = stream.read(4)
    if head in PCAP_MAGICS:
        seekable = stream.seekable() if hasattr(stream, "seekable") else False
        body: BinaryIO = stream if seekable else io.BytesIO(head + stream.read())
        body.seek(0)
        return iter_pcap_packets(body, stats)
    return iter_text_packets(_split_lines(head, stream, stats), stats, day)
