"""Client profiles: named hosts in `~/.config/tumbler/hosts.conf`, so a knock is one word.

    # ~/.config/tumbler/hosts.conf (chmod 600)
    [host-web1]
       url = tumbler://web1.example.org:8675/
       secret_file = ~/.config/tumbler/web1.secret
       from = 203.0.113.9        # behind NAT: the address the server sees
       family = 4                # knock and connect over IPv4 only
       wait = 22                 # `tumbler open web1` waits until tcp/22 answers
       wait_timeout = 10         # seconds (or 30s, 1m)
       retry_after = 3           # knock again (next minute) if not open by then

    [host-db1]
       url = tumbler2://db1.example.org/?realm=fleet.example   # a version 2 door
       secret_file = ~/.config/tumbler/db1.key     # its key, as `tumbler keygen` prints it
    [host-web2]
       url = tumbler+ssh://alice@web2.example.org/   # a knock signed by your SSH key
       ssh_key = ~/.ssh/id_ed25519   # optional: else every key ssh-agent holds

The format is the daemon's (sections, `#` comments, indented `key = value`), so one
habit serves both files, and every error names the file and line. The file is found
at `--profiles FILE`, else $TUMBLER_PROFILES, else $XDG_CONFIG_HOME/tumbler/hosts.conf
(`~/.config` when XDG_CONFIG_HOME is unset). A secret belongs in `secret_file`, not in
the URL: the profile file is then safe to share, and the secret file is the one to
keep chmod 600.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

from tumbler.client import knock
from tumbler.client.hostsfile import (
    DEFAULT_RETRY_AFTER,
    DEFAULT_WAIT_TIMEOUT,
    PROFILES_ENV,
    profiles_path,
)
from tumbler.config.inifile import NAME_RULE, Section, is_name, read_sections
from tumbler.durations import parse_duration
from tumbler.errors import ConfigError
from tumbler.filemodes import readable_by_others, writable_by_others
from tumbler.ports import parse_port

# Before every ssh, `tumbler ssh-proxy %h %p` reads this file, so nothing here loads
# typing, dataclasses or pathlib (tests/unit/test_client_startup.py): tumbler+ssh:// and
# fwknop:// urls are read without their machinery (`client.sshurl`, `client.fwknopurl`),
# which is loaded only to knock on such a door.
TYPE_CHECKING = False  # not typing's
if TYPE_CHECKING:
    from pathlib import Path

    from tumbler.client.fwknopurl import FwknopURL
    from tumbler.client.sshurl import SshKnockURL

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "DEFAULT_WAIT_TIMEOUT",
    "PROFILES_ENV",
    "Profile",
    "Profiles",
    "default_path",
    "load_profiles",
    "parse_profiles",
]

_FAMILIES = {"4": socket.AF_INET, "6": socket.AF_INET6}


class Profile:
    """One `[host-NAME]` section, checked.

    A plain class, as `Profiles`: a named tuple's class costs start-up time (more than a
    whole file's parsing), and ssh-proxy reads the file before every ssh.
    """

    __slots__ = (
        "family",
        "fwknop",
        "fwknoprc",
        "line",
        "name",
        "path",
        "retry_after",
        "secret_file",
        "source",
        "ssh_key",
        "url",
        "wait",
        "wait_timeout",
    )

    def __init__(
        self,
        name: str,
        url: knock.KnockURL | SshKnockURL,
        path: str,
        line: int,
        *,
        secret_file: str | None = None,  # for a tumbler2:// url, the file of its key
        ssh_key: str | None = None,  # for a tumbler+ssh:// url: the key file that signs
        source: str | None = None,  # `from`, already normalized
        family: int = 0,
        wait: int | None = None,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT,
        retry_after: float = DEFAULT_RETRY_AFTER,
        fwknop: FwknopURL | None = None,  # a fwknop:// url; `url` then has its host and port
        fwknoprc: str | None = None,  # the .fwknoprc holding its keys (default: ~/.fwknoprc)
    ) -> None:
        self.name = name
        self.url = url
        self.path = path
        self.line = line
        self.secret_file = secret_file
        self.ssh_key = ssh_key
        self.source = source
        self.family = family
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.retry_after = retry_after
        self.fwknop = fwknop
        self.fwknoprc = fwknoprc

    def __repr__(self) -> str:
        return f"Profile(name={self.name!r}, url={self.url!r}, at={self.path!r}:{self.line})"


class Profiles:
    """All profiles of one file, in file order, and warnings worth showing the user.

    A plain class: made once per run, and a named tuple's class costs start-up time.
    """

    __slots__ = ("path", "profiles", "warnings")

    def __init__(
        self,
        path: str,
        profiles: dict[str, Profile] | None = None,
        warnings: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        self.profiles: dict[str, Profile] = {} if profiles is None else profiles
        self.warnings = warnings

    def __repr__(self) -> str:
        shown = f"profiles={self.profiles!r}, warnings={self.warnings!r}"
        return f"Profiles(path={self.path!r}, {shown})"

    def get(self, name: str) -> Profile | None:
        return self.profiles.get(name)

    def for_host(self, host: str) -> Profile | None:
        """The first profile whose URL knocks on `host` (ssh's %h is the HostName)."""
        wanted = host.lower()
        return next((p for p in self.profiles.values() if p.url.host.lower() == wanted), None)


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """$TUMBLER_PROFILES, else $XDG_CONFIG_HOME/tumbler/hosts.conf, else ~/.config/..."""
    from pathlib import Path  # for callers that want one; the client itself takes the text

    return Path(profiles_path(environ))


def _url(text: str) -> knock.KnockURL | SshKnockURL | FwknopURL:
    try:
        if text.lower().startswith("fwknop://"):
            from tumbler.client.fwknopurl import parse_fwknop_url  # not the SPA machinery

            return parse_fwknop_url(text)
        if knock.is_ssh_url(text):
            from tumbler.client.sshurl import parse_ssh_url  # not the SSH machinery

            return parse_ssh_url(text)
        return knock.parse_url(text)
    except knock.KnockUsageError as exc:
        raise ValueError(str(exc)) from None


def _source(text: str) -> str:
    try:
        return knock.normalize_source(text)
    except knock.KnockUsageError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _family(text: str) -> int:
    if text not in _FAMILIES:
        raise ValueError(f"expected 4 or 6, got {text!r}")
    return _FAMILIES[text]


def _port(text: str) -> int:
    try:
        return parse_port(text)
    except ValueError:
        raise ValueError(f"expected a TCP port from 1 to 65535, got {text!r}") from None


def _text(text: str) -> str:
    if not text:
        raise ValueError("empty value")
    return text


_KEYS: dict[str, Callable[[str], object]] = {
    "url": _url,
    "secret_file": _text,
    "ssh_key": _text,
    "from": _source,
    "family": _family,
    "wait": _port,
    "wait_timeout": parse_duration,
    "retry_after": parse_duration,
    "fwknoprc": _text,
}


def _secret_path(ref: str, base: str) -> str:
    """`~` expands; a relative path is relative to the profile file's folder, not the cwd."""
    return os.path.join(base, os.path.expanduser(ref))  # an absolute one stays as it is


def _build(section: Section, path: str) -> Profile:
    name = section.name[len("host-") :]
    if "url" not in section:
        raise ConfigError(f"[host-{name}] has no url (tumbler://HOST[:PORT]/)", path, section.line)
    none: str | None = None
    no_port: int | None = None
    secret_file = section.get("secret_file", none)
    ssh_key = section.get("ssh_key", none)
    url: knock.KnockURL | SshKnockURL | FwknopURL = section.get("url", knock.KnockURL(""))
    rc = section.get("fwknoprc", none)
    door: knock.KnockURL | SshKnockURL = knock.KnockURL("")
    spa_url: FwknopURL | None = None
    if isinstance(url, knock.KnockURL):
        door = url
    else:  # a small module, which `_url` loaded for a tumbler+ssh:// url
        from tumbler.client.sshurl import SshKnockURL

        if isinstance(url, SshKnockURL):
            door = url
        else:
            spa_url = url
    is_ssh = not isinstance(door, knock.KnockURL)
    if is_ssh and secret_file is not None:
        raise ConfigError(
            f"[host-{name}]: a tumbler+ssh:// url is signed by an SSH key, not a secret_file",
            path,
            section.line_of("secret_file"),
        )
    if ssh_key is not None and not is_ssh:
        raise ConfigError(
            f"[host-{name}]: ssh_key is for a tumbler+ssh:// url", path, section.line_of("ssh_key")
        )
    if spa_url is not None:
        if secret_file is not None:
            raise ConfigError(
                f"[host-{name}]: an fwknop:// url takes its keys from fwknoprc, not secret_file",
                path,
                section.line_of("secret_file"),
            )
        from tumbler.client.fwknopurl import DEFAULT_PORT as SPA_PORT  # loaded by `_url`

        door = knock.KnockURL(spa_url.host, spa_url.port or SPA_PORT)
    elif rc is not None:
        raise ConfigError(
            f"[host-{name}]: fwknoprc needs an fwknop:// url", path, section.line_of("fwknoprc")
        )
    base = os.path.dirname(path)
    return Profile(
        name=name,
        url=door,
        path=path,
        line=section.line,
        secret_file=_secret_path(secret_file, base) if secret_file else None,
        ssh_key=_secret_path(ssh_key, base) if ssh_key else None,
        source=section.get("from", none),
        family=section.get("family", 0),
        wait=section.get("wait", no_port),
        wait_timeout=section.get("wait_timeout", DEFAULT_WAIT_TIMEOUT),
        retry_after=section.get("retry_after", DEFAULT_RETRY_AFTER),
        fwknop=spa_url,
        fwknoprc=_secret_path(rc, base) if rc else None,
    )


def _schema(header: str) -> Mapping[str, Callable[[str], object]] | None:
    ok = header.startswith("host-") and is_name(header[len("host-") :])
    return _KEYS if ok else None


def parse_profiles(text: str, path: str = "<profiles>") -> Profiles:
    """Parse profile text; raise ConfigError naming path and line on the first problem."""
    sections = read_sections(text, path, _schema, f"[host-NAME], {NAME_RULE}")
    profiles = {p.name: p for p in (_build(section, path) for section in sections)}
    return Profiles(path, profiles)


def load_profiles(path: str | os.PathLike[str]) -> Profiles:
    """Read and check a profile file; warn when others may read or change it.

    Others reading it learn the secret when a URL holds one; others writing it can
    send your knock (and your ssh session) elsewhere. A URL without a secret in a file
    only you can write raises no warning, whatever its read bits.
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read()
        # UTF-8 with an optional BOM, as the utf-8-sig codec reads it (without loading it);
        # line breaks are the format's own (`inifile.split_lines`).
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read profiles: {reason}", p) from None
    profiles = parse_profiles(text, p)
    warnings: list[str] = []
    secret_in_url = any(
        isinstance(pr.url, knock.KnockURL) and pr.url.secret is not None
        for pr in profiles.profiles.values()
    )
    if writable_by_others(mode):
        warnings.append(f"profile file {p} is writable by group or others; chmod 600 it")
    elif secret_in_url and readable_by_others(mode):
        warnings.append(
            f"profile file {p} holds a secret in a URL and is readable by group or "
            "others; chmod 600 it, or move the secret to a secret_file"
        )
    return Profiles(profiles.path, profiles.profiles, tuple(warnings))
