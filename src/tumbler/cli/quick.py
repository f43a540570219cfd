"""The plain knock, `tumbler [--open] URL`, read without argparse: the client's fast start.

`tumbler --open URL [--secret-file FILE] [--from ADDR] [-4|-6] [--dry-run] [-v]` is what a
user (or a script, before every ssh) runs most, and argparse alone costs a good part of
the client's start-up. `plain_args` recognises exactly these forms, each option at most
once; anything else (a command, --help, `--from=ADDR`, an abbreviation, a value that
starts with `-`, fwknop:// and tumbler+ssh:// URLs) returns None and goes to the argparse
front-end (`cli.openurl`), which knocks through `knock_plain` too: both read the same way,
fail with the same errors and exit with the same status (`cli.exits`).
"""

from __future__ import annotations

import socket
import sys

from tumbler.cli.exits import EXIT_OK, warn
from tumbler.client import knock
from tumbler.client.sentknocks import SentKnocks

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime


class PlainArgs:
    """The options of a plain knock, as the argparse front-end names them."""

    __slots__ = ("dry_run", "family", "secret_file", "source", "url", "verbose")

    def __init__(self) -> None:
        self.url = ""
        self.secret_file: str | None = None
        self.source: str | None = None
        self.family = 0
        self.dry_run = False
        self.verbose = False


_VALUED = {"--open": "url", "--secret-file": "secret_file", "--from": "source"}
_FAMILIES = {"-4": socket.AF_INET, "-6": socket.AF_INET6}
_FLAGS = {"--dry-run": "dry_run", "-v": "verbose", "--verbose": "verbose"}
_OTHER_KINDS = ("fwknop://", knock.SSH_SCHEME + "://")


def plain_args(argv: Sequence[str]) -> PlainArgs | None:
    """The plain knock's options, or None when argv is anything else (argparse's to read)."""
    found = PlainArgs()
    seen: set[str] = set()
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg in _VALUED or arg in _FLAGS or arg in _FAMILIES:
            key = _VALUED.get(arg) or _FLAGS.get(arg) or "family"
            if key in seen:
                return None
            seen.add(key)
            if arg in _FAMILIES:
                found.family = _FAMILIES[arg]
            elif arg in _FLAGS:
                setattr(found, key, True)
            else:
                if index == len(argv) or argv[index].startswith("-"):
                    return None
                setattr(found, key, argv[index])
                index += 1
        elif arg.startswith("-") or "url" in seen:
            return None
        else:
            seen.add("url")
            found.url = arg
    lowered = found.url.strip().lower()
    if not lowered or lowered.startswith(_OTHER_KINDS):
        return None
    return found


def knock_plain(
    text: str,
    *,
    secret_file: str | None = None,
    source: str | None = None,
    family: int = 0,
    when: datetime | None = None,
    dry_run: bool = False,
    verbose: bool = False,
) -> int:
    """Send (or with `dry_run` show) one tumbler:// or tumbler2:// knock; raises the
    library's errors, for `cli.exits.guard` to report."""
    url = knock.parse_url(text)
    address = knock.normalize_source(source) if source is not None else None
    knock.resolve(url.host, url.port, family=family)  # fail before asking
    secret = knock.resolve_secret(url, secret_file=secret_file, warn=warn)
    result = knock.knock_url(
        url,
        secret.value,
        source=address,
        when=when,
        family=family,
        dry_run=dry_run,
        sent=SentKnocks(),
    )
    if dry_run:
        print(describe(result, secret.origin))
        print("(dry run: nothing sent)")
    elif verbose:
        print(describe(result, secret.origin), file=sys.stderr)
    return EXIT_OK


def describe(result: knock.KnockResult, secret_origin: str) -> str:
    """A knock explained line by line, the secret's origin shown but never its value."""
    named = "" if result.host == result.target else f" ({result.host})"
    chosen = "given with --from" if result.address_given else "picked by the kernel"
    moment = result.when
    if result.version == 2:
        stamp = f"time      {result.stamp} ({moment:%Y-%m-%d %H:%M:%S} UTC), protocol 2"
        origin = f"key       from {secret_origin}"
    else:
        stamp = f"stamp     {result.stamp} ({moment:%Y-%m-%d %H:%M} UTC)"
        origin = f"secret    from {secret_origin}"
    return "\n".join(
        [
            f"target    {result.target} udp/{result.port}{named}",
            f"address   {result.address} ({chosen})",
            stamp,
            origin,
            f"datagram  {result.shown}",
        ]
    )
