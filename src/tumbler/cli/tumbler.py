"""The `tumbler` command: a thin argparse front-end over `tumbler.client.knock`.

`tumbler --open URL` is the article's client. Subcommands (`tumbler knock`,
`tumbler sniff`, `tumbler open NAME` and `tumbler ssh-proxy`, the last two in
`cli.proxy`) are dispatched on the first argument through COMMANDS, so the legacy
form keeps working unchanged.
Errors are one line on stderr, `tumbler: error: ...`, with exit status 2 for bad
input and 1 for failures at run time; a secret is never printed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tumbler import __version__
from tumbler.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Handler,
    Parser,
    add_family,
    error,
    guard,
    parse,
    warn,
)
from tumbler.client import knock
from tumbler.client.sentknocks import SentKnocks


def _time(text: str) -> datetime:
    """An ISO 8601 moment for the hidden --at; a naive one is taken as UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a delay from 0 to 60000 ms")
    return value / 1000


# --- tumbler --open URL ------------------------------------------------------------------

OPEN_USAGE = """\
tumbler [--open] URL [--secret-file FILE] [--from ADDR] [-4|-6] [--dry-run] [-v]
       tumbler COMMAND [ARGS ...]"""

OPEN_DESCRIPTION = """\
Knock on a tumblerd door: send one UDP datagram proving that you know the door's
secret, for this minute and for your address. The daemon runs the door's command
(say, opening SSH for your address) and never sends anything back.

URL is tumbler://[SECRET@]HOST[:PORT]/ (PORT defaults to 8675; an IPv6 HOST goes in
brackets). The address put into the knock is the one your kernel picks to reach
HOST; behind NAT, give the address the server sees with --from.

A tumbler2://[KEY@]HOST[:PORT]/[?realm=REALM] URL sends a version 2 knock
(docs/PROTOCOL.md): KEY is the 43 characters `tumbler keygen` prints, valid to the
second and never guessable offline; REALM is the server's, if it has one."""


def _open_epilog() -> str:
    commands = "\n".join(f"  {name:<9}  {cmd.summary}" for name, cmd in COMMANDS.items())
    return f"""\
commands (tumbler COMMAND --help for each):
{commands}

the secret, first found wins:
  1. in the URL, tumbler://SECRET@HOST/ (write @ : / % as %40 %3A %2F %25);
     other users can read it in the process list, so for anything shared prefer
  2. --secret-file FILE, its first line (keep the file chmod 600)
  3. the environment variable {knock.SECRET_ENV}
  4. a prompt on the terminal, without echo
  for tumbler2://, 1 to 3 hold the key; the prompt asks for the passphrase the key
  was made from (tumbler keygen --passphrase)

examples:
  tumbler --open tumbler://host.example.org/          asks for the secret
  tumbler --open tumbler://open-pAsSwOrD@192.0.2.7:8675/
  tumbler --open tumbler://[fd00::1]/ --secret-file ~/.config/tumbler/ssh
  tumbler --open tumbler://host/ --from 203.0.113.9   behind NAT
  tumbler --open tumbler://host/ --dry-run            show the knock, send nothing
  tumbler --open tumbler2://host/ --secret-file ~/.config/tumbler/host.key
  tumbler keygen --door ssh --host host.example.org   a v2 key, for both sides
  tumbler knock host.example.org 42 196 udp/69        a classic knock sequence

exit status: 0 knock sent, 1 failure (name, network, file), 2 bad usage (URL, secret)."""


