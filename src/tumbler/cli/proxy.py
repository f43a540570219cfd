"""`tumbler open NAME` and `tumbler ssh-proxy HOST PORT`: the argparse front-ends.

Both knock, then wait for a TCP port to answer, knocking again (v1: with a neighbouring
minute; v2: just again) when it does not (see `tumbler.client.sshproxy`). They live apart
from `cli.tumbler` so that the plain knock stays small; `cli.tumbler` loads this module
only when asked.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tumbler.addresses import normalize_address
from tumbler.cli.common import (
    EXIT_OK,
    Parser,
    add_family,
    guard,
    parse,
    warn,
)
from tumbler.client import fwknop, knock, profiles, signed, sshproxy
from tumbler.client.sentknocks import SentKnocks
from tumbler.client.sshagent import Signer
from tumbler.durations import parse_duration
from tumbler.errors import ConfigError
from tumbler.ports import parse_port


def _seconds(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tcp_port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port from 1 to 65535") from None


def _load_profiles(given: str | None, *, required: bool) -> profiles.Profiles | None:
    """The profile file: --profiles, $TUMBLER_PROFILES or the XDG default.

    A missing default file is fine for ssh-proxy (a host needs no profile); a file
    the user named, or one `open` needs, must exist.
    """
    explicit = given is not None or bool(os.environ.get(profiles.PROFILES_ENV))
    path = Path(given).expanduser() if given is not None else profiles.default_path()
    if not explicit and not required and not path.exists():
        return None
    if not path.exists():
        raise ConfigError("no profile file here; create it (see tumbler open --help)", str(path))
    loaded = profiles.load_profiles(path)
    for warning in loaded.warnings:
        warn(warning)
    return loaded


def _secret(
    url: knock.KnockURL,
    secret_file: str | None,
    profile: profiles.Profile | None,
    environ: Mapping[str, str] | None = None,
) -> knock.Secret:
    """URL, then --secret-file, then $TUMBLER_SECRET, then the profile's file, then a prompt.

    The environment beats the profile, as a command line beats a config file.
    """
    environ = os.environ if environ is None else environ
    if secret_file is None and knock.SECRET_ENV not in environ and profile is not None:
        secret_file = profile.secret_file
    return knock.resolve_secret(url, secret_file=secret_file, environ=environ, warn=warn)


DoorURL = knock.KnockURL | signed.SshKnockURL


@dataclass(frozen=True)
class Proof:
    """What makes the knock: a secret (tumbler://) or the SSH keys that sign (tumbler+ssh://)."""

    secret: str | None = None
    signers: tuple[Signer, ...] = ()


def _proof(
    url: DoorURL,
    secret_file: str | None,
    ssh_key: str | None,
    profile: profiles.Profile | None,
) -> Proof:
    """The secret or the signing keys the door's URL calls for; asks only what it needs."""
    if isinstance(url, signed.SshKnockURL):
        if secret_file is not None:
            raise knock.KnockUsageError("a tumbler+ssh:// door takes an SSH key, not a secret file")
        key = ssh_key if ssh_key is not None else (profile.ssh_key if profile else None)
        return Proof(signers=tuple(signed.find_signers(key)))
    if ssh_key is not None:
        raise knock.KnockUsageError("--ssh-key is for a tumbler+ssh:// door")
    return Proof(secret=_secret(url, secret_file, profile).value)


def _host_url(host: str) -> knock.KnockURL:
    """`tumbler://HOST/` for a bare host as ssh gives it (%h: an IPv6 address unbracketed)."""
    return knock.parse_url(f"tumbler://[{host}]/" if ":" in host else f"tumbler://{host}/")


def _ssh_host_url(host: str) -> signed.SshKnockURL:
    """`tumbler+ssh://HOST/` for a bare host, when --ssh-key says the knock is signed."""
    bracketed = f"[{host}]" if ":" in host else host
    return signed.parse_ssh_url(f"{signed.SCHEME}://{bracketed}/")


@dataclass
class Attempt:
    """The outcome of knocking and dialling, for a one-line report."""

    sock: socket.socket | None
    knocks: int
    attempts: int
    elapsed: float
    target: str
    last_error: str


def knock_once(url: DoorURL, proof: Proof, *, source: str | None, family: int) -> str:
    """Send one knock; return the address it went to."""
    if isinstance(url, signed.SshKnockURL):
        results = signed.send_signed_knocks(
            url.host, url.port, proof.signers, realm=url.realm, source=source, family=family
        )
        return results[0].target
    assert proof.secret is not None
    result = knock.knock_url(url, proof.secret, source=source, family=family, sent=SentKnocks())
    return result.target


def knock_and_connect(
    url: DoorURL,
    proof: Proof,
    connect_host: str,
    port: int,
    *,
    source: str | None,
    family: int,
    wait_timeout: float,
    retry_after: float,
    log: sshproxy.Log | None = None,
) -> Attempt:
    """Knock on `url`, then connect to connect_host:port, knocking again as needed.

    The connection uses the family the knock went out on: the door opens for the
    address in the knock, and an IPv6 connection would come from another address.
    """
    started = time.monotonic()
    knock.resolve(url.host, url.port, family=family)  # fail on a bad name before knocking
    knock_target = knock.udp_target(url.host, url.port, family=family)
    knocker: sshproxy.MinuteKnocker | sshproxy.FreshKnocker
    if isinstance(url, signed.SshKnockURL):
        # Each signed knock has its own nonce: a retry is just another knock.
        knocker = sshproxy.FreshKnocker(
            send=lambda when: knock_once(url, proof, source=source, family=family)
        )
    else:
        secret = proof.secret
        assert secret is not None
        sent = SentKnocks()

        def send(when: datetime) -> bool:
            try:
                knock.knock_url(
                    url, secret, source=source, when=when, family=family, sent=sent, offsets=(0,)
                )
            except knock.NoFreshMinute:
                return False
            return True

        if url.version == 2:
            knocker = sshproxy.FreshKnocker(send=send)  # each knock is fresh: no minute juggling
        else:
            knocker = sshproxy.MinuteKnocker(send=send)
    return _knock_and_dial(
        knocker,
        knock_target,
        url.host,
        connect_host,
        port,
        family,
        wait_timeout,
        retry_after,
        log,
        started,
    )


def spa_and_connect(
    target: fwknop.FwknopTarget,
    connect_host: str,
    port: int,
    *,
    source: str | None,
    family: int,
    wait_timeout: float,
    retry_after: float,
    log: sshproxy.Log | None = None,
) -> Attempt:
    """`knock_and_connect` for an fwknop server: each knock is a fresh SPA packet."""
    started = time.monotonic()
    probe = fwknop.send_spa(target, source=source, family=family, dry_run=True)

    def send(when: datetime) -> None:
        fwknop.send_spa(target, source=source, family=family)

    return _knock_and_dial(
        sshproxy.FreshKnocker(send=send),
        probe.target,
        target.host,
        connect_host,
        port,
        family,
        wait_timeout,
        retry_after,
        log,
        started,
    )


def _knock_and_dial(
    knocker: sshproxy.MinuteKnocker | sshproxy.FreshKnocker,
    knocked: str,
    knock_host: str,
    connect_host: str,
    port: int,
    family: int,
    wait_timeout: float,
    retry_after: float,
    log: sshproxy.Log | None,
    started: float,
) -> Attempt:
    """Dial connect_host:port over the family the knock to `knocked` went out on."""
    fam = family or (socket.AF_INET6 if ":" in knocked else socket.AF_INET)
    same = connect_host.lower() == knock_host.lower()
    dial_fam, sockaddr = knock.resolve(
        knocked if same else connect_host, port, family=fam, socktype=socket.SOCK_STREAM
    )[0]
    target = normalize_address(sockaddr[0])
    dialer = sshproxy.Dialer(dial_fam, sockaddr)
    try:
        sock = sshproxy.knock_until_open(
            knocker, dialer.wait, retry_after=retry_after, wait_timeout=wait_timeout, log=log
        )
    finally:
        dialer.close()
    return Attempt(
        sock,
        len(knocker.sent),
        dialer.attempts,
        time.monotonic() - started,
        target,
        dialer.last_error,
    )


def _where(host: str, target: str, port: int) -> str:
    return f"tcp/{port} on {host}" + ("" if host == target else f" ({target})")


# --- tumbler open NAME ---------------------------------------------------------------------

OPEN_DESCRIPTION = """\
Knock on a host named in your profile file, then (when the profile has `wait`) wait
until that TCP port answers, knocking again every `retry_after` seconds (a tumbler://
door with a neighbouring minute, a tumbler2:// door with a fresh nonce), for at most
`wait_timeout` seconds."""

OPEN_EPILOG = f"""\
profile file: --profiles FILE, else ${profiles.PROFILES_ENV}, else
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


def _narrator(prog: str, enabled: bool) -> Callable[[str], None]:
    """A `log(message)` that narrates on stderr with -v, and is silent otherwise."""

    def log(message: str) -> None:
        if enabled:
            print(f"{prog}: {message}", file=sys.stderr, flush=True)

    return log


def open_main(argv: Sequence[str]) -> int:
    """`tumbler open NAME`: knock with a profile, then wait for its port."""
    parsed = parse(_open_parser(), argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed

    log = _narrator("tumbler open", args.verbose)

    def run() -> int:
        loaded = _load_profiles(args.profiles, required=True)
        assert loaded is not None
        profile = loaded.get(args.name)
        if profile is None:
            known = ", ".join(loaded.profiles) or "none"
            raise ConfigError(f"no [host-{args.name}] (profiles: {known})", loaded.path)
        url = profile.url
        if profile.fwknop is not None:
            target = _fwknop_target(profile.fwknop, profile)
            if profile.wait is None:
                sent = fwknop.send_spa(target, source=profile.source, family=profile.family)
                print(f"{profile.name}: sent an SPA packet to {sent.target} udp/{sent.port}")
                return EXIT_OK
            attempt = spa_and_connect(
                target,
                url.host,
                profile.wait,
                source=profile.source,
                family=profile.family,
                wait_timeout=profile.wait_timeout,
                retry_after=profile.retry_after,
                log=log,
            )
            return _report(profile, attempt)
        knock.resolve(url.host, url.port, family=profile.family)  # fail before asking
        proof = _proof(url, None, None, profile)
        if profile.wait is None:
            knocked = knock_once(url, proof, source=profile.source, family=profile.family)
            print(f"{profile.name}: knocked on {knocked} udp/{url.port}")
            return EXIT_OK
        attempt = knock_and_connect(
            url,
            proof,
            url.host,
            profile.wait,
            source=profile.source,
            family=profile.family,
            wait_timeout=profile.wait_timeout,
            retry_after=profile.retry_after,
            log=log,
        )
        return _report(profile, attempt)

    return guard(run)


def _fwknop_target(url: fwknop.FwknopURL, profile: profiles.Profile | None) -> fwknop.FwknopTarget:
    """The keys and settings for an fwknop:// url: the profile's fwknoprc, else the default."""
    rc = profile.fwknoprc if profile is not None and profile.fwknoprc else None
    path = Path(rc) if rc else fwknop.default_rc_path()
    return fwknop.target_from_rc(url, fwknop.read_rc(path, warn), path)


def _report(profile: profiles.Profile, attempt: Attempt) -> int:
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
        help=f"give up after this long (default: profile, else {profiles.DEFAULT_WAIT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--retry-after",
        type=_seconds,
        metavar="SECONDS",
        help=f"knock again after this long (default: profile, else "
        f"{profiles.DEFAULT_RETRY_AFTER:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="narrate on stderr")
    return parser


def ssh_proxy_main(argv: Sequence[str]) -> int:
    """`tumbler ssh-proxy HOST PORT`: knock, connect, relay."""
    parsed = parse(_proxy_parser(), argv)
    if isinstance(parsed, int):
        return parsed
    args = parsed

    log = _narrator("tumbler ssh-proxy", args.verbose)

    def run() -> int:
        loaded = _load_profiles(args.profiles, required=False)
        named = loaded.get(args.host) if loaded is not None else None
        spa_url: fwknop.FwknopURL | None = None
        url: DoorURL | None = None
        if args.url and args.url.strip().lower().startswith(f"{fwknop.SCHEME}://"):
            spa_url = fwknop.parse_fwknop_url(args.url)
        elif args.url:
            is_ssh = signed.is_ssh_url(args.url)
            url = signed.parse_ssh_url(args.url) if is_ssh else knock.parse_url(args.url)
        connect_host = named.url.host if named is not None else args.host
        profile = named
        if profile is None and loaded is not None:
            given = spa_url.host if spa_url else url.host if url else args.host
            profile = loaded.for_host(given)
        if url is None and spa_url is None:
            if profile is not None and profile.fwknop is not None:
                spa_url = profile.fwknop
            elif profile is not None:
                url = profile.url
            else:
                url = _ssh_host_url(args.host) if args.ssh_key else _host_url(args.host)
        if profile is not None:
            log(f"profile {profile.name} ({profile.path}:{profile.line})")
        family = args.family or (profile.family if profile is not None else 0)
        if args.source is not None:
            source: str | None = knock.normalize_source(args.source)
        else:
            source = profile.source if profile is not None else None
        wait_timeout = args.wait_timeout or (
            profile.wait_timeout if profile is not None else profiles.DEFAULT_WAIT_TIMEOUT
        )
        retry_after = args.retry_after or (
            profile.retry_after if profile is not None else profiles.DEFAULT_RETRY_AFTER
        )
        if spa_url is not None:
            if args.secret_file is not None:
                raise knock.KnockUsageError("fwknop:// URLs take their keys from an .fwknoprc")
            if args.ssh_key is not None:
                raise knock.KnockUsageError("--ssh-key is for a tumbler+ssh:// door")
            target = _fwknop_target(spa_url, profile)
            log(f"sending SPA to {spa_url}, then connecting to {connect_host} port {args.port}")
            attempt = spa_and_connect(
                target,
                connect_host,
                args.port,
                source=source,
                family=family,
                wait_timeout=wait_timeout,
                retry_after=retry_after,
                log=log,
            )
        else:
            assert url is not None
            knock.resolve(url.host, url.port, family=family)  # fail before asking
            proof = _proof(url, args.secret_file, args.ssh_key, profile)
            for signer in proof.signers:
                log(f"signing with {signer.comment} {signer.key.fingerprint}")
            log(f"knocking on {url}, then connecting to {connect_host} port {args.port}")
            attempt = knock_and_connect(
                url,
                proof,
                connect_host,
                args.port,
                source=source,
                family=family,
                wait_timeout=wait_timeout,
                retry_after=retry_after,
                log=log,
            )
        where = _where(connect_host, attempt.target, args.port)
        plural = "s" if attempt.knocks != 1 else ""
        if attempt.sock is None:
            raise knock.KnockError(
                f"{where} did not answer within {wait_timeout:g} s "
                f"({attempt.knocks} knock{plural}; last: {attempt.last_error})"
            )
        log(f"connected to {where} after {attempt.elapsed:.1f} s ({attempt.knocks} knock{plural})")
        with attempt.sock:
            sshproxy.relay(attempt.sock)
        log("connection closed")
        return EXIT_OK

    return guard(run)
