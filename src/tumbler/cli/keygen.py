"""`tumbler keygen`: make a v2 key and print what the server and the client each need."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tumbler.cli.common import EXIT_OK, Parser, guard, parse
from tumbler.client import keygen
from tumbler.client.knock import KnockError, KnockUsageError
from tumbler.doors import is_door_name
from tumbler.ports import parse_port_list
from tumbler.protocols import tumbler1, tumbler2

DESCRIPTION = """\
Make a key for a version 2 door (docs/PROTOCOL.md) and print what each side needs:
a door stanza for tumblerd's config, and the tumbler2:// URL a client knocks with
(or, with --key-file, a key file and the command that uses it). The key is 256
random bits, unless --passphrase derives it from a passphrase (scrypt, 64 MiB per
guess); the server then holds only the derived key, never the passphrase."""

EPILOG = """\
examples:
  tumbler keygen --door ssh --host host.example.org
  tumbler keygen --host host.example.org --realm fleet.example --qr
  tumbler keygen --host host.example.org --key-file ~/.config/tumbler/host.key
  tumbler keygen --passphrase --realm fleet.example     asks twice, without echo

the URL holds the key: anyone who sees it can knock. Keep it like a password."""


def _door(text: str) -> str:
    if not is_door_name(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a door name")
    return text


def _open(text: str) -> str:
    try:
        parse_port_list(text, allow_range=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _realm(text: str) -> str:
    try:
        tumbler2.realm_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 1 to 65535")
    return int(text)


def _parser() -> Parser:
    parser = Parser(
        prog="tumbler keygen",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--door", type=_door, default="ssh", help="door name (default ssh)")
    parser.add_argument(
        "--open", type=_open, default="tcp/22", help="what the door opens (default tcp/22)"
    )
    parser.add_argument("--host", help="the server's name or address, for the client's URL")
    parser.add_argument("--port", type=_port, help="the server's knock port (default 8675)")
    parser.add_argument("--realm", type=_realm, default="", help="the server's realm, if any")
    parser.add_argument(
        "--passphrase",
        action="store_true",
        help="derive the key from a passphrase (asked twice; from a pipe, its first line)",
    )
    parser.add_argument(
        "--key-file", metavar="FILE", help="write the key to FILE (chmod 600) instead of the URL"
    )
    parser.add_argument(
        "--qr", action="store_true", help="also show the client's URL as a QR code (qr extra)"
    )
    return parser


def _ask_passphrase() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        if not line:
            raise KnockUsageError("no passphrase on standard input")
        return line
    first = getpass.getpass("Passphrase: ")
    if getpass.getpass("Passphrase again: ") != first:
        raise KnockUsageError("the two passphrases differ")
    if not first:
        raise KnockUsageError("the passphrase is empty")
    return first


def _write_key_file(path: Path, key: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KnockUsageError(f"{path} exists; keygen does not overwrite a key") from None
    except OSError as exc:
        raise KnockError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(tumbler2.encode_key(key) + "\n")


def _qr(url: str) -> str:
    try:
        return keygen.qr_text(url)
    except ModuleNotFoundError as exc:
        if exc.name != "segno":
            raise
        raise KnockError("--qr needs the qr extra: pip install 'tumbler[qr]'") from None


def keygen_main(argv: Sequence[str]) -> int:
    """`tumbler keygen`: a new v2 key, a door stanza and a client URL."""
    parsed = parse(_parser(), argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed

    def run() -> int:
        if args.qr and args.key_file:
            raise KnockUsageError("--qr shows the URL with its key; not with --key-file")
        if args.passphrase:
            key = tumbler2.derive_key(_ask_passphrase(), args.realm)
        else:
            key = keygen.new_key()
        host = args.host or "HOST"
        port = args.port if args.port not in (None, tumbler1.DEFAULT_PORT) else None
        out = ["# server: add to tumblerd's config (keep it chmod 600)"]
        if args.passphrase:
            out.append("# the key derived from the passphrase; the passphrase itself is not kept")
        out.append(keygen.door_stanza(key, args.door, args.open, args.realm))
        out.append("# client: knock with")
        if args.key_file:
            path = Path(args.key_file).expanduser()
            _write_key_file(path, key)
            url = keygen.client_url(None, host, port, args.realm)
            out.append(f"tumbler --open '{url}' --secret-file {path}")
        else:
            url = keygen.client_url(key, host, port, args.realm)
            out.append(f"tumbler --open '{url}'")
        if not args.host:
            out.append("# (replace HOST with the server's name or address)")
        qr = _qr(url) if args.qr else ""
        print("\n".join(out))
        print(qr, end="")
        return EXIT_OK

    return guard(run)
