"""`tumbler sniff`: the argparse front-end of the knock auditor in `tumbler.audit.sniff`."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from tumbler.audit.sniff import (
    DEFAULT_WINDOW,
    SniffError,
    Stats,
    analyze,
    format_report,
    read_packets,
    report_to_json,
)
from tumbler.cli.common import EXIT_USAGE, exit_status
from tumbler.protocols import tumbler2
from tumbler.protocols.authorized_keys import AuthorizedKey, parse_authorized_keys
from tumbler.protocols.tumbler1 import DEFAULT_PORT
from tumbler.secretfile import SecretFileError, read_secret_file


def _read_keys(paths: list[str]) -> list[AuthorizedKey]:
    """The keys of `authorized_keys` files; what cannot be used is said on stderr."""
    keys: list[AuthorizedKey] = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            parsed = parse_authorized_keys(f.read(), path)
        for warning in parsed.warnings:
            print(f"tumbler sniff: warning: {warning}", file=sys.stderr)
        keys += parsed.keys
    return keys


def build_parser() -> argparse.ArgumentParser:
    """The `tumbler sniff` options (the client mounts them as a subcommand)."""
    p = argparse.ArgumentParser(
        prog="tumbler sniff",
        description=(
            "Audit a capture for knocks: TCP connection attempts that never got a "
            "SYN-ACK (classic port knocks, which anyone watching can replay) and Tumbler "
            "datagrams, v1 and v2 (replays flagged; --secret or --key checks them) and "
            "signed knocks (with their key's fingerprint; --authorized-keys names and checks "
            "them). Reads `tcpdump -n` text or a pcap/pcapng file."
        ),
    )
    p.add_argument("input", nargs="?", default="-", help="capture or tcpdump text (default stdin)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="Tumbler UDP port (8675)")
    p.add_argument("--secret", action="append", default=[], help="a door secret (repeatable)")
    p.add_argument("--secret-file", action="append", default=[], help="file holding a secret")
    p.add_argument("--key", action="append", default=[], help="a v2 door key (repeatable)")
    p.add_argument("--key-file", action="append", default=[], help="file holding a v2 key")
    p.add_argument("--realm", default="", help="the realm v2 and signed knocks were made for")
    p.add_argument(
        "--authorized-keys",
        action="append",
        default=[],
        metavar="FILE",
        help="SSH public keys (authorized_keys format) to name and check signed knocks",
    )
    p.add_argument(
        "--window", type=int, default=DEFAULT_WINDOW, help="minutes searched either side (10)"
    )
    p.add_argument("--udp", action="store_true", help="also report unanswered UDP datagrams")
    p.add_argument(
        "--no-refused", action="store_true", help="do not count SYNs answered by RST as knocks"
    )
    p.add_argument(
        "--date", type=date.fromisoformat, help="date (YYYY-MM-DD, local) for time-only text"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-v", "--verbose", action="store_true", help="details and skipped-line count")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tumbler sniff`: 0 on success, 2 on an unusable input or option.

    A secret file follows the table of `cli.common`: 1 when it cannot be read.
    """
    args = build_parser().parse_args(argv)
    if args.window < 0 or not 0 < args.port < 65536:
        print("tumbler sniff: --window must be >= 0 and --port 1-65535", file=sys.stderr)
        return 2
    try:
        secrets = [*args.secret, *(read_secret_file(f).secret for f in args.secret_file)]
        key_texts = [*args.key, *(read_secret_file(f).secret for f in args.key_file)]
    except SecretFileError as exc:
        print(f"tumbler sniff: {exc}", file=sys.stderr)
        return exit_status(exc)
    try:
        keys = [tumbler2.decode_key(k) for k in key_texts]
        tumbler2.realm_bytes(args.realm)
    except ValueError as exc:  # BadKey is a ValueError; neither quotes the value
        print(f"tumbler sniff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        ssh_keys = _read_keys(args.authorized_keys)
        stats = Stats()
        if args.input == "-":
            packets = list(read_packets(sys.stdin.buffer, stats, args.date))
        else:
            with open(args.input, "rb") as f:
                packets = list(read_packets(f, stats, args.date))
    except (OSError, SniffError, UnicodeDecodeError) as exc:  # an unusable input file
        print(f"tumbler sniff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = analyze(
        packets,
        stats=stats,
        tumbler_port=args.port,
        secrets=secrets,
        window=args.window,
        include_refused=not args.no_refused,
        udp_knocks=args.udp,
        keys=keys,
        ssh_keys=ssh_keys,
        realm=args.realm,
    )
    try:
        if args.json:
            sys.stdout.write(json.dumps(report_to_json(report), indent=2) + "\n")
        else:
            sys.stdout.write(format_report(report, args.verbose))
        sys.stdout.flush()
    except BrokenPipeError:  # `tumbler sniff ... | head` is fine
        return 0
    if args.verbose:
        print(
            f"tumbler sniff: {stats.format}, {stats.lines} lines/records, "
            f"{stats.packets} packets, {stats.skipped} skipped",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
