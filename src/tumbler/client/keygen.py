"""What `tumbler keygen` makes: a v2 key, and the text each side needs to use it.

The server gets a door stanza holding the key (or the key derived from a passphrase:
the server never stores the passphrase); the client gets a `tumbler2://KEY@HOST/` URL,
shown as a QR code for a phone when asked. Nothing here prints.
"""

from __future__ import annotations

import io
import secrets
import urllib.parse

from tumbler.protocols import tumbler2

SCHEME2 = "tumbler2"


def new_key() -> bytes:
    """A fresh random 256-bit key from the system's cryptographic generator."""
    return secrets.token_bytes(tumbler2.KEY_LEN)


def client_url(key: bytes | None, host: str, port: int | None = None, realm: str = "") -> str:
    """`tumbler2://[KEY@]HOST[:PORT]/[?realm=REALM]`; an IPv6 host goes in brackets."""
    shown = f"[{host}]" if ":" in host else host
    if port is not None:
        shown += f":{port}"
    query = f"?realm={urllib.parse.quote(realm, safe='')}" if realm else ""
    userinfo = f"{tumbler2.encode_key(key)}@" if key is not None else ""
    return f"{SCHEME2}://{userinfo}{shown}/{query}"


def door_stanza(key: bytes, door: str, open_spec: str, realm: str = "") -> str:
    """The lines a server's config needs for a v2 door opening `open_spec`."""
    lines = []
    if realm:
        lines += ["[common]", f"   realm = {realm}", ""]
    lines += [
        f"[door-{door}]",
        "   protocol = 2",
        f"   key = {tumbler2.encode_key(key)}",
        f"   open = {open_spec}",
    ]
    return "\n".join(lines) + "\n"


def qr_text(text: str) -> str:
    """`text` as a QR code drawn with block characters, for a terminal (the `qr` extra)."""
    import segno  # optional extra: imported only when a QR code is asked for

    out = io.StringIO()
    segno.make(text, error="m").terminal(out=out, compact=True)
    return out.getvalue()
