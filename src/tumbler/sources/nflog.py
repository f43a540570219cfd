"""Knocks seen through an NFLOG netlink group, read with the standard library alone.

tumblerd adds a table of its own, `inet tumbler_seq` (`tumbler.actions.firewall.seqlog`), whose
before the filter (priority -150, after conntrack), so it also sees the attempts the filter
will drop. It logs each new inbound attempt (TCP SYN without ACK, new UDP flow) to an NFLOG
group with the first bytes of the packet; the reader binds that group over
`NETLINK_NETFILTER` and parses the IP and TCP/UDP headers itself.

A flood must not drown the daemon, yet hiding attempts from it would let a fast scan
complete a sequence. So the rules limit logging per source, and the packet that crosses the
limit is logged with the prefix `tumbler-over`: the reader reports it with port 0, which
resets that source's progress; further attempts from the source are not logged until it has
been quiet for `hold` seconds, so its knocks during the flood cannot count either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable

from tumbler.errors import TumblerError
from tumbler.events import NFLOG_COPY_RANGE as DEFAULT_COPY_RANGE
from tumbler.events import NFLOG_GROUP as DEFAULT_GROUP
from tumbler.events import NFLOG_PREFIX_OVER as PREFIX_OVER
from tumbler.events import PORT_UNSEEN, ConnectionAttempt, canonical_address
from tumbler.sources.base import AttemptSink, hand_on

log = logging.getLogger("tumblerd")

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFNETLINK_V0 = 0

NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLA_TYPE_MASK = 0x3FFF  # strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

NFULA_PACKET_HDR = 1
NFULA_PAYLOAD = 9
NFULA_PREFIX = 10

NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_NLBUFSIZ = 3
NFULA_CFG_TIMEOUT = 4
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_CFG_CMD_UNBIND = 2
NFULNL_COPY_PACKET = 2

IPPROTO_TCP = 6
IPPROTO_UDP = 17
TCP_SYN = 0x02
TCP_ACK = 0x10


_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_NFGENMSG_NET = struct.Struct("!BBH")  # family, version, res_id (the group, big-endian)


class NflogError(TumblerError):
    """The NFLOG group could not be bound or read."""


def _align(length: int) -> int:
    return (length + 3) & ~3


# ---------------------------------------------------------------- building config messages


def _attr(kind: int, value: bytes) -> bytes:
    header = _NLATTR.pack(_NLATTR.size + len(value), kind)
    return (header + value).ljust(_align(_NLATTR.size + len(value)), b"\0")


def _config_message(group: int, attrs: bytes, seq: int, family: int = socket.AF_UNSPEC) -> bytes:
    body = _NFGENMSG_NET.pack(family, NFNETLINK_V0, group) + attrs
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0)
    return header + body


def build_config_messages(group: int, copy_range: int = DEFAULT_COPY_RANGE) -> list[bytes]:
    """The requests that bind `group` and ask for `copy_range` bytes of each packet, at once.

    Bind first (the kernel refuses other settings for an unbound group), then copy mode,
    then a queue threshold of one packet so that no knock waits for the 1 s flush timer.
    """
    if not 0 <= group <= 65535:
        raise ValueError(f"NFLOG group {group} out of range 0-65535")
    mode = struct.pack(">IBB", copy_range, NFULNL_COPY_PACKET, 0)
    return [
        _config_message(group, _attr(NFULA_CFG_CMD, bytes([NFULNL_CFG_CMD_BIND])), 1),
        _config_message(
            group,
            _attr(NFULA_CFG_MODE, mode)
            + _attr(NFULA_CFG_QTHRESH, struct.pack(">I", 1))
            + _attr(NFULA_CFG_TIMEOUT, struct.pack(">I", 1)),
            2,
        ),
    ]


# ---------------------------------------------------------------------- parsing packets


def _l4_offset_v6(payload: bytes) -> tuple[int, int] | None:
    """Walk IPv6 extension headers to the transport header: (next header, offset)."""
    next_header, offset = payload[6], 40
    for _ in range(8):
        if next_header in (0, 43, 60):  # hop-by-hop, routing, destination options
            if len(payload) < offset + 2:
                return None
            next_header, offset = payload[offset], offset + (payload[offset + 1] + 1) * 8
        elif next_header == 44:  # fragment: only the first fragment has the ports
            if len(payload) < offset + 8:
                return None
            (fragment,) = struct.unpack_from(">H", payload, offset + 2)
            if fragment >> 3:
                return None
            next_header, offset = payload[offset], offset + 8
        elif next_header == 51:  # authentication header
            if len(payload) < offset + 2:
                return None
            next_header, offset = payload[offset], offset + (payload[offset + 1] + 2) * 4
        else:
            return next_header, offset
    return None


def parse_ip_packet(payload: bytes, when: float) -> ConnectionAttempt | None:
    """The connection attempt an IPv4/IPv6 packet is, or None (not TCP SYN/UDP, truncated).

    Bounds-checked throughout: a short or odd packet is skipped, never an exception.
    """
    if not payload:
        return None
    version = payload[0] >> 4
    if version == 4:
        header = (payload[0] & 0x0F) * 4
        if len(payload) < 20 or header < 20 or len(payload) < header:
            return None
        (fragment,) = struct.unpack_from(">H", payload, 6)
        if fragment & 0x1FFF:
            return None
        proto_number, offset = payload[9], header
        source, dest = canonical_address(payload[12:16]), canonical_address(payload[16:20])
    elif version == 6:
        if len(payload) < 40:
            return None
        found = _l4_offset_v6(payload)
        if found is None:
            return None
        proto_number, offset = found
        source, dest = canonical_address(payload[8:24]), canonical_address(payload[24:40])
    else:
        return None
    if source is None or dest is None:
        return None
    if proto_number == IPPROTO_TCP:
        if len(payload) < offset + 14:
            return None
        flags = payload[offset + 13]
        if not flags & TCP_SYN or flags & TCP_ACK:
            return None
        proto = "tcp"
    elif proto_number == IPPROTO_UDP:
        if len(payload) < offset + 4:
            return None
        proto = "udp"
    else:
        return None
    src_port, port = struct.unpack_from(">HH", payload, offset)
    if port == 0:
        return None
    return ConnectionAttempt(source, dest, proto, port, when, src_port)


def _attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    attrs: dict[int, bytes] = {}
    offset = start
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > end:
            break
        attrs.setdefault(kind & NLA_TYPE_MASK, data[offset + _NLATTR.size : offset + length])
        offset += _align(length)
    return attrs


def _messages(data: bytes) -> Iterable[tuple[int, int, int]]:
    """(type, body start, body end) of each netlink message in one datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield kind, offset + _NLMSGHDR.size, offset + length
        offset += _align(length)


