"""The knocks this user sent lately, remembered across runs of the client.

The v1 knock is a function of the minute, the address and the secret, so a second
`tumbler --open` within the same UTC minute would send the very digest the daemon has
just accepted, and the daemon rightly refuses it as a replay: the user's ssh then times
out with no clue why. Every knock the client sends (`--open`, `open NAME`, `ssh-proxy`)
is therefore recorded here, and the next one takes a neighbouring minute the daemon's
window still accepts, or the client says it must wait.

Only digests are kept, which an eavesdropper sees on the wire anyway; never a secret.
The file lives in the user's state directory, mode 0600, and is locked while it is read
and rewritten, so clients started together cannot pick the same minute.
"""

from __future__ import annotations

import fcntl
import os

TYPE_CHECKING = False  # not typing's: importing typing costs the client start-up time

if TYPE_CHECKING:  # os.path at run time: pathlib costs the client start-up time
    from pathlib import Path

MAX_ENTRIES = 4096  # a bound on the file whatever happens; entries live two minutes


def default_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "tumbler", "sent-knocks")


class SentKnocks:
    """Digests sent, each until the moment no daemon window could still accept it."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = os.fspath(path) if path is not None else default_path()

    def claim_first(self, candidates: list[tuple[str, float]], now: float) -> int | None:
        """Record the first candidate (digest, expires) not sent before; its index, or None.

        Expired entries are forgotten on the way, so the file stays small.
        """
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
            entries, size = _read(fd)
            for digest in [d for d, e in entries.items() if e <= now]:
                del entries[digest]
            found = None
            for index, (digest, expires) in enumerate(candidates):
                if digest not in entries:
                    entries[digest] = expires
                    found = index
                    break
            _write(fd, entries, size)
        finally:
            os.close(fd)
        return found


def _read(fd: int) -> tuple[dict[str, float], int]:
    """`DIGEST EXPIRES` lines, and the file's size; a line that is not one is skipped
    (plain bytes and os calls: contextlib and a text codec cost the client start-up time)."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    data = b"".join(chunks)
    entries: dict[str, float] = {}
    for line in data.splitlines():
        digest, _, expires = line.partition(b" ")
        try:
            entries[digest.decode("ascii")] = float(expires)
        except ValueError:  # UnicodeDecodeError is one too
            continue
    return entries, len(data)


def _write(fd: int, entries: dict[str, float], old_size: int) -> None:
    """Rewrite the file in place; cut it only when it shrinks (emptying a file first frees
    its blocks, which costs the client more than the rest of the write)."""
    kept = sorted(entries.items(), key=lambda item: item[1])[-MAX_ENTRIES:]
    data = "".join(f"{d} {e:.0f}\n" for d, e in kept).encode("ascii")
    os.lseek(fd, 0, os.SEEK_SET)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    if len(data) < old_size:
        os.ftruncate(fd, len(data))
