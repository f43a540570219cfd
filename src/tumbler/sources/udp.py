"""The Tumbler source: UDP datagrams on the listen addresses, read in batches.

It reads and hands on; deciding what a datagram means is the daemon's pipeline.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
import time
from collections.abc import Callable

from tumbler.addresses import packet_address
from tumbler.protocols import sshsig, tumbler1
from tumbler.sources import mmsg

log = logging.getLogger("tumblerd")

# The longest knock of any kind, plus one byte, so an oversized datagram is seen as such.
RECV_SIZE = max(tumbler1.MAX_DATAGRAM, sshsig.MAX_DATAGRAM) + 1
RECV_BUFFER = 8 * 1024 * 1024
BATCH = 256  # datagrams read per wake-up before giving other callbacks a turn

Handler = Callable[[bytes, str, float], object]
"""Called with the datagram, its source address (normalised) and the time it was read."""


Datagram = tuple[bytes, str | None, float]
"""A datagram, its source address (normalised; None if no knock can come from it), its time."""


@functools.lru_cache(maxsize=65536)
def _canonical_ipv6(text: str) -> str | None:
    # None for `::ffff:a.b.c.d`: on this IPv6-only socket it is an IPv6 sender, never a.b.c.d.
    return packet_address(text)


@functools.lru_cache(maxsize=65536)
def _packed_ipv6(packed: bytes) -> str | None:
    # As `_canonical_ipv6`, from the 16 bytes recvmmsg leaves in the source's sockaddr_in6.
    return packet_address(packed)


def bind_sockets(
    addresses: tuple[str, ...], port: int, reuse_port: bool = False
) -> list[socket.socket]:
    """Bind a non-blocking UDP socket per listen address; `::` takes IPv6 only.

    A host without IPv6 skips the wildcard `::` with a warning rather than refusing to
    start; any other address that cannot be bound is an error. With `reuse_port`, several
    such sets share the port (SO_REUSEPORT) and the kernel spreads sources over them.
    """
    socks: list[socket.socket] = []
    try:
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            try:
                sock = socket.socket(family, socket.SOCK_DGRAM)
            except OSError as exc:
                if address == "::" and exc.errno == errno.EAFNOSUPPORT:
                    log.warning("IPv6 is not available here; listening on IPv4 only")
                    continue
                raise
            socks.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            _grow_receive_buffer(sock)
            try:
                sock.bind((address, port))
            except OSError as exc:
                shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
                raise OSError(exc.errno, f"udp {shown}: {exc.strerror}") from None
            sock.setblocking(False)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


def _grow_receive_buffer(sock: socket.socket) -> None:
    # A large buffer absorbs bursts; SO_RCVBUFFORCE passes rmem_max when we are root.
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RECV_BUFFER)
            return
        except OSError:
            continue


def read_batch(
    sock: socket.socket,
    handle: Handler,
    size: int = RECV_SIZE,
    dropped: Callable[[str], object] | None = None,
) -> None:
    """Read up to BATCH datagrams of at most `size` bytes; hand each on with source and time.

    A datagram from a source no knock can come from (IPv4-mapped) is not handed on;
    `dropped` is told "malformed" for it. The batch is read first and handed on after:
    system calls between the deciding of two datagrams cost it its warm caches (a fifth
    of a never-seen source's cost, measured). One recvmmsg reads the batch where the C
    library has it; otherwise a recvfrom per datagram.
    """
    for data, address, now in read_datagrams(sock, size):
        try:
            if address is None:
                if dropped is not None:
                    dropped("malformed")
                continue
            handle(data, address, now)
        except Exception:  # a bug must cost one datagram, never the daemon
            log.exception("internal error on a datagram; dropped")


def read_datagrams(sock: socket.socket, size: int = RECV_SIZE) -> list[Datagram]:
    """Up to BATCH datagrams queued on `sock`, read in one system call if the C library can."""
    reader = mmsg.reader(sock.family, size, BATCH)
    if reader is None:
        return read_datagrams_recvfrom(sock, size)
    try:
        return reader.read(sock.fileno(), _packed_ipv6)
    except mmsg.Unavailable:
        mmsg.disable()
        return read_datagrams_recvfrom(sock, size)
    except OSError as exc:  # e.g. a queued ICMP error; never fatal
        log.debug("recvmmsg: %s", exc)
        return []


def read_datagrams_recvfrom(sock: socket.socket, size: int = RECV_SIZE) -> list[Datagram]:
    """As `read_datagrams`, with one recvfrom per datagram (no recvmmsg here)."""
    # The kernel already prints an IPv4 source in canonical dotted form; only IPv6
    # text needs normalising (cached, since a flood repeats its sources).
    canonical = sock.family == socket.AF_INET
    recvfrom, clock = sock.recvfrom, time.time
    batch: list[Datagram] = []
    for _ in range(BATCH):
        try:
            data, source = recvfrom(size)
        except (BlockingIOError, InterruptedError):
            break
        except OSError as exc:  # e.g. a queued ICMP error; never fatal
            log.debug("recvfrom: %s", exc)
            break
        text = source[0]
        batch.append((data, text if canonical else _canonical_ipv6(text), clock()))
    return batch


class UdpSource:
    """Bound knock sockets as a source: the datagrams each wake-up reads go to the sink.

    `size` says how long a datagram may be at the moment it is read (the doors decide,
    and a reload may change them); `dropped` is told of what is not handed on.
    """

    name = "udp"

    def __init__(
        self,
        sockets: list[socket.socket],
        size: Callable[[], int] = lambda: RECV_SIZE,
        dropped: Callable[[str], object] | None = None,
    ) -> None:
        self.sockets = sockets
        self.size = size
        self.dropped = dropped
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop, sink: Handler) -> None:
        self._loop = loop
        for sock in self.sockets:
            loop.add_reader(sock.fileno(), self._readable, sock, sink)

    def _readable(self, sock: socket.socket, sink: Handler) -> None:
        read_batch(sock, sink, self.size(), self.dropped)

    def stop(self) -> None:
        """Stop reading and close the sockets."""
        for sock in self.sockets:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self.sockets = []
