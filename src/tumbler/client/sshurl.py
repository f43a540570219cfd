"""`tumbler+ssh://[USER@]HOST[:PORT]/[?realm=REALM]`: the URL of a door that takes signed knocks.

Apart from `client.signed` (the SSH machinery that signs) so that a profile file naming
such a door is read without loading it: ssh-proxy reads the file before every ssh, and
loads the machinery only when the door it knocks on is a signed one.
"""

from __future__ import annotations

from tumbler.client import knock
from tumbler.protocols import tumbler1 as protocol
from tumbler.records import NamedTuple

SCHEME = knock.SSH_SCHEME
URL_SHAPE = "tumbler+ssh://[USER@]HOST[:PORT]/[?realm=REALM]"


class SshKnockURL(NamedTuple):
    """A parsed `tumbler+ssh://[USER@]HOST[:PORT]/[?realm=REALM]`.

    USER is only shown (as in ssh://): the key that signs says who knocks. The realm is
    the server's (`realm` in its [common]), bound into the signature.
    """

    host: str
    port: int = protocol.DEFAULT_PORT
    user: str | None = None
    realm: str = ""

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        user = f"{self.user}@" if self.user else ""
        query = f"?realm={knock._quote(self.realm)}" if self.realm else ""
        return f"{SCHEME}://{user}{host}:{self.port}/{query}"


is_ssh_url = knock.is_ssh_url


def parse_ssh_url(text: str) -> SshKnockURL:
    """Parse a signed-knock URL; errors say what is wrong and the expected shape."""
    text = text.strip()
    if not is_ssh_url(text):
        raise knock.KnockUsageError(f"bad URL: expected {URL_SHAPE}")
    rest = text[len(SCHEME) + 3 :]
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    path, mark, query = tail.partition("?")
    realm = ""
    if mark:
        name, eq, value = query.partition("=")
        if name != "realm" or not eq or "&" in value or "#" in value:
            raise knock.KnockUsageError(f"bad URL: the only query is ?realm=REALM ({URL_SHAPE})")
        try:
            realm = knock._unquote(value)
        except UnicodeDecodeError:
            raise knock.KnockUsageError("bad URL: the realm's %-escapes are not UTF-8") from None
        if realm:
            from tumbler.protocols.sshsig import REALM_MAX  # only for a URL with a realm

            if len(realm.encode("utf-8")) > REALM_MAX:
                raise knock.KnockUsageError(f"bad URL: realm longer than {REALM_MAX} bytes")
        tail = path
    if tail not in ("", "/"):
        raise knock.KnockUsageError(f"bad URL: nothing may follow HOST:PORT/ ({URL_SHAPE})")
    user, at, hostport = authority.rpartition("@")
    if at and not user:
        raise knock.KnockUsageError(f"bad URL: empty user before '@' ({URL_SHAPE})")
    try:
        host, port = knock._split_hostport(hostport)
    except knock.KnockUsageError as exc:
        raise knock.KnockUsageError(str(exc).replace(knock.URL_SHAPE, URL_SHAPE)) from None
    return SshKnockURL(host, port, user or None, realm)
