"""Classic port-knock sequences: connection attempts to closed ports in a secret order.

The library behind `tumbler knock HOST PORT ...`, apart from `client.knock` (the Tumbler
knock), whose start-up path needs none of it.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from collections.abc import Callable, Sequence

from tumbler.addresses import normalize_address
from tumbler.client.knock import KnockError, KnockUsageError, SockAddr, resolve
from tumbler.ports import PortSpec, parse_port_spec
from tumbler.records import NamedTuple

# Between classic knocks: long enough that knocks stay in order across a real network,
# short enough that a 3-port sequence takes 0.2 s, far inside a 10 s sequence_timeout.
DEFAULT_DELAY_MS = 100
# How long a classic TCP knock waits to learn whether it was answered (only reported).
REPLY_WAIT = 0.05
# What a classic UDP knock carries: one byte, as knockd's `knock` client sends.
UDP_KNOCK_PAYLOAD = b"\x00"


def parse_knock_port(text: str, default_proto: str = "tcp") -> PortSpec:
    """One knock: `42`, `tcp/42`, `udp/500`, or knockd's `500:udp`."""
    spec = text.strip()
    if ":" in spec:
        number, _, proto = spec.partition(":")
        spec = f"{proto}/{number}"
    try:
        return parse_port_spec(spec, default_proto, allow_range=False)
    except ValueError as exc:
        raise KnockUsageError(f"bad knock port {text!r}: {exc}") from None


class SequenceKnock(NamedTuple):
    """One knock of a sequence and what, if anything, was seen in reply.

    `outcome` is `sent` (nothing waited for), `no answer` (what a knock on a dropping
    firewall looks like), `refused` (RST), `answered` (SYN-ACK: the port is open), or
    `unreachable: ...` (an ICMP error came back).
    """

    position: int  # from 0 (a tuple's own `index` is a method)
    spec: PortSpec
    target: str
    outcome: str


def _with_port(sockaddr: SockAddr, port: int) -> SockAddr:
    if len(sockaddr) == 4:
        return (sockaddr[0], port, sockaddr[2], sockaddr[3])
    return (sockaddr[0], port)


def _tcp_knock(family: int, sockaddr: SockAddr, wait: float) -> str:
    """One SYN: a non-blocking connect puts it on the wire before returning.

    The socket is closed right after; closing in SYN_SENT sends nothing more, so no
    retransmitted SYN follows later to muddle the sequence a daemon is matching.
    """
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        err = sock.connect_ex(sockaddr)
        if err == 0:
            return "answered"
        if err == errno.ECONNREFUSED:
            return "refused"
        if err not in (errno.EINPROGRESS, errno.EAGAIN):
            raise KnockError(f"cannot knock on tcp/{sockaddr[1]}: {os.strerror(err)}")
        if wait <= 0:
            return "sent"
        import selectors  # only sequence knocks wait for an answer

        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE)
            if not selector.select(wait):
                return "no answer"
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err == 0:
            return "answered"
        if err == errno.ECONNREFUSED:
            return "refused"
        return f"unreachable: {os.strerror(err)}"


def _udp_knock(family: int, sockaddr: SockAddr) -> str:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(UDP_KNOCK_PAYLOAD, sockaddr)
        except OSError as exc:
            raise KnockError(f"cannot knock on udp/{sockaddr[1]}: {exc.strerror}") from None
    return "sent"


def pick_target(host: str, *, family: int = 0) -> tuple[int, SockAddr]:
    """The one address a whole sequence goes to: the first with a route.

    Every knock of a sequence must reach the same address, or a round-robin name
    would scatter it across hosts.
    """
    failure: OSError | None = None
    for fam, sockaddr in resolve(host, 9, family=family, socktype=socket.SOCK_STREAM):
        with socket.socket(fam, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect(sockaddr)
            except OSError as exc:
                failure = exc
                continue
        return fam, sockaddr
    reason = failure.strerror if failure is not None else "no address"
    raise KnockError(f"cannot reach {host}: {reason}")


def send_sequence(
    host: str,
    ports: Sequence[PortSpec],
    *,
    delay: float = DEFAULT_DELAY_MS / 1000,
    family: int = 0,
    on_knock: Callable[[SequenceKnock], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[SequenceKnock]:
    """Knock on `ports` of `host` in order, `delay` seconds apart (start to start).

    TCP knocks are connection attempts that expect no answer: each waits at most
    REPLY_WAIT (never longer than the delay) to report what came back, then is closed.
    """
    if not ports:
        raise KnockUsageError("no ports to knock on")
    if delay < 0:
        raise KnockUsageError("the delay cannot be negative")
    fam, base = pick_target(host, family=family)
    target = normalize_address(base[0])
    done: list[SequenceKnock] = []
    for index, spec in enumerate(ports):
        started = time.monotonic()
        last = index == len(ports) - 1
        sockaddr = _with_port(base, spec.first)
        if spec.proto == "udp":
            outcome = _udp_knock(fam, sockaddr)
        else:
            outcome = _tcp_knock(fam, sockaddr, REPLY_WAIT if last else min(REPLY_WAIT, delay))
        knock = SequenceKnock(index, spec, target, outcome)
        done.append(knock)
        if on_knock is not None:
            on_knock(knock)
        if not last:
            remaining = delay - (time.monotonic() - started)
            if remaining > 0:
                sleep(remaining)
    return done
