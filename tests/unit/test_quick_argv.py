"""The argv readers that skip argparse read every form they accept exactly as argparse does.

`cli.quick.plain_args` (tumbler --open URL ...) and ssh-proxy's reader return None for
anything they do not handle, and argparse reads that; whatever they do accept, argparse
must accept too and read the same way, or the fast start would change what a command means.
"""

from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from tumbler.cli import openurl, proxy
from tumbler.cli.quick import plain_args, read_argv

URL = "tumbler://s@127.0.0.1:9/"
OPEN_TOKENS = [
    "--open", URL, "tumbler2://h/", "--secret-file", "f", "--from", "192.0.2.1", "-4", "-6",
    "-v", "--verbose", "--dry-run", "--from=1.2.3.4", "--sec", "-x", "--", "", "-", "x y",
    "fwknop://h/", "tumbler+ssh://h/",
]  # fmt: skip
PROXY_TOKENS = [
    "host", "22", "99999", "--url", URL, "--secret-file", "f", "--ssh-key", "k", "--from",
    "192.0.2.1", "-4", "-6", "-v", "--verbose", "--wait-timeout", "5", "--retry-after", "1m",
    "--profiles", "p", "0", "bad", "--help", "--url=x", "-",
]  # fmt: skip


def argparse_reads(parser, argv: list[str]):  # type: ignore[no-untyped-def]
    try:
        return parser.parse_args(argv)
    except SystemExit:
        return None


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(OPEN_TOKENS), max_size=7))
def test_plain_knock_reads_as_argparse(argv: list[str]) -> None:
    quick = plain_args(argv)
    if quick is None:
        return
    parsed = argparse_reads(openurl._open_parser(), argv)
    assert parsed is not None, argv
    assert quick.url == (parsed.open_url or parsed.url)
    assert not (parsed.open_url and parsed.url)
    assert (quick.secret_file, quick.source, quick.family) == (
        parsed.secret_file,
        parsed.source,
        parsed.family,
    )
    assert (quick.dry_run, quick.verbose) == (parsed.dry_run, parsed.verbose)
    assert (parsed.ssh_key, parsed.fwknoprc, parsed.at) == (None, None, None)


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PROXY_TOKENS), max_size=8))
def test_ssh_proxy_reads_as_argparse(argv: list[str]) -> None:
    quick = proxy._proxy_args_quick(argv)
    if quick is None:
        return
    parsed = argparse_reads(proxy._proxy_parser(), argv)
    assert parsed is not None, argv
    for name in ProxyFields:
        assert getattr(quick, name) == getattr(parsed, name), (name, argv)


ProxyFields = (
    "host",
    "port",
    "profiles",
    "url",
    "secret_file",
    "ssh_key",
    "source",
    "family",
    "wait_timeout",
    "retry_after",
    "verbose",
)


def test_the_common_forms_are_read_quickly() -> None:
    """The forms the fast start is for are not all sent to argparse."""
    read = plain_args(["--open", URL, "--from", "192.0.2.1", "-6"])
    assert read is not None and (read.url, read.family) == (URL, socket.AF_INET6)
    assert plain_args([URL, "--secret-file", "f"]) is not None
    args = proxy._proxy_args_quick(["--url", URL, "host", "22"])
    assert args is not None and (args.host, args.port) == ("host", 22)
    assert proxy._proxy_args_quick(["host", "22", "--wait-timeout", "5"]) is not None


def test_read_argv_refuses_what_it_cannot_be_sure_of() -> None:
    assert read_argv(["--a", "x", "--a", "y"], ["--a"], [], 0) is None  # twice
    assert read_argv(["--a=x"], ["--a"], [], 0) is None
    assert read_argv(["--a", "-x"], ["--a"], [], 0) is None
    assert read_argv(["-4", "-6"], [], [], 0) is None
    assert read_argv(["p", "q"], [], [], 1) is None
    assert read_argv([], [], [], 1) is None
