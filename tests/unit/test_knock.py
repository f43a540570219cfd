"""Unit tests for tumbler.client.knock: URL parsing, secret resolution, address choice, sending.

Network use is loopback only: sockets bound on 127.0.0.1 / ::1 by the test itself.
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.loopback import HAVE_IPV6
from tumbler.client import knock, sequence
from tumbler.client.knock import KnockError, KnockOptions, KnockURL, KnockUsageError, parse_url
from tumbler.ports import PortSpec
from tumbler.protocols import tumbler1 as protocol

VECTOR_WHEN = datetime(2004, 11, 27, 15, 30, 42, tzinfo=UTC)
VECTOR_ADDRESS = "192.168.0.5"
VECTOR_SECRET = "open-pAsSwOrD"
VECTOR_DIGEST = "44e0543454e4c7a7633a216671b3f5068e332bd6e7b1c13cbc69b0d91bb044cb"


needs_ipv6 = pytest.mark.skipif(not HAVE_IPV6, reason="no IPv6 loopback here")


@pytest.fixture
def udp4():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        yield sock


# --- URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "host", "port", "secret"),
    [
        ("tumbler://open-pAsSwOrD@host:8675/", "host", 8675, "open-pAsSwOrD"),
        ("tumbler://host:8675/", "host", 8675, None),
        ("tumbler://host/", "host", 8675, None),
        ("tumbler://host", "host", 8675, None),
        ("tumbler://host:/", "host", 8675, None),
        ("tumbler://s@192.0.2.7:1/", "192.0.2.7", 1, "s"),
        ("tumbler://s@host.example.org.:65535/", "host.example.org.", 65535, "s"),
        ("TUMBLER://s@Host/", "Host", 8675, "s"),
        ("  tumbler://s@host/\n", "host", 8675, "s"),
        ("tumbler://[fd00::1]:8675/", "fd00::1", 8675, None),
        ("tumbler://[fd00::1]/", "fd00::1", 8675, None),
        ("tumbler://sec@[::1]:9/", "::1", 9, "sec"),
        ("tumbler://[fe80::1%25eth0]:9/", "fe80::1%eth0", 9, None),
        ("tumbler://[::ffff:192.0.2.7]/", "::ffff:192.0.2.7", 8675, None),
    ],
)
def test_parse_url_good(text, host, port, secret):
    url = parse_url(text)
    assert (url.host, url.port, url.secret) == (host, port, secret)


@pytest.mark.parametrize(
    ("encoded", "secret"),
    [
        ("a%40b", "a@b"),
        ("a%3Ab", "a:b"),
        ("a%3ab", "a:b"),
        ("p%2Fq%3Fr%23s", "p/q?r#s"),
        ("100%25", "100%"),
        ("caf%C3%A9", "café"),
        ("a+b", "a+b"),  # a plus is a plus, not a space, outside query strings
        ("user:pass", "user:pass"),  # an unencoded colon is part of the secret
        ("a@b", "a@b"),  # the host starts after the last @
        ("%20lead", " lead"),
    ],
)
def test_parse_url_percent_decodes_the_secret(encoded, secret):
    url = parse_url(f"tumbler://{encoded}@[fd00::1]:4242/")
    assert url.secret == secret
    assert (url.host, url.port) == ("fd00::1", 4242)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("http://host/", "scheme"),
        ("tumblr://host/", "scheme"),
        ("host:8675", "://"),
        ("tumbler:/host", "://"),
        ("", "://"),
        ("tumbler:///", "no host"),
        ("tumbler://s@/", "no host"),
        ("tumbler://s@:8675/", "no host"),
        ("tumbler://fd00::1/", "brackets"),
        ("tumbler://fd00::1:8675/", "brackets"),
        ("tumbler://[fd00::1/", "]"),
        ("tumbler://[fd00::1]x/", "]"),
        ("tumbler://[192.0.2.7]/", "IPv6"),
        ("tumbler://[nothost]/", "IPv6"),
        ("tumbler://host:0/", "port"),
        ("tumbler://host:65536/", "port"),
        ("tumbler://host:-1/", "port"),
        ("tumbler://host:http/", "port"),
        ("tumbler://host:\uff18\uff16/", "port"),  # full-width digits
        ("tumbler://host:86 /", "port"),
        ("tumbler://host/door", "follow"),
        ("tumbler://host/?x=1", "follow"),
        ("tumbler://host#frag", "follow"),
        ("tumbler://ho st/", "host name"),
        ("tumbler://-host/", "host name"),
        ("tumbler://hôst/", "host name"),
        ("tumbler://@host/", "empty secret"),
        ("tumbler://a%zzb@host/", "escape"),
        ("tumbler://ab%4@host/", "escape"),
        ("tumbler://a%FFb@host/", "UTF-8"),
    ],
)
def test_parse_url_bad(text, why):
    with pytest.raises(KnockUsageError, match="bad URL") as info:
        parse_url(text)
    assert why in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "http://hunter2hunter2@host/",
        "tumbler://hunter2hunter2@host:99999/",
        "tumbler://hunter2hunter2@fd00::1/",
        "tumbler://hunter2hunter2@host/extra",
        "tumbler://hunter2hunter2%zz@host/",
        "tumbler://hunter2hunter2@ho st/",
    ],
)
def test_bad_url_errors_never_show_the_secret(text):
    with pytest.raises(KnockUsageError) as info:
        parse_url(text)
    assert "hunter2" not in str(info.value)


def test_url_repr_and_str_hide_the_secret():
    url = parse_url("tumbler://hunter2@[fd00::1]:9/")
    assert "hunter2" not in repr(url)
    assert str(url) == "tumbler://[fd00::1]:9/"
    assert str(KnockURL("host")) == "tumbler://host:8675/"
    assert str(parse_url("tumbler://[fe80::1%25eth0]/")) == "tumbler://[fe80::1%25eth0]:8675/"


# --- secret --------------------------------------------------------------------------


def _no_prompt(label: str) -> str:
    raise AssertionError(f"prompted for {label}")


def _secret_file(tmp_path, content: bytes, mode: int = 0o600):
    path = tmp_path / "secret"
    path.write_bytes(content)
    path.chmod(mode)
    return str(path)


def test_secret_precedence_url_first(tmp_path):
    warnings: list[str] = []
    got = knock.resolve_secret(
        parse_url("tumbler://from-url@host/"),
        secret_file=_secret_file(tmp_path, b"from-file\n"),
        environ={"TUMBLER_SECRET": "from-env"},
        prompt=_no_prompt,
        warn=warnings.append,
    )
    assert (got.value, got.origin) == ("from-url", "the URL")
    assert warnings == ["the URL holds a secret; --secret-file is ignored"]


def test_secret_precedence_file_before_env(tmp_path):
    path = _secret_file(tmp_path, b"from-file\n")
    got = knock.resolve_secret(
        parse_url("tumbler://host/"),
        secret_file=path,
        environ={"TUMBLER_SECRET": "from-env"},
        prompt=_no_prompt,
    )
    assert (got.value, got.origin) == ("from-file", f"--secret-file {path}")


def test_secret_precedence_env_before_prompt():
    got = knock.resolve_secret(
        parse_url("tumbler://host/"), environ={"TUMBLER_SECRET": "from-env"}, prompt=_no_prompt
    )
    assert (got.value, got.origin) == ("from-env", "TUMBLER_SECRET")
    assert "from-env" not in repr(got)


def test_secret_prompt_last_and_label_without_secret():
    labels: list[str] = []

    def prompt(label: str) -> str:
        labels.append(label)
        return "typed"

    got = knock.resolve_secret(parse_url("tumbler://[::1]:9/"), environ={}, prompt=prompt)
    assert (got.value, got.origin) == ("typed", "the prompt")
    assert labels == ["tumbler://[::1]:9/"]


def test_secret_nothing_and_no_prompt():
    with pytest.raises(KnockUsageError, match="no secret"):
        knock.resolve_secret(parse_url("tumbler://host/"), environ={}, prompt=None)


@pytest.mark.parametrize(
    ("kwargs", "origin"),
    [
        ({"environ": {"TUMBLER_SECRET": ""}}, "TUMBLER_SECRET"),
        ({"environ": {}, "prompt": lambda label: ""}, "the prompt"),
    ],
)
def test_secret_empty_is_an_error_not_a_fallthrough(kwargs, origin):
    with pytest.raises(KnockUsageError, match=f"empty secret from {origin}"):
        knock.resolve_secret(parse_url("tumbler://host/"), **kwargs)


def test_secret_file_empty_is_an_error(tmp_path):
    path = _secret_file(tmp_path, b"\nsecond line\n")
    with pytest.raises(KnockUsageError, match="empty secret from --secret-file"):
        knock.resolve_secret(parse_url("tumbler://host/"), secret_file=path, environ={})


@pytest.mark.parametrize(
    ("content", "secret"),
    [
        (b"s3cret\n", "s3cret"),
        (b"s3cret", "s3cret"),
        (b"s3cret\r\n", "s3cret"),
        (b"s3cret\nsecond line\n", "s3cret"),
        (b" spaced secret \n", " spaced secret "),
        ("café\n".encode(), "café"),
    ],
)
def test_read_secret_file_first_line(tmp_path, content, secret):
    assert knock.read_secret_file(_secret_file(tmp_path, content)) == secret


@pytest.mark.parametrize(
    ("mode", "warned"), [(0o600, False), (0o400, False), (0o640, True), (0o604, True)]
)
def test_read_secret_file_warns_when_others_can_read(tmp_path, mode, warned):
    warnings: list[str] = []
    knock.read_secret_file(_secret_file(tmp_path, b"s3cret\n", mode), warn=warnings.append)
    assert bool(warnings) is warned
    assert all("s3cret" not in w and "readable by group or others" in w for w in warnings)


def test_read_secret_file_from_a_pipe():
    read_end, write_end = os.pipe()
    os.write(write_end, b"piped\n")
    os.close(write_end)
    try:
        assert knock.read_secret_file(f"/dev/fd/{read_end}", warn=_no_prompt) == "piped"
    finally:
        os.close(read_end)


def test_read_secret_file_missing(tmp_path):
    with pytest.raises(KnockError, match="cannot read secret file") as info:
        knock.read_secret_file(str(tmp_path / "absent"))
    assert not isinstance(info.value, KnockUsageError)


def test_read_secret_file_not_utf8(tmp_path):
    with pytest.raises(KnockUsageError, match="not UTF-8"):
        knock.read_secret_file(_secret_file(tmp_path, b"\xff\xfe\n"))


def test_read_secret_file_too_long(tmp_path):
    with pytest.raises(KnockUsageError, match="over 4096 bytes"):
        knock.read_secret_file(_secret_file(tmp_path, b"x" * 5000))
    assert knock.read_secret_file(_secret_file(tmp_path, b"x" * 4096 + b"\n")) == "x" * 4096


def test_prompt_refuses_without_a_terminal(monkeypatch):
    def fallback(prompt: str = "", stream=None) -> str:
        import warnings

        warnings.warn("Can not control echo", getpass.GetPassWarning, stacklevel=1)
        return "echoed"

    monkeypatch.setattr(getpass, "getpass", fallback)
    with pytest.raises(KnockUsageError, match="no terminal"):
        knock.prompt_secret("tumbler://host:8675/")


def test_prompt_eof(monkeypatch):
    def eof(prompt: str = "", stream=None) -> str:
        raise EOFError

    monkeypatch.setattr(getpass, "getpass", eof)
    with pytest.raises(KnockUsageError, match="no secret entered"):
        knock.prompt_secret("tumbler://host:8675/")


# --- addresses and knocks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normal"),
    [("192.168.0.5", "192.168.0.5"), ("FD00::0:1", "fd00::1"), ("::ffff:10.0.0.1", "10.0.0.1")],
)
def test_normalize_source(given, normal):
    assert knock.normalize_source(given) == normal


@pytest.mark.parametrize("bad", ["", "host", "300.1.1.1", "192.168.0.5/24"])
def test_normalize_source_bad(bad):
    with pytest.raises(KnockUsageError, match="--from"):
        knock.normalize_source(bad)


def test_local_address_ipv4():
    assert knock.local_address("127.0.0.1", 9) == "127.0.0.1"


@needs_ipv6
def test_local_address_ipv6():
    assert knock.local_address("::1", 9) == "::1"


def test_build_knock_test_vector():
    result = knock.build_knock(
        "127.0.0.1", 9, VECTOR_SECRET, KnockOptions(source=VECTOR_ADDRESS, when=VECTOR_WHEN)
    )
    assert result.stamp == "10410271530"
    assert result.digest == VECTOR_DIGEST
    assert result.datagram == b"TUMBLER1: " + VECTOR_DIGEST.encode()
    assert (result.address, result.address_given) == (VECTOR_ADDRESS, True)
    assert (result.target, result.port, result.sent) == ("127.0.0.1", 9, False)
    assert VECTOR_SECRET not in repr(result)


def test_build_knock_uses_the_kernels_address():
    result = knock.build_knock("127.0.0.1", 9, "s", KnockOptions(when=VECTOR_WHEN))
    assert (result.address, result.address_given) == ("127.0.0.1", False)
    assert result.datagram == protocol.make_knock("s", "127.0.0.1", VECTOR_WHEN)


def test_build_knock_refuses_empty_secret():
    with pytest.raises(KnockUsageError, match="empty secret"):
        knock.build_knock("127.0.0.1", 9, "")


def test_send_knock_reaches_a_loopback_socket(udp4):
    port = udp4.getsockname()[1]
    before = datetime.now(UTC)
    result = knock.send_knock("127.0.0.1", port, "s3cret")
    data, peer = udp4.recvfrom(2048)
    assert result.sent
    assert data == result.datagram
    assert peer[0] == result.address == "127.0.0.1"
    assert protocol.parse_datagram(data) == result.digest
    assert result.when >= before
    assert data == protocol.make_knock("s3cret", "127.0.0.1", result.when)


@needs_ipv6
def test_send_knock_over_ipv6_with_family():
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.bind(("::1", 0))
        sock.settimeout(2)
        when = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
        result = knock.send_knock(
            "::1", sock.getsockname()[1], "s3cret", KnockOptions(when=when, family=socket.AF_INET6)
        )
        data, peer = sock.recvfrom(2048)
    assert data == protocol.make_knock("s3cret", "::1", when)
    assert peer[0] == result.address == result.target == "::1"


def test_resolve_failure_is_a_runtime_error(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(knock.socket, "getaddrinfo", fail)
    with pytest.raises(KnockError, match="cannot resolve nowhere: Name or service") as info:
        knock.send_knock("nowhere", 9, "s")
    assert not isinstance(info.value, KnockUsageError)


def test_resolve_with_wrong_family():
    with pytest.raises(KnockError, match=r"cannot resolve 127\.0\.0\.1 as IPv6"):
        knock.resolve("127.0.0.1", 9, family=socket.AF_INET6)


def test_knock_url_dry_run_sends_nothing(udp4):
    port = udp4.getsockname()[1]
    url = parse_url(f"tumbler://127.0.0.1:{port}/")
    result = knock.knock_url(url, "s", dry_run=True)
    assert not result.sent
    udp4.settimeout(0.05)
    with pytest.raises(TimeoutError):
        udp4.recv(2048)


# --- classic sequences -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("42", PortSpec("tcp", 42, 42)),
        ("tcp/42", PortSpec("tcp", 42, 42)),
        ("UDP/500", PortSpec("udp", 500, 500)),
        ("500:udp", PortSpec("udp", 500, 500)),
        ("500:tcp", PortSpec("tcp", 500, 500)),
    ],
)
def test_parse_knock_port(text, spec):
    assert sequence.parse_knock_port(text) == spec


def test_parse_knock_port_default_udp():
    assert sequence.parse_knock_port("7", "udp") == PortSpec("udp", 7, 7)


@pytest.mark.parametrize("bad", ["0", "65536", "x", "icmp/3", "tcp/1-5", "", "500:", ":udp"])
def test_parse_knock_port_bad(bad):
    with pytest.raises(KnockUsageError, match="bad knock port"):
        sequence.parse_knock_port(bad)


def test_send_sequence_reaches_tcp_and_udp_in_order():
    with (
        socket.create_server(("127.0.0.1", 0)) as tcp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed,
    ):
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(2)
        tcp.settimeout(2)
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()  # a port nobody listens on: the TCP knock gets a RST
        specs = [
            PortSpec("tcp", tcp.getsockname()[1], tcp.getsockname()[1]),
            PortSpec("udp", udp.getsockname()[1], udp.getsockname()[1]),
            PortSpec("tcp", closed_port, closed_port),
        ]
        seen: list[sequence.SequenceKnock] = []
        pauses: list[float] = []
        done = sequence.send_sequence(
            "127.0.0.1", specs, delay=0.2, on_knock=seen.append, sleep=pauses.append
        )
        conn, _ = tcp.accept()
        conn.close()
        assert udp.recv(100) == sequence.UDP_KNOCK_PAYLOAD
    assert done == seen
    assert [k.spec for k in done] == specs
    assert [k.position for k in done] == [0, 1, 2]
    assert {k.target for k in done} == {"127.0.0.1"}
    assert [k.outcome for k in done] == ["answered", "sent", "refused"]
    assert len(pauses) == 2  # between knocks, none after the last
    assert all(0 < p <= 0.2 for p in pauses)


def test_send_sequence_zero_delay_never_sleeps():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
        specs = [PortSpec("udp", port, port)] * 3
        done = sequence.send_sequence("127.0.0.1", specs, delay=0, sleep=_no_prompt)
        udp.settimeout(2)
        assert [udp.recv(10) for _ in specs] == [sequence.UDP_KNOCK_PAYLOAD] * 3
    assert len(done) == 3


def test_send_sequence_refuses_nothing_and_negative_delay():
    with pytest.raises(KnockUsageError, match="no ports"):
        sequence.send_sequence("127.0.0.1", [])
    with pytest.raises(KnockUsageError, match="negative"):
        sequence.send_sequence("127.0.0.1", [PortSpec("udp", 9, 9)], delay=-1)


@needs_ipv6
def test_send_sequence_ipv6():
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as tcp:
        tcp.settimeout(2)
        port = tcp.getsockname()[1]
        done = sequence.send_sequence("::1", [PortSpec("tcp", port, port)], delay=0)
        conn, peer = tcp.accept()
        conn.close()
    assert peer[0] == "::1"
    assert done[0].target == "::1"


@settings(max_examples=2000)
@given(st.text(alphabet="aZ09_.-%:é ", max_size=12))
def test_host_name_rule_is_the_pattern_it_replaced(host: str) -> None:
    pattern = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?\Z")
    assert knock._host_name(host) == bool(pattern.match(host))
