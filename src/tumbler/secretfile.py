"""Reading a secret file: one rule for the client, the daemon and the auditor.

The secret is the first line, up to the first LF, without one CR before it (a file saved
on Windows), decoded as UTF-8. A knock made with `--secret-file F` must match a door with
`secret_file = F`, so every reader uses this function. Errors name the file and never show
its content: a decode error would otherwise quote a byte of the secret.
"""

from __future__ import annotations

import os

from tumbler.errors import SecretFileError
from tumbler.filemodes import readable_by_others
from tumbler.records import NamedTuple

MAX_SECRET_BYTES = 4096
EMPTY = "first line is empty"

__all__ = ["EMPTY", "MAX_SECRET_BYTES", "SecretFile", "SecretFileError", "read_secret_file"]


class SecretFile(NamedTuple):
    """A secret read from a file; `exposed` when group or others may read that file."""

    secret: str
    exposed: bool

    def __repr__(self) -> str:
        return f"SecretFile(exposed={self.exposed!r})"


def read_secret_file(path: str | os.PathLike[str]) -> SecretFile:
    """The secret in `path`: its first line (LF, CRLF), UTF-8, at most MAX_SECRET_BYTES.

    Raises SecretFileError, with `unreadable` set when the file could not be opened or
    read, and clear when its first line is too long, not UTF-8 or empty.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as handle:
            exposed = readable_by_others(os.fstat(handle.fileno()).st_mode)
            line = handle.readline(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise SecretFileError(name, exc.strerror or type(exc).__name__, unreadable=True) from None
    except ValueError:  # a NUL in the path
        raise SecretFileError(name, "not a usable path", unreadable=True) from None
    if len(line) > MAX_SECRET_BYTES and not line.endswith(b"\n"):
        raise SecretFileError(
            name, f"first line is over {MAX_SECRET_BYTES} bytes", unreadable=False
        )
    line = line.removesuffix(b"\n").removesuffix(b"\r")
    try:
        secret = line.decode("utf-8")
    except UnicodeDecodeError:
        raise SecretFileError(name, "first line is not UTF-8", unreadable=False) from None
    if not secret:
        raise SecretFileError(name, EMPTY, unreadable=False)
    return SecretFile(secret, exposed)
