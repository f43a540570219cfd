"""The library's errors: one root, so callers can catch everything tumbler raises."""

from __future__ import annotations


class TumblerError(Exception):
    """Root of every error the library raises on purpose."""


class MalformedDatagram(TumblerError):
    """A datagram that does not have the exact Tumbler shape; it is dropped unread."""


class ConfigError(TumblerError):
    """A config problem, located by file and line so an administrator can fix it."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return f"{where}{self.message}"


class FirewallError(TumblerError):
    """A firewall change that failed; the caller must leave nothing half-applied."""


class ReplayStoreError(TumblerError):
    """The replay store could not be reached; the daemon fails closed on it."""


class SecretFileError(TumblerError):
    """A secret file that could not be read, or whose first line is no usable secret.

    Here rather than in `tumbler.secretfile` so that the exit table knows it without
    loading the reader, which a knock without --secret-file never needs.
    """

    def __init__(self, path: str, reason: str, *, unreadable: bool) -> None:
        self.path = path
        self.reason = reason
        self.unreadable = unreadable
        shown = path if path.isprintable() else repr(path)
        if unreadable:
            super().__init__(f"cannot read secret file {shown}: {reason}")
        else:
            super().__init__(f"secret file {shown}: {reason}")
