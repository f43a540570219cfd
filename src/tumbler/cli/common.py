"""What every command-line front-end shares: one parser class, one error-to-exit table.

Errors are one line on stderr, `tumbler: error: ...`, with exit status 2 for bad input and
1 for failures at run time; a secret is never printed.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from tumbler.client import knock
from tumbler.errors import ConfigError, TumblerError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[list[str]], int]

# A secret typed into a URL where an option was expected must not come back in an error.
_URL_SECRET = re.compile(r"(tumbler://)[^/?#\s]*@", re.IGNORECASE)


def redact(text: str) -> str:
    return _URL_SECRET.sub(r"\1***@", text)


def error(message: str) -> None:
    print(f"tumbler: error: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"tumbler: warning: {message}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) that never echoes a URL secret."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes the user's arguments back; the library's messages never do.
        error(f"{redact(message)} (see {self.prog} --help)")
        raise SystemExit(EXIT_USAGE)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace | int:
    """Parse, turning --help/--version/usage exits into a status instead of SystemExit."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE


def guard(body: Callable[[], int]) -> int:
    """Run a command, mapping the library's errors to one line and an exit status."""
    try:
        return body()
    except (knock.KnockUsageError, ConfigError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except TumblerError as exc:
        error(str(exc))
        return EXIT_FAILURE
    except OSError as exc:
        error(exc.strerror or str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED


def add_family(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-4",
        dest="family",
        action="store_const",
        const=socket.AF_INET,
        default=0,
        help="use IPv4 only",
    )
    group.add_argument(
        "-6", dest="family", action="store_const", const=socket.AF_INET6, help="use IPv6 only"
    )
