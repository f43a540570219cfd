"""What every command-line front-end shares: one parser class, one error-to-exit table.

Errors are one line on stderr, `tumbler: error: ...`, with exit status 2 for bad input and
1 for failures at run time; a secret is never printed. The table itself lives in
`cli.exits`, which the plain knock uses without argparse; it is re-exported here.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from collections.abc import Sequence
from typing import NoReturn

from tumbler.cli.exits import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Handler,
    error,
    exit_status,
    guard,
    warn,
)

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Handler",
    "Parser",
    "add_family",
    "error",
    "exit_status",
    "guard",
    "parse",
    "redact",
    "terminal_width",
    "warn",
]

# A secret typed into a URL where an option was expected must not come back in an error.
_URL_SECRET = re.compile(r"(tumbler2?://)[^/?#\s]*@", re.IGNORECASE)


def redact(text: str) -> str:
    return _URL_SECRET.sub(r"\1***@", text)


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
