"""The plain knock, `tumbler [--open] URL`, read without argparse: the client's fast start.

`tumbler --open URL [--secret-file FILE] [--from ADDR] [-4|-6] [--dry-run] [-v]` is what a
user (or a script, before every ssh) runs most, and argparse alone costs a good part of
the client's start-up. `plain_args` recognises exactly these forms, each option at most
once (`read_argv`, which `tumbler ssh-proxy` uses too); anything else (a command,
--help, `--from=ADDR`, an abbreviation, a value that starts with `-`, fwknop:// and
tumbler+ssh:// URLs) returns None and goes to the argparse front-end (`cli.openurl`),
which knocks through `knock_plain` too: both read the same way, fail with the same errors
and exit with the same status (`cli.exits`).
"""

from __future__ import annotations

import socket
import sys

from tumbler.cli.exits import EXIT_OK, warn
from tumbler.client import knock
from tumbler.client.sentknocks import SentKnocks

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime


class Argv:
    """What `read_argv` found: option values, flags set, the address family, positionals.

    The records of the argv readers are plain classes: a named tuple's class costs
    start-up time, and each of these is made once.
    """

    __slots__ = ("family", "flags", "positionals", "values")

    def __init__(
        self, values: dict[str, str], flags: frozenset[str], family: int, positionals: list[str]
    ) -> None:
        self.values = values
        self.flags = flags
        self.family = family
        self.positionals = positionals


_FAMILIES = {"-4": socket.AF_INET, "-6": socket.AF_INET6}


def read_argv(
    argv: Sequence[str], valued: Collection[str], flags: Collection[str], positionals: int
) -> Argv | None:
    """Read `--option VALUE`, flags, -4/-6 and exactly `positionals` plain arguments.

    None for anything argparse might read otherwise: an unknown option, an option given
    twice, `--option=VALUE`, a value or a positional that starts with `-`, too few or
    too many positionals.
    """
    values: dict[str, str] = {}
    seen: set[str] = set()
    family = 0
    plain: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg in _FAMILIES:
            if family:
                return None
            family = _FAMILIES[arg]
        elif arg in flags:
            if arg in seen:
                return None
            seen.add(arg)
        elif arg in valued:
            if arg in values or index == len(argv) or argv[index].startswith("-"):
                return None
            values[arg] = argv[index]
            index += 1
        elif arg.startswith("-") or len(plain) == positionals:
            return None
        else:
            plain.append(arg)
    if len(plain) != positionals:
        return None
    return Argv(values, frozenset(seen), family, plain)


_VALUED = ("--open", "--secret-file", "--from")
_FLAGS = ("--dry-run", "-v", "--verbose")
_OTHER_KINDS = ("fwknop://", knock.SSH_SCHEME + "://")


class PlainArgs:
    """The options of a plain knock, as the argparse front-end names them."""

    __slots__ = ("dry_run", "family", "secret_file", "source", "url", "verbose")

    def __init__(self, url: str, read: Argv) -> None:
        self.url = url
        self.secret_file = read.values.get("--secret-file")
        self.source = read.values.get("--from")
        self.family = read.family
        self.dry_run = "--dry-run" in read.flags
        self.verbose = bool({"-v", "--verbose"} & read.flags)


def plain_args(argv: Sequence[str]) -> PlainArgs | None:
    """The plain knock's options, or None when argv is anything else (argparse's to read)."""
    read = read_argv(argv, _VALUED, _FLAGS, 1 if "--open" not in argv else 0)
    if read is None:
        return None
    url = read.values.get("--open") or (read.positionals[0] if read.positionals else "")
    lowered = url.strip().lower()
    if not lowered or lowered.startswith(_OTHER_KINDS):
        return None
    return PlainArgs(url, read)


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
    options = knock.KnockOptions(address, when, family, SentKnocks())
    result = knock.knock_url(url, secret.value, options, dry_run=dry_run)
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
