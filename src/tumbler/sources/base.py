"""The one shape of a source: started on the daemon's loop with a sink, stopped at the end.

A source reads the world (a socket, a netlink group, a log file) and hands each thing it
reads to its sink, which decides; a sink's exception costs that one event, never the source.
The daemon starts a list of sources the same way, whatever they read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol, TypeVar

from tumbler.events import ConnectionAttempt

log = logging.getLogger("tumblerd")

Sink_contra = TypeVar("Sink_contra", contravariant=True)

AttemptSink = Callable[[ConnectionAttempt], object]
"""Where a sequence source hands each connection attempt it sees."""


class Source(Protocol[Sink_contra]):
    """A running reader: `start` hands what it reads to `sink`, `stop` lets go of it all."""

    name: str

    def start(self, loop: asyncio.AbstractEventLoop, sink: Sink_contra) -> None:
        """Begin reading on `loop`; the resources are the source's until `stop`."""

    def stop(self) -> None:
        """Stop reading and release what `start` took; safe to call twice, or unstarted."""


def hand_on(sink: AttemptSink, event: ConnectionAttempt) -> None:
    """Give `event` to `sink`; a bug in deciding costs this event, never the source."""
    try:
        sink(event)
    except Exception:
        log.exception("internal error on a connection attempt; dropped")
