"""`tumbler open NAME` and `tumbler ssh-proxy HOST PORT`: reading the arguments, reporting.

Both knock, then wait for a TCP port to answer, knocking again (v1: with a neighbouring
minute; v2, signed and fwknop: just again) when it does not; the engine is the client
library's (`client.plan` resolves the door and its proof, `client.sshproxy` dials and
relays). ssh-proxy runs before every ssh, so its common forms are read without argparse
(`cli.quick.read_argv`), and argparse (through `cli.common`) is loaded for anything else,
with the same errors and exit statuses (`cli.exits`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from tumbler.cli.exits import EXIT_OK, guard, warn
from tumbler.cli.quick import read_argv
from tumbler.client import knock, plan, sshproxy
from tumbler.client.hostsfile import DEFAULT_RETRY_AFTER, DEFAULT_WAIT_TIMEOUT, PROFILES_ENV
from tumbler.errors import ConfigError
from tumbler.ports import parse_port

TYPE_CHECKING = False  # not typing's: see tests/unit/test_client_startup.py
if TYPE_CHECKING:
    import argparse

    from tumbler.cli.common import Parser
    from tumbler.client.profiles import Profile


def _seconds(text: str) -> float:
    from tumbler.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        import argparse

        raise argparse.ArgumentTypeError(str(exc)) from None


def _tcp_port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port from 1 to 65535") from None


def _where(host: str, target: str, port: int) -> str:
    return f"tcp/{port} on {host}" + ("" if host == target else f" ({target})")


def _narrator(prog: str, enabled: bool) -> Callable[[str], None]:
    """A `log(message)` that narrates on stderr with -v, and is silent otherwise."""

    def log(message: str) -> None:
        if enabled:
            print(f"{prog}: {message}", file=sys.stderr, flush=True)

    return log


# --- tumbler open NAME ---------------------------------------------------------------------

OPEN_DESCRIPTION = """\
Knock on a host named in your profile file, then (when the profile has `wait`) wait
until that TCP port answers, knocking again every `retry_after` seconds (a tumbler://
door with a neighbouring minute, a tumbler2:// door with a fresh nonce), for at most
`wait_timeout` seconds."""

OPEN_EPILOG = f"""\
profile file: --profiles FILE, else ${PROFILES_ENV}, else
$XDG_CONFIG_HOME/tumbler/hosts.conf (default ~/.config/tumbler/hosts.conf):

  [host-web1]
     url = tumbler://web1.example.org/     # no secret here: use secret_file
     secret_file = ~/.config/tumbler/web1.secret
     from = 203.0.113.9                   # optional: the address the server sees
     family = 4                           # optional: 4 or 6
     wait = 22                            # optional: the TCP port to wait for
     wait_timeout = 10                    # seconds (default 10)
     retry_after = 3                      # seconds (default 3)

the secret: the URL, else ${knock.SECRET_ENV}, else secret_file, else a prompt.
exit status: 0 knocked (and the port answers), 1 it never answered or a failure,
2 bad usage or profile file."""


def _open_parser() -> Parser:
    import argparse

    from tumbler.cli.common import Parser

    parser = Parser(
        prog="tumbler open",
        description=OPEN_DESCRIPTION,
        epilog=OPEN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", help="a [host-NAME] of the profile file")
    parser.add_argument("--profiles", metavar="FILE", help="the profile file to read")
    parser.add_argument("-v", "--verbose", action="store_true", help="narrate on stderr")
    return parser


class OpenArgs:
    """`tumbler open`'s options, as its argparse parser names them (a plain class, as
    `ProxyArgs` below)."""

    __slots__ = ("name", "profiles", "verbose")

    def __init__(self, name: str, profiles: str | None, verbose: bool) -> None:
        self.name = name
        self.profiles = profiles
        self.verbose = verbose


def _open_args_quick(argv: Sequence[str]) -> OpenArgs | None:
    """`NAME [--profiles FILE] [-v]` read without argparse, or None for argparse to read
    (and to explain whatever is wrong, -4 and -6 included: `open` takes neither)."""
    read = read_argv(argv, ("--profiles",), ("-v", "--verbose"), 1)
    if read is None or read.family:
        return None
    return OpenArgs(read.positionals[0], read.values.get("--profiles"), bool(read.flags))


def open_main(argv: Sequence[str]) -> int:
    """`tumbler open NAME`: knock with a profile, then wait for its port."""
    args: OpenArgs | argparse.Namespace | None = _open_args_quick(argv)
    if args is None:
        from tumbler.cli.common import parse

        parsed = parse(_open_parser(), argv)
        if isinstance(parsed, int):
            return parsed
        args = parsed
    return _open(args)


def _open(args: OpenArgs | argparse.Namespace) -> int:
    log = _narrator("tumbler open", args.verbose)

    def run() -> int:
        loaded = plan.load_profiles(args.profiles, required=True, warn=warn)
        assert loaded is not None
        profile = loaded.get(args.name)
        if profile is None:
            known = ", ".join(loaded.profiles) or "none"
            raise ConfigError(f"no [host-{args.name}] (profiles: {known})", loaded.path)
        door = plan.profile_plan(profile, warn)
        if profile.wait is None:
            sent = door.knock_once()
            what = "sent an SPA packet to" if door.spa is not None else "knocked on"
            print(f"{profile.name}: {what} {sent.target} udp/{sent.port}")
            return EXIT_OK
        attempt = plan.knock_and_connect(
            door,
            profile.url.host,
            profile.wait,
            wait_timeout=profile.wait_timeout,
            retry_after=profile.retry_after,
            log=log,
        )
        return _report(profile, attempt)

    return guard(run)


def _report(profile: Profile, attempt: sshproxy.Attempt) -> int:
    """Say whether `tumbler open` got its port to answer."""
    assert profile.wait is not None
    where = _where(profile.url.host, attempt.target, profile.wait)
    plural = "s" if attempt.knocks != 1 else ""
    if attempt.sock is None:
        raise knock.KnockError(
            f"{profile.name}: {where} did not answer within {profile.wait_timeout:g} s "
            f"({attempt.knocks} knock{plural}; last: {attempt.last_error})"
        )
    attempt.sock.close()
    print(
        f"{profile.name}: {where} answers after {attempt.elapsed:.1f} s "
        f"({attempt.knocks} knock{plural})"
    )
    return EXIT_OK


# --- tumbler ssh-proxy HOST PORT ----------------------------------------------------------

PROXY_DESCRIPTION = """\
Be ssh's ProxyCommand: knock, connect to HOST:PORT (knocking again every
--retry-after seconds while the port does not answer: a tumbler:// door with a
neighbouring minute, a tumbler2:// door with a fresh nonce), then
relay stdin and stdout to the connection. Nothing but the connection's bytes goes to
stdout; errors (and, with -v, a narrative) go to stderr.

