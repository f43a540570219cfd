"""`tumbler [--open] URL`: the argparse front-end of the knock, over `tumbler.client`.

`cli.tumbler` sends here what `cli.quick` does not read itself: --help, --version, the
hidden --at, signed (tumbler+ssh://) and fwknop:// knocks, and any other spelling of the
options. A plain tumbler:// knock is then made by `cli.quick.knock_plain` all the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tumbler import __version__
from tumbler.cli.commands import COMMANDS
from tumbler.cli.common import EXIT_OK, Parser, add_family, guard, parse, warn
from tumbler.cli.quick import knock_plain
from tumbler.client import knock

if TYPE_CHECKING:
    from tumbler.client.signed import SignedKnockResult


def _time(text: str) -> datetime:
    """An ISO 8601 moment for the hidden --at; a naive one is taken as UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


# --- tumbler --open URL ------------------------------------------------------------------

OPEN_USAGE = """\
tumbler [--open] URL [--secret-file FILE] [--from ADDR] [-4|-6] [--dry-run] [-v]
       tumbler [--open] tumbler+ssh://[USER@]HOST/ [--ssh-key FILE] [--from ADDR] ...
       tumbler [--open] fwknop://[STANZA@]HOST[:PORT]/[PORTS] [--fwknoprc FILE] [...]
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
second and never guessable offline; REALM is the server's, if it has one.

A tumbler+ssh://[USER@]HOST[:PORT]/[?realm=REALM] door takes a knock signed by your
SSH key instead (docs/SIGNED-KNOCKS.md): through ssh-agent, or from --ssh-key FILE.

fwknop://[STANZA@]HOST[:PORT]/[tcp/22,...] sends an fwknop SPA packet instead, to an
fwknopd or a tumblerd fwknop door (PORT defaults to 62201), with the keys of a stanza
of your ~/.fwknoprc (named before '@', else the one whose SPA_SERVER is HOST). The
ports default to the stanza's ACCESS; --from 0.0.0.0 asks the server to allow the
packet's source address (behind NAT, and over IPv6)."""


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

the SSH key of a tumbler+ssh:// knock, first found wins:
  1. --ssh-key FILE (signed by ssh-agent when it holds that key, else read from
     FILE, asking for its passphrase)
  2. every key ssh-agent holds (SSH_AUTH_SOCK), one knock each
  3. the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa

examples:
  tumbler --open tumbler://host.example.org/          asks for the secret
  tumbler --open tumbler://open-pAsSwOrD@192.0.2.7:8675/
  tumbler --open tumbler://[fd00::1]/ --secret-file ~/.config/tumbler/ssh
  tumbler --open tumbler://host/ --from 203.0.113.9   behind NAT
  tumbler --open tumbler://host/ --dry-run            show the knock, send nothing
  tumbler --open tumbler2://host/ --secret-file ~/.config/tumbler/host.key
  tumbler keygen --door ssh --host host.example.org   a v2 key, for both sides
  tumbler --open tumbler+ssh://alice@host/            signed by ssh-agent's key
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
        "--ssh-key", metavar="FILE", help="sign a tumbler+ssh:// knock with this SSH key"
    )
    parser.add_argument(
        "--fwknoprc",
        metavar="FILE",
        help="for fwknop:// URLs: the client's rc file (default $FWKNOPRC, else ~/.fwknoprc)",
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


def describe_signed(result: SignedKnockResult) -> str:
    """A signed knock explained line by line: which key, for what, and the datagram."""
    named = "" if result.host == result.target else f" ({result.host})"
    chosen = "given with --from" if result.address_given else "picked by the kernel"
    moment = datetime.fromtimestamp(result.when, UTC)
    return "\n".join(
        [
            f"target    {result.target} udp/{result.port}{named}",
            f"address   {result.address} ({chosen})",
            f"time      {result.when} ({moment:%Y-%m-%d %H:%M:%S} UTC)",
            f"realm     {result.realm or '(none)'}",
            f"key       {result.comment} {result.fingerprint}",
            f"datagram  {result.datagram.hex()}",
        ]
    )


def _open_signed(args: argparse.Namespace, text: str) -> int:
    """`tumbler tumbler+ssh://HOST/`: one signed knock per key (docs/SIGNED-KNOCKS.md)."""
    from tumbler.client import signed  # the SSH machinery, for signed knocks only

    if args.secret_file is not None:
        raise knock.KnockUsageError("a tumbler+ssh:// door takes an SSH key, not --secret-file")
    url = signed.parse_ssh_url(text)
    source = knock.normalize_source(args.source) if args.source is not None else None
    knock.resolve(url.host, url.port, family=args.family)  # fail before asking
    signers = signed.find_signers(args.ssh_key)
    results = signed.send_signed_knocks(
        url.host,
        url.port,
        signers,
        realm=url.realm,
        source=source,
        family=args.family,
        when=int(args.at.timestamp()) if args.at is not None else None,
        send=not args.dry_run,
    )
    shown = "\n\n".join(describe_signed(r) for r in results)
    if args.dry_run:
        print(shown)
        print("(dry run: nothing sent)")
    elif args.verbose:
        print(shown, file=sys.stderr)
    return EXIT_OK


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
        if text.strip().lower().startswith("fwknop://"):
            if args.ssh_key is not None:
                raise knock.KnockUsageError("--ssh-key is for a tumbler+ssh:// door")
            return _open_fwknop(args, text)
        if args.fwknoprc is not None:
            raise knock.KnockUsageError("--fwknoprc is for fwknop:// URLs")
        if knock.is_ssh_url(text):
            return _open_signed(args, text)
        if args.ssh_key is not None:
            raise knock.KnockUsageError("--ssh-key is for a tumbler+ssh:// door")
        return knock_plain(
            text,
            secret_file=args.secret_file,
            source=args.source,
            family=args.family,
            when=args.at,
            dry_run=args.dry_run,
            verbose=args.verbose,
        )

    return guard(run)


def _open_fwknop(args: argparse.Namespace, text: str) -> int:
    """`tumbler --open fwknop://...`: one SPA packet with the keys of an .fwknoprc stanza."""
    from pathlib import Path

    from tumbler.client import fwknop

    if args.secret_file is not None:
        raise knock.KnockUsageError("fwknop:// URLs take their keys from the .fwknoprc stanza")
    url = fwknop.parse_fwknop_url(text)
    path = Path(args.fwknoprc).expanduser() if args.fwknoprc else fwknop.default_rc_path()
    target = fwknop.target_from_rc(url, fwknop.read_rc(path, warn), path)
    result = fwknop.send_spa(
        target,
        source=args.source,
        now=args.at.timestamp() if args.at is not None else None,
        family=args.family,
        dry_run=args.dry_run,
    )
    named = "" if result.host == result.target else f" ({result.host})"
    mac = target.keys.hmac_digest if target.keys.hmac_key is not None else "none"
    lines = [
        f"target    {result.target} udp/{result.port}{named}",
        f"allow     {result.allow_ip} {', '.join(str(p) for p in result.ports)}",
        f"keys      from {path} [{target.stanza}] (mode {target.keys.mode}, HMAC {mac})",
        f"packet    {len(result.datagram)} bytes of fwknop SPA",
    ]
    if args.dry_run:
        print("\n".join(lines))
        print("(dry run: nothing sent)")
    elif args.verbose:
        print("\n".join(lines), file=sys.stderr)
    return EXIT_OK
