"""Resolve a profile, a URL or a bare host into a knock plan, and carry it out.

`tumbler open NAME` and `tumbler ssh-proxy HOST PORT` both come here. The kinds of knock
differ in their proof and in how a retry is made: tumbler:// (v1) and tumbler2:// (v2)
take a secret, tumbler+ssh:// is signed by SSH keys, fwknop:// sends an SPA packet with
the keys of an .fwknoprc stanza. A `Plan` holds one door and its proof, and hides the
kind from the commands: `knock_once`, `knocker` (for retries), `knock_and_connect`.

ssh-proxy runs before every ssh, so what a kind needs is loaded only for that kind
(signed knocks, fwknop), and the profile file's parser only when there is a file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from tumbler.client import knock
from tumbler.client.hostsfile import (
    DEFAULT_RETRY_AFTER,
    DEFAULT_WAIT_TIMEOUT,
    PROFILES_ENV,
    profiles_path,
)
from tumbler.client.sentknocks import SentKnocks
from tumbler.client.sshproxy import Attempt, FreshKnocker, Log, MinuteKnocker, knock_and_dial
from tumbler.errors import ConfigError

TYPE_CHECKING = False  # not typing's: see tests/unit/test_client_startup.py
if TYPE_CHECKING:
    from tumbler.client.fwknop import FwknopTarget
    from tumbler.client.fwknopurl import FwknopURL
    from tumbler.client.profiles import Profile, Profiles
    from tumbler.client.sshagent import Signer
    from tumbler.client.sshurl import SshKnockURL

    DoorURL = knock.KnockURL | SshKnockURL

Warn = Callable[[str], None]


def load_profiles(given: str | None, *, required: bool, warn: Warn) -> Profiles | None:
    """The profile file: `given` (--profiles), $TUMBLER_PROFILES or the XDG default.

    A missing default file is fine for ssh-proxy (a host needs no profile); a file
    the user named, or one `open` needs, must exist.
    """
    explicit = given is not None or bool(os.environ.get(PROFILES_ENV))
    path = os.path.expanduser(given) if given is not None else profiles_path()
    if not explicit and not required and not os.path.exists(path):
        return None
    if not os.path.exists(path):
        from pathlib import Path  # for the message only: the path as the parser writes it

        hint = "no profile file here; create it (see tumbler open --help)"
        raise ConfigError(hint, str(Path(path)))
    from tumbler.client import profiles

    loaded = profiles.load_profiles(path)
    for warning in loaded.warnings:
        warn(warning)
    return loaded


def secret_for(
    url: knock.KnockURL,
    secret_file: str | None,
    profile: Profile | None,
    warn: Warn | None = None,
    environ: Mapping[str, str] | None = None,
) -> knock.Secret:
    """URL, then --secret-file, then $TUMBLER_SECRET, then the profile's file, then a prompt.

    The environment beats the profile, as a command line beats a config file.
    """
    environ = os.environ if environ is None else environ
    if secret_file is None and knock.SECRET_ENV not in environ and profile is not None:
        secret_file = profile.secret_file
    return knock.resolve_secret(url, secret_file=secret_file, environ=environ, warn=warn)


class Proof:
    """What makes the knock: a secret (tumbler://) or the SSH keys that sign (tumbler+ssh://).

    This module's records that are made once per run are plain classes: a named tuple's
    class costs start-up time, and ssh-proxy runs before every ssh.
    """

    __slots__ = ("secret", "signers")

    def __init__(self, secret: str | None = None, signers: tuple[Signer, ...] = ()) -> None:
        self.secret = secret
        self.signers = signers


def is_signed(url: DoorURL) -> bool:
    return not isinstance(url, knock.KnockURL)


def proof_for(
    url: DoorURL,
    secret_file: str | None,
    ssh_key: str | None,
    profile: Profile | None,
    warn: Warn | None = None,
) -> Proof:
    """The secret or the signing keys the door's URL calls for; asks only what it needs."""
    if is_signed(url):
        from tumbler.client import signed  # the SSH machinery, for signed knocks only

        if secret_file is not None:
            raise knock.KnockUsageError("a tumbler+ssh:// door takes an SSH key, not a secret file")
        key = ssh_key if ssh_key is not None else (profile.ssh_key if profile else None)
        return Proof(signers=tuple(signed.find_signers(key)))
    assert isinstance(url, knock.KnockURL)
    if ssh_key is not None:
        raise knock.KnockUsageError("--ssh-key is for a tumbler+ssh:// door")
    return Proof(secret=secret_for(url, secret_file, profile, warn).value)


def parse_door_url(text: str) -> DoorURL:
    """A tumbler://, tumbler2:// or tumbler+ssh:// URL (not fwknop://: see `is_fwknop_url`)."""
    if knock.is_ssh_url(text):
        from tumbler.client.sshurl import parse_ssh_url  # the SSH machinery waits for the knock

        return parse_ssh_url(text)
    return knock.parse_url(text)


def is_fwknop_url(text: str) -> bool:
    return text.strip().lower().startswith("fwknop://")


def host_url(host: str, *, signed: bool = False) -> DoorURL:
    """`tumbler://HOST/` (or `tumbler+ssh://HOST/` when `signed`) for a bare host as ssh
    gives it (%h: an IPv6 address unbracketed)."""
    bracketed = f"[{host}]" if ":" in host else host
    scheme = knock.SSH_SCHEME if signed else knock.SCHEME
    return parse_door_url(f"{scheme}://{bracketed}/")


def fwknop_target(url: FwknopURL, profile: Profile | None, warn: Warn) -> FwknopTarget:
    """The keys and settings for an fwknop:// url: the profile's fwknoprc, else the default."""
    from pathlib import Path

    from tumbler.client import fwknop

    rc = profile.fwknoprc if profile is not None and profile.fwknoprc else None
    path = Path(rc) if rc else fwknop.default_rc_path()
    return fwknop.target_from_rc(url, fwknop.read_rc(path, warn), path)


NO_PROOF = Proof()  # an fwknop:// door's keys are in its target


class Sent:
    """Where one knock went: the address and the UDP port."""

    __slots__ = ("port", "target")

    def __init__(self, target: str, port: int) -> None:
        self.target = target
        self.port = port


class Plan:
    """One door to knock on, with its proof, as seen from `source` over `family`.

    `url` for tumbler://, tumbler2:// and tumbler+ssh:// doors (with `proof`), `spa` for
    an fwknop:// one (its keys are in the target). Made once per run: a plain class.
    """

    __slots__ = ("family", "host", "port", "proof", "source", "spa", "url")

    def __init__(
        self,
        host: str,
        port: int,
        source: str | None,
        family: int,
        url: DoorURL | None = None,
        proof: Proof = NO_PROOF,
        spa: FwknopTarget | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.source = source
        self.family = family
        self.url = url
        self.proof = proof
        self.spa = spa

    def knock_once(self) -> Sent:
        """Send one knock (one per key for a signed door); where the first went."""
        if self.spa is not None:
            from tumbler.client import fwknop

            spa = fwknop.send_spa(self.spa, source=self.source, family=self.family)
            return Sent(spa.target, spa.port)
        assert self.url is not None
        if is_signed(self.url):
            from tumbler.client import signed

            url = self.url
            results = signed.send_signed_knocks(
                url.host,
                url.port,
                self.proof.signers,
                realm=url.realm,
                source=self.source,
                family=self.family,
            )
            return Sent(results[0].target, url.port)
        assert isinstance(self.url, knock.KnockURL) and self.proof.secret is not None
        options = knock.KnockOptions(self.source, family=self.family, sent=SentKnocks())
        result = knock.knock_url(self.url, self.proof.secret, options)
        return Sent(result.target, self.url.port)

    def knocker(self) -> MinuteKnocker | FreshKnocker:
        """What knocks again while the port stays shut.

        A v1 knock is a function of the minute, so a retry takes a neighbouring minute
        the daemon still accepts (and that no other run of the client used); every other
        kind carries its own nonce, so a retry is just another knock, now.
        """
        url = self.url
        if not isinstance(url, knock.KnockURL):
            return FreshKnocker(send=lambda when: self.knock_once())
        secret = self.proof.secret
        assert secret is not None
        sent = SentKnocks()

        def send(when: float) -> bool:
            try:
                options = knock.KnockOptions(self.source, when, self.family, sent, offsets=(0,))
                knock.knock_url(url, secret, options)
            except knock.NoFreshMinute:
                return False
            return True

        return FreshKnocker(send=send) if url.version == 2 else MinuteKnocker(send=send)

    def knock_target(self) -> str:
        """The address the knocks go to; fails on a bad name before any knock."""
        if self.spa is not None:
            from tumbler.client import fwknop

            probe = fwknop.send_spa(self.spa, source=self.source, family=self.family, dry_run=True)
            return probe.target
        knock.resolve(self.host, self.port, family=self.family)
        return knock.udp_target(self.host, self.port, family=self.family)


def knock_and_connect(
    plan: Plan,
    connect_host: str,
    port: int,
    *,
    wait_timeout: float,
    retry_after: float,
    log: Log | None = None,
) -> Attempt:
    """Knock as `plan` says, then connect to connect_host:port, knocking again as needed."""
    started = time.monotonic()
    knocked = plan.knock_target()
    return knock_and_dial(
        plan.knocker(),
        knocked,
        plan.host,
        connect_host,
        port,
        family=plan.family,
        wait_timeout=wait_timeout,
        retry_after=retry_after,
        log=log,
        started=started,
    )


def profile_plan(profile: Profile, warn: Warn) -> Plan:
    """`tumbler open NAME`: the plan a profile describes (the secret asked for last)."""
    if profile.fwknop is not None:
        target = fwknop_target(profile.fwknop, profile, warn)
        return Plan(target.host, target.port, profile.source, profile.family, spa=target)
    url = profile.url
    knock.resolve(url.host, url.port, family=profile.family)  # fail before asking
    proof = proof_for(url, None, None, profile, warn)
    return Plan(url.host, url.port, profile.source, profile.family, url, proof)


class ProxyRoute:
    """ssh-proxy's plan: what to knock on, what to connect to, for how long."""

    __slots__ = ("connect_host", "plan", "profile", "retry_after", "wait_timeout")

    def __init__(
        self,
        plan: Plan,
        connect_host: str,
        profile: Profile | None,
        wait_timeout: float,
        retry_after: float,
    ) -> None:
        self.plan = plan
        self.connect_host = connect_host
        self.profile = profile
        self.wait_timeout = wait_timeout
        self.retry_after = retry_after


def proxy_route(
    host: str,
    port: int,
    *,
    profiles_file: str | None = None,
    url_text: str | None = None,
    secret_file: str | None = None,
    ssh_key: str | None = None,
    source: str | None = None,
    family: int = 0,
    wait_timeout: float | None = None,
    retry_after: float | None = None,
    warn: Warn,
    log: Log,
) -> ProxyRoute:
    """`tumbler ssh-proxy HOST PORT`: the door for HOST, from the options and profiles.

    HOST is a profile name (then its url's host is connected to) or a host: then the
    knock goes to --url, else to the first profile whose url names HOST, else to
    tumbler://HOST/ (tumbler+ssh://HOST/ with --ssh-key). Options beat the profile.
    """
    loaded = load_profiles(profiles_file, required=False, warn=warn)
    named = loaded.get(host) if loaded is not None else None
    spa_url: FwknopURL | None = None
    url: DoorURL | None = None
    if url_text and is_fwknop_url(url_text):
        from tumbler.client.fwknopurl import parse_fwknop_url

        spa_url = parse_fwknop_url(url_text)
    elif url_text:
        url = parse_door_url(url_text)
    connect_host = named.url.host if named is not None else host
    profile = named
    if profile is None and loaded is not None:
        given = spa_url.host if spa_url else url.host if url else host
        profile = loaded.for_host(given)
    if url is None and spa_url is None:
        if profile is not None and profile.fwknop is not None:
            spa_url = profile.fwknop
        elif profile is not None:
            url = profile.url
        else:
            url = host_url(host, signed=ssh_key is not None)
    if profile is not None:
        log(f"profile {profile.name} ({profile.path}:{profile.line})")
    family = family or (profile.family if profile is not None else 0)
    if source is not None:
        source = knock.normalize_source(source)
    elif profile is not None:
        source = profile.source
    wait = wait_timeout or (profile.wait_timeout if profile is not None else DEFAULT_WAIT_TIMEOUT)
    retry = retry_after or (profile.retry_after if profile is not None else DEFAULT_RETRY_AFTER)
    if spa_url is not None:
        if secret_file is not None:
            raise knock.KnockUsageError("fwknop:// URLs take their keys from an .fwknoprc")
        if ssh_key is not None:
            raise knock.KnockUsageError("--ssh-key is for a tumbler+ssh:// door")
        target = fwknop_target(spa_url, profile, warn)
        plan = Plan(target.host, target.port, source, family, spa=target)
        log(f"sending SPA to {spa_url}, then connecting to {connect_host} port {port}")
    else:
        assert url is not None
        knock.resolve(url.host, url.port, family=family)  # fail before asking
        proof = proof_for(url, secret_file, ssh_key, profile, warn)
        for signer in proof.signers:
            log(f"signing with {signer.comment} {signer.key.fingerprint}")
        plan = Plan(url.host, url.port, source, family, url, proof)
        log(f"knocking on {url}, then connecting to {connect_host} port {port}")
    return ProxyRoute(plan, connect_host, profile, wait, retry)