def parse_nflog_message(data: bytes, when: float = 0.0) -> list[ConnectionAttempt]:
    """The attempts in one datagram from the NFLOG socket (it may batch several packets).

    A packet logged with the `tumbler-over` prefix becomes an attempt on port 0: the source
    went over its rate limit, and what it does next is not seen, so its progress resets.
    """
    attempts: list[ConnectionAttempt] = []
    packet_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
    for kind, start, end in _messages(data):
        if kind != packet_type or end - start < _NFGENMSG_NET.size:
            continue
        attrs = _attributes(data, start + _NFGENMSG_NET.size, end)
        payload = attrs.get(NFULA_PAYLOAD)
        if payload is None:
            continue
        attempt = parse_ip_packet(payload, when)
        if attempt is None:
            continue
        prefix = attrs.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode("ascii", "replace")
        if prefix.strip() == PREFIX_OVER:
            attempt = dataclasses.replace(attempt, port=PORT_UNSEEN)
        attempts.append(attempt)
    return attempts


# ------------------------------------------------------------------------------- reader


class NflogReader:
    """A bound NFLOG group; `loop.add_reader(reader.fileno(), ...)` then `reader.read()`.

    The socket is non-blocking. Create it in the network namespace whose packets it
    should see: a netlink socket stays in the namespace it was made in.
    """

    def __init__(
        self,
        group: int = DEFAULT_GROUP,
        *,
        copy_range: int = DEFAULT_COPY_RANGE,
        clock: Callable[[], float] = time.time,
        rcvbuf: int = 1 << 20,
        max_batch: int = 256,
    ) -> None:
        self.group = group
        self.clock = clock
        self.max_batch = max_batch
        self.lost = 0
        """How many times the kernel dropped log messages because the socket was full."""
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        except OSError as exc:
            raise NflogError(f"cannot open a netfilter netlink socket: {exc}") from exc
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.bind((0, 0))
            self.sock.settimeout(2.0)
            for message in build_config_messages(group, copy_range):
                self._request(message)
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise

    def _request(self, message: bytes) -> None:
        self.sock.send(message)
        (seq,) = struct.unpack_from("=I", message, 8)
        while True:
            try:
                reply = self.sock.recv(65536)
            except TimeoutError as exc:
                raise NflogError(f"no answer from nfnetlink_log for group {self.group}") from exc
            for kind, start, end in _messages(reply):
                if kind != NLMSG_ERROR or end - start < 20:
                    continue
                code = -struct.unpack_from("=i", reply, start)[0]
                (echo_seq,) = struct.unpack_from("=I", reply, start + 4 + 8)
                if echo_seq != seq:
                    continue
                if code == 0:
                    return
                reason = os.strerror(code)
                if code in (errno.EPERM, errno.EBUSY):
                    reason += " (another socket, e.g. another tumblerd or ulogd, has bound it)"
                raise NflogError(f"nfnetlink_log refused group {self.group}: {reason}")

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[ConnectionAttempt]:
        """Every attempt queued now, without blocking (at most `max_batch` datagrams)."""
        attempts: list[ConnectionAttempt] = []
        for _ in range(self.max_batch):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:  # the kernel dropped messages; go on
                    self.lost += 1
                    continue
                raise
            attempts.extend(parse_nflog_message(data, self.clock()))
        return attempts

    def close(self) -> None:
        """Close the socket; the kernel unbinds the group with it."""
        self.sock.close()

    def __enter__(self) -> NflogReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class NflogSource:
    """The NFLOG group as a sequence source: each attempt read is handed to the sink.

    The logging rules that fill the group are a firewall action (tumbler.actions.firewall
    .seqlog); the daemon puts them in place before it starts this source.
    """

    name = "nflog"

    def __init__(self, group: int = DEFAULT_GROUP, clock: Callable[[], float] = time.time) -> None:
        self.group = group
        self.clock = clock
        self.reader: NflogReader | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop, sink: AttemptSink) -> None:
        self.reader = NflogReader(self.group, clock=self.clock)
        self._loop = loop
        loop.add_reader(self.reader.fileno(), self._readable, self.reader, sink)

    @staticmethod
    def _readable(reader: NflogReader, sink: AttemptSink) -> None:
        try:
            events = reader.read()
        except OSError as exc:
            log.error("nflog read failed: %s", exc)
            return
        for event in events:
            hand_on(sink, event)

    def stop(self) -> None:
        if self.reader is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self.reader.fileno())
        self.reader.close()
        self.reader = None
