"""What every command-line front-end shares: one parser class, one error-to-exit table.

Errors are one line on stderr, `tumbler: error: ...`, with exit status 2 for bad input and
1 for failures at run time; a secret is never printed.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from tumbler.client import knock
from tumbler.errors import ConfigError, TumblerError
from tumbler.secretfile import SecretFileError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[list[str]], int]

# A secret typed into a URL where an option was expected must not come back in an error.
_URL_SECRET = re.compile(r"(tumbler2?://)[^/?#\s]*@", re.IGNORECASE)


def redact(text: str) -> str:
    return _URL_SECRET.sub(r"\1***@", text)


def error(message: str) -> None:
    print(f"tumbler: error: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"tumbler: warning: {message}", file=sys.stderr)


def terminal_width() -> int:
    """What argparse would use: $COLUMNS, else the terminal's width, else 80; less 2."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return (columns or 80) - 2


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) that never echoes a URL secret."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # The width given, so argparse does not import shutil (and its compression
        # modules) to ask for it, at every start of the client.
        formatter: argparse.HelpFormatter = self.formatter_class(
            prog=self.prog, width=terminal_width()
        )  # type: ignore[call-arg]
        return formatter

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


def exit_status(exc: BaseException) -> int:
    """The one table from an error to an exit status, for every command of both programs.

    2 for input that cannot work (an option, a URL, a config, a secret file's content),
    1 for a failure at run time (a file that cannot be read, a network or firewall error).
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, SecretFileError):
        return EXIT_FAILURE if exc.unreadable else EXIT_USAGE
    if isinstance(exc, knock.KnockUsageError | ConfigError):
        return EXIT_USAGE
    return EXIT_FAILURE


def guard(body: Callable[[], int]) -> int:
    """Run a command, mapping the library's errors to one line and an exit status."""
    try:
        return body()
    except TumblerError as exc:
        error(str(exc))
        return exit_status(exc)
    except OSError as exc:
        error(exc.strerror or str(exc))
        return exit_status(exc)
    except KeyboardInterrupt as exc:
        print(file=sys.stderr)
        return exit_status(exc)


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
