"""Where the daemon sees connection attempts: NFLOG netlink groups and firewall log files.

Each source turns what it reads into `ConnectionAttempt` events for the sequence matcher;
none of them decides anything.
"""

from __future__ import annotations

from tumbler.sources.events import PORT_UNSEEN, ConnectionAttempt, canonical_address

__all__ = ["PORT_UNSEEN", "ConnectionAttempt", "canonical_address"]
