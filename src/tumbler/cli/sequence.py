"""`tumbler knock HOST PORT ...`: the argparse front-end for a classic knock sequence."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from tumbler.cli.common import EXIT_OK, Parser, add_family, guard, parse
from tumbler.client import sequence


def _delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 60_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a delay from 0 to 60000 ms")
    return value / 1000


KNOCK_DESCRIPTION = f"""\
Send a classic port-knock sequence, the scheme the article starts from: connection
attempts to closed ports, in a secret order, seen by a daemon watching the firewall
(a tumblerd sequence door, or knockd). TCP knocks are single SYNs that expect no
answer; udp/PORT knocks are one small datagram. Knocks leave {sequence.DEFAULT_DELAY_MS} ms apart
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
        default=sequence.DEFAULT_DELAY_MS / 1000,
        metavar="MS",
        help=f"milliseconds from one knock to the next (default {sequence.DEFAULT_DELAY_MS})",
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
        ports = [sequence.parse_knock_port(text, default_proto) for text in args.ports]
        total = len(ports)
        if args.dry_run:
            _, sockaddr = sequence.pick_target(args.host, family=args.family)
            for index, spec in enumerate(ports):
                print(f"knock {index + 1}/{total}: {spec} -> {sockaddr[0]} (dry run)")
            return EXIT_OK

        def show(done: sequence.SequenceKnock) -> None:
            print(
                f"knock {done.position + 1}/{total}: {done.spec} -> {done.target}: {done.outcome}",
                flush=True,
            )

        sequence.send_sequence(
            args.host,
            ports,
            delay=args.delay,
            family=args.family,
            on_knock=show if args.verbose else None,
        )
        return EXIT_OK

    return guard(run)