def _open_parser() -> Parser:
    parser = Parser(
        prog="tumbler",
        usage=OPEN_USAGE,
        description=OPEN_DESCRIPTION,
        epilog=_open_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", nargs="?", metavar="URL", help="the door, as --open gives it")
    parser.add_argument("--open", dest="open_url", metavar="URL", help="the door to knock on")
    parser.add_argument(
        "--secret-file", metavar="FILE", help="read the secret from the first line of FILE"
    )
    parser.add_argument(
        "--from",
        dest="source",
        metavar="ADDR",
        help="put ADDR into the knock instead of the local address (client behind NAT)",
    )
    add_family(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the datagram, address and minute stamp instead of sending",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="say what was sent (on stderr)"
    )
    # Hidden: make the knock for another moment (tests, clock-skew checks).
    parser.add_argument("--at", type=_time, help=argparse.SUPPRESS)
    parser.add_argument("--version", action="version", version=f"tumbler {__version__}")
    return parser


def describe(result: knock.KnockResult, secret_origin: str) -> str:
    """A knock explained line by line, the secret's origin shown but never its value."""
    named = "" if result.host == result.target else f" ({result.host})"
    chosen = "given with --from" if result.address_given else "picked by the kernel"
    moment = result.when.astimezone(UTC)
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


def open_main(argv: Sequence[str]) -> int:
    """`tumbler [--open] URL ...`: send one Tumbler knock."""
    parsed = parse(_open_parser(), argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed

    def run() -> int:
        if args.url and args.open_url:
            raise knock.KnockUsageError("give the URL once, with or without --open")
        text = args.open_url or args.url
        if not text:
            names = ", ".join(COMMANDS)
            raise knock.KnockUsageError(
                f"nothing to do: give --open URL or a command ({names}); see tumbler --help"
            )
        url = knock.parse_url(text)
        source = knock.normalize_source(args.source) if args.source is not None else None
        knock.resolve(url.host, url.port, family=args.family)  # fail before asking
        secret = knock.resolve_secret(url, secret_file=args.secret_file, warn=warn)
        result = knock.knock_url(
            url,
            secret.value,
            source=source,
            when=args.at,
            family=args.family,
            dry_run=args.dry_run,
            sent=SentKnocks(),
        )
        if args.dry_run:
            print(describe(result, secret.origin))
            print("(dry run: nothing sent)")
        elif args.verbose:
            print(describe(result, secret.origin), file=sys.stderr)
        return EXIT_OK

    return guard(run)


# --- tumbler knock HOST PORT ... ---------------------------------------------------------

KNOCK_DESCRIPTION = f"""\
Send a classic port-knock sequence, the scheme the article starts from: connection
attempts to closed ports, in a secret order, seen by a daemon watching the firewall
(a tumblerd sequence door, or knockd). TCP knocks are single SYNs that expect no
answer; udp/PORT knocks are one small datagram. Knocks leave {knock.DEFAULT_DELAY_MS} ms apart
by default, which keeps them in order across a real network yet finishes a 3-port
sequence in 0.2 s. Anyone on the path can watch a sequence and replay it:
prefer a Tumbler door (tumbler --open) where you can."""

KNOCK_EPILOG = """\
PORT is 42 or tcp/42 (TCP), udp/500, or knockd's own 500:udp.

examples:
  tumbler knock host.example.org 42 196 69
  tumbler knock -v --delay 250 192.0.2.7 7000 udp/7001 tcp/7002
  tumbler knock -6 fd00::1 42 196 69"""


def _knock_parser() -> Parser:
    parser = Parser(
        prog="tumbler knock",
        description=KNOCK_DESCRIPTION,
        epilog=KNOCK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("host", metavar="HOST", help="name or address to knock on")
    parser.add_argument("ports", nargs="+", metavar="PORT", help="the sequence, in order")
    add_family(parser)
    parser.add_argument(
        "-u", "--udp", action="store_true", help="bare port numbers mean UDP, not TCP"
    )
    parser.add_argument(
        "--delay",
        type=_delay,
        default=knock.DEFAULT_DELAY_MS / 1000,
        metavar="MS",
        help=f"milliseconds from one knock to the next (default {knock.DEFAULT_DELAY_MS})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each knock")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the sequence and target, send nothing"
    )
    return parser


def knock_main(argv: Sequence[str]) -> int:
    """`tumbler knock HOST PORT [PORT ...]`: send a classic sequence."""
    parsed = parse(_knock_parser(), argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed

    def run() -> int:
        default_proto = "udp" if args.udp else "tcp"
        ports = [knock.parse_knock_port(text, default_proto) for text in args.ports]
        total = len(ports)
        if args.dry_run:
            _, sockaddr = knock.pick_target(args.host, family=args.family)
            for index, spec in enumerate(ports):
                print(f"knock {index + 1}/{total}: {spec} -> {sockaddr[0]} (dry run)")
            return EXIT_OK

        def show(done: knock.SequenceKnock) -> None:
            print(
                f"knock {done.index + 1}/{total}: {done.spec} -> {done.target}: {done.outcome}",
                flush=True,
            )

        knock.send_sequence(
            args.host,
            ports,
            delay=args.delay,
            family=args.family,
            on_knock=show if args.verbose else None,
        )
        return EXIT_OK

    return guard(run)


# --- dispatch ----------------------------------------------------------------------------


def _load_knock() -> Handler | None:
    return knock_main


def _load_open() -> Handler | None:
    from tumbler.cli import proxy as proxy_cli

    return proxy_cli.open_main


def _load_ssh_proxy() -> Handler | None:
    from tumbler.cli import proxy as proxy_cli

    return proxy_cli.ssh_proxy_main


def _load_keygen() -> Handler | None:
    from tumbler.cli import keygen

    return keygen.keygen_main


def _load_sniff() -> Handler | None:
    """Imported only when asked for: it is another module's, with optional extras."""
    try:
        sniff = importlib.import_module("tumbler.cli.sniff")
    except ModuleNotFoundError as exc:
        if exc.name not in ("tumbler.cli.sniff", "tumbler.audit.sniff"):
            raise
        return None
    main: Handler = sniff.main
    return main


@dataclass(frozen=True)
class Command:
    """A subcommand: a one-line summary for --help and a lazy loader of its main."""

    summary: str
    load: Callable[[], Handler | None]


COMMANDS: dict[str, Command] = {
    "open": Command("knock with a profile from hosts.conf, then wait for its port", _load_open),
    "ssh-proxy": Command("ssh ProxyCommand: knock, wait for the port, relay", _load_ssh_proxy),
    "knock": Command("send a classic port-knock sequence (TCP SYNs, UDP)", _load_knock),
    "sniff": Command("audit tcpdump output or a capture: knocks anyone could replay", _load_sniff),
    "keygen": Command(
        "make a v2 key: a door stanza for the server, a URL for the client", _load_keygen
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `tumbler` and `python -m tumbler`: a command, else the --open form."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        handler = COMMANDS[args[0]].load()
        if handler is None:
            error(f"'{args[0]}' is not available in this installation")
            return EXIT_FAILURE
        return handler(args[1:])
    return open_main(args)


if __name__ == "__main__":
    sys.exit(main())
