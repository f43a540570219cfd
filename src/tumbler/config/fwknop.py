"""Doors of fwknop kind in tumblerd's config: the keys an access.conf stanza would name.

[door-ssh]
   kind = fwknop
   fwknop_key_base64 = ...            # or fwknop_key = a passphrase
   fwknop_hmac_key_base64 = ...       # or fwknop_hmac_key; required unless allowed below
   fwknop_hmac_digest = sha256        # md5 sha1 sha256 sha384 sha512 sha3_256 sha3_512
   fwknop_mode = cbc                  # cbc ctr cfb ofb ecb legacy
   open = tcp/22                      # every port a packet asks for must be in here
   timeout = 30s                      # FW_ACCESS_TIMEOUT
   fwknop_max_timeout = 300           # MAX_FW_TIMEOUT: the most a client's timeout gets
   fwknop_max_age = 120               # MAX_SPA_PACKET_AGE, seconds either side
   fwknop_require_source = no         # REQUIRE_SOURCE_ADDRESS: refuse 0.0.0.0
   fwknop_require_user = alice        # REQUIRE_USERNAME
   fwknop_source = 10.0.0.0/8         # SOURCE (default: any)
   fwknop_allow_no_hmac = no          # yes: accept packets without HMAC (with a warning)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import cast

from tumbler.config.inifile import Section
from tumbler.doors import DEFAULT_OPEN_TIMEOUT
from tumbler.errors import ConfigError
from tumbler.ports import PortSpec
from tumbler.protocols.fwknop import HMAC_DIGESTS, MODES, FwknopDoor, SpaKeys, decode_key
from tumbler.protocols.fwknop_access import parse_sources

DEFAULT_PORT = 62201
KINDS = ("tumbler", "fwknop")
# Keys that hold key material: the config file then deserves chmod 600.
SECRET_KEYS = ("fwknop_key", "fwknop_key_base64", "fwknop_hmac_key", "fwknop_hmac_key_base64")


def _text(text: str) -> str:
    if not text:
        raise ValueError("empty value")
    return text


def _key_b64(text: str) -> bytes:
    return decode_key(text, "the value")


def _one_of(options: tuple[str, ...] | list[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _seconds(hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= hi:
            raise ValueError(f"expected whole seconds from 1 to {hi}")
        return int(text)

    return parse


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("yes", "no"):
        raise ValueError("expected yes or no")
    return value == "yes"


def _sources(text: str) -> tuple[object, ...]:
    return parse_sources(text)


DOOR_KEYS: Mapping[str, Callable[[str], object]] = {
    "kind": _one_of(KINDS),
    "fwknop_key": _text,
    "fwknop_key_base64": _key_b64,
    "fwknop_hmac_key": _text,
    "fwknop_hmac_key_base64": _key_b64,
    "fwknop_hmac_digest": _one_of(list(HMAC_DIGESTS)),
    "fwknop_mode": _one_of(MODES),
    "fwknop_max_timeout": _seconds(86400 * 7),
    "fwknop_max_age": _seconds(100000),
    "fwknop_require_source": _yes_no,
    "fwknop_require_user": _text,
    "fwknop_source": _sources,
    "fwknop_allow_no_hmac": _yes_no,
}


def _fwknop_keys(section: Section) -> list[str]:
    return [k for k in section.values if k.startswith("fwknop_")]


def check_not_fwknop(section: Section, name: str, path: str) -> None:
    """A door of another kind may not carry fwknop keys (a missing `kind = fwknop`)."""
    stray = _fwknop_keys(section)
    if stray:
        raise ConfigError(
            f"door {name}: {stray[0]} needs kind = fwknop", path, section.line_of(stray[0])
        )


def fwknop_door(section: Section, name: str, path: str) -> tuple[FwknopDoor, list[str]]:
    """The checked fwknop door of a `kind = fwknop` section, and warnings worth logging."""
    has = section.values.__contains__
    for key in (
        "secret",
        "secret_file",
        "key",
        "key_file",
        "authorized_keys",
        "protocol",
        "sequence",
        "sequence_timeout",
    ):
        if has(key):
            raise ConfigError(
                f"door {name}: an fwknop door has keys, not a {key}", path, section.line_of(key)
            )
    if has("fwknop_key") == has("fwknop_key_base64"):
        raise ConfigError(
            f"door {name}: give fwknop_key_base64 (or fwknop_key), exactly one", path, section.line
        )
    if has("fwknop_hmac_key") and has("fwknop_hmac_key_base64"):
        raise ConfigError(
            f"door {name}: give fwknop_hmac_key_base64 or fwknop_hmac_key, not both",
            path,
            section.line_of("fwknop_hmac_key"),
        )
    if not has("open"):
        raise ConfigError(f"door {name}: an fwknop door needs `open`", path, section.line)
    allow_plain = section.get("fwknop_allow_no_hmac", False)
    has_hmac = has("fwknop_hmac_key") or has("fwknop_hmac_key_base64")
    warnings = []
    if not has_hmac and not allow_plain:
        raise ConfigError(
            f"door {name}: no fwknop_hmac_key_base64; without an HMAC every packet costs a "
            "decryption (set fwknop_allow_no_hmac = yes to accept that)",
            path,
            section.line,
        )
    if not has_hmac:
        warnings.append(
            f"door {name} accepts fwknop packets without an HMAC: each one costs a decryption"
        )
    key_line = section.line_of("fwknop_key" if has("fwknop_key") else "fwknop_key_base64")
    raw_key = section.get("fwknop_key", cast(str | None, None))
    raw_mac = section.get("fwknop_hmac_key", cast(str | None, None))
    try:
        keys = SpaKeys(
            raw_key.encode() if raw_key is not None else section.get("fwknop_key_base64", b""),
            raw_mac.encode()
            if raw_mac is not None
            else section.get("fwknop_hmac_key_base64", None),
            section.get("fwknop_hmac_digest", "sha256"),
            section.get("fwknop_mode", "cbc"),
        )
    except ValueError as exc:
        raise ConfigError(f"door {name}: {exc}", path, key_line) from None
    try:
        door = FwknopDoor(
            name=name,
            keys=keys,
            open_ports=section.get("open", cast(tuple[PortSpec, ...], ())),
            timeout=max(1, math.ceil(section.get("timeout", DEFAULT_OPEN_TIMEOUT))),
            max_timeout=section.get("fwknop_max_timeout", 300),
            max_age=section.get("fwknop_max_age", 120),
            require_source_address=section.get("fwknop_require_source", False),
            require_username=section.get("fwknop_require_user", cast(str | None, None)),
            sources=section.get("fwknop_source", ()),
        )
    except ValueError as exc:
        raise ConfigError(f"door {name}: {exc}", path, section.line) from None
    return door, warnings