HOST is a profile name (then its url's host is connected to) or a host: then the
knock goes to the first profile whose url names HOST, else to tumbler://HOST/."""

PROXY_EPILOG = f"""\
~/.ssh/config:

  Host web1
      HostName web1.example.org
      ProxyCommand tumbler ssh-proxy %h %p

  Host 192.0.2.7
      ProxyCommand tumbler ssh-proxy --secret-file ~/.config/tumbler/door.secret %h %p

  Host 192.0.2.8                # a signed door: the same SSH key knocks and logs in
      ProxyCommand tumbler ssh-proxy --url tumbler+ssh://%h/ %h %p

the secret: the URL, else --secret-file, else ${knock.SECRET_ENV}, else the profile's
secret_file, else a prompt on the terminal. A tumbler+ssh:// door is signed instead by
--ssh-key FILE, else the profile's ssh_key, else every key ssh-agent holds.
exit status: 0 the connection ended, 1 the port never answered or a failure,
2 bad usage or profile file."""


def _proxy_parser() -> Parser:
    import argparse

    from tumbler.cli.common import Parser, add_family

    parser = Parser(
        prog="tumbler ssh-proxy",
        description=PROXY_DESCRIPTION,
        epilog=PROXY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("host", metavar="HOST", help="a profile name or a host (ssh's %%h)")
    parser.add_argument("port", metavar="PORT", type=_tcp_port, help="the TCP port (ssh's %%p)")
    parser.add_argument("--profiles", metavar="FILE", help="the profile file to read")
    parser.add_argument("--url", metavar="URL", help="knock on this door instead")
    parser.add_argument("--secret-file", metavar="FILE", help="the secret's file")
    parser.add_argument(
        "--ssh-key", metavar="FILE", help="sign with this SSH key (knocks on tumbler+ssh://HOST/)"
    )
    parser.add_argument("--from", dest="source", metavar="ADDR", help="the address to knock as")
    add_family(parser)
    parser.add_argument(
        "--wait-timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"give up after this long (default: profile, else {DEFAULT_WAIT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--retry-after",
        type=_seconds,
        metavar="SECONDS",
        help=f"knock again after this long (default: profile, else {DEFAULT_RETRY_AFTER:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="narrate on stderr")
    return parser


class ProxyArgs:
    """ssh-proxy's options, as its argparse parser names them (a plain class: each named
    tuple costs start-up time, and this one is made once)."""

    __slots__ = (
        "family",
        "host",
        "port",
        "profiles",
        "retry_after",
        "secret_file",
        "source",
        "ssh_key",
        "url",
        "verbose",
        "wait_timeout",
    )

    def __init__(self, host: str, port: int, values: dict[str, str], family: int) -> None:
        self.host = host
        self.port = port
        self.profiles = values.get("--profiles")
        self.url = values.get("--url")
        self.secret_file = values.get("--secret-file")
        self.ssh_key = values.get("--ssh-key")
        self.source = values.get("--from")
        self.family = family
        self.wait_timeout: float | None = None
        self.retry_after: float | None = None
        self.verbose = False


_PROXY_VALUED = (
    "--profiles",
    "--url",
    "--secret-file",
    "--ssh-key",
    "--from",
    "--wait-timeout",
    "--retry-after",
)


def _proxy_args_quick(argv: Sequence[str]) -> ProxyArgs | None:
    """ssh-proxy's arguments read without argparse, or None for argparse to read (and to
    explain whatever is wrong with them)."""
    read = read_argv(argv, _PROXY_VALUED, ("-v", "--verbose"), 2)
    if read is None:
        return None
    try:
        port = parse_port(read.positionals[1])
        args = ProxyArgs(read.positionals[0], port, read.values, read.family)
        wait, retry = read.values.get("--wait-timeout"), read.values.get("--retry-after")
        if wait is not None or retry is not None:
            from tumbler.durations import parse_duration

            args.wait_timeout = parse_duration(wait) if wait is not None else None
            args.retry_after = parse_duration(retry) if retry is not None else None
    except ValueError:
        return None
    args.verbose = bool(read.flags)
    return args


def ssh_proxy_main(argv: Sequence[str]) -> int:
    """`tumbler ssh-proxy HOST PORT`: knock, connect, relay."""
    args: ProxyArgs | argparse.Namespace | None = _proxy_args_quick(argv)
    if args is None:
        from tumbler.cli.common import parse

        parsed = parse(_proxy_parser(), argv)
        if isinstance(parsed, int):
            return parsed
        args = parsed
    return _ssh_proxy(args)


def _ssh_proxy(args: ProxyArgs | argparse.Namespace) -> int:
    log = _narrator("tumbler ssh-proxy", args.verbose)

    def run() -> int:
        route = plan.proxy_route(
            args.host,
            args.port,
            profiles_file=args.profiles,
            url_text=args.url,
            secret_file=args.secret_file,
            ssh_key=args.ssh_key,
            source=args.source,
            family=args.family,
            wait_timeout=args.wait_timeout,
            retry_after=args.retry_after,
            warn=warn,
            log=log,
        )
        attempt = plan.knock_and_connect(
            route.plan,
            route.connect_host,
            args.port,
            wait_timeout=route.wait_timeout,
            retry_after=route.retry_after,
            log=log,
        )
        where = _where(route.connect_host, attempt.target, args.port)
        plural = "s" if attempt.knocks != 1 else ""
        if attempt.sock is None:
            raise knock.KnockError(
                f"{where} did not answer within {route.wait_timeout:g} s "
                f"({attempt.knocks} knock{plural}; last: {attempt.last_error})"
            )
        log(f"connected to {where} after {attempt.elapsed:.1f} s ({attempt.knocks} knock{plural})")
        with attempt.sock:
            sshproxy.relay(attempt.sock)
        log("connection closed")
        return EXIT_OK

    return guard(run)
