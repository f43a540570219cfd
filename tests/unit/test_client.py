"""Unit tests for the `tumbler` CLI front-end, run in-process through client.main.

Only loopback addresses are used; nothing is sent except in --dry-run-free tests that
knock on a socket the test bound itself.
"""

from __future__ import annotations

import getpass
import socket
import sys
import types

import pytest

from tumbler import __version__
from tumbler.cli import openurl
from tumbler.cli import tumbler as client
from tumbler.client import knock, sequence
from tumbler.protocols import tumbler1 as protocol

VECTOR_DIGEST = "44e0543454e4c7a7633a216671b3f5068e332bd6e7b1c13cbc69b0d91bb044cb"
SECRET = "open-pAsSwOrD"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("TUMBLER_SECRET", raising=False)


@pytest.fixture
def no_prompt(monkeypatch):
    def refuse(prompt: str = "", stream=None) -> str:
        raise AssertionError("the CLI prompted")

    monkeypatch.setattr(getpass, "getpass", refuse)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = client.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err: str, *hidden: str) -> None:
    assert err.startswith("tumbler: error: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in hidden:
        assert text not in err


def test_dry_run_test_vector_from_env(capsys, monkeypatch, no_prompt):
    monkeypatch.setenv("TUMBLER_SECRET", SECRET)
    status, out, err = run(
        capsys,
        "--open",
        "tumbler://127.0.0.1:8675/",
        "--dry-run",
        "--from",
        "192.168.0.5",
        "--at",
        "2004-11-27T15:30:59Z",
    )
    assert (status, err) == (0, "")
    assert f"datagram  TUMBLER1: {VECTOR_DIGEST}\n" in out
    assert "address   192.168.0.5 (given with --from)" in out
    assert "stamp     10410271530 (2004-11-27 15:30 UTC)" in out
    assert "target    127.0.0.1 udp/8675\n" in out
    assert "secret    from TUMBLER_SECRET" in out
    assert "nothing sent" in out
    assert SECRET not in out


def test_dry_run_secret_in_url_never_printed(capsys, no_prompt):
    status, out, err = run(
        capsys,
        "tumbler://open-pAsSwOrD@localhost/",
        "--dry-run",
        "--from",
        "192.168.0.5",
        "--at",
        "2004-11-27 15:30",  # naive: taken as UTC
    )
    assert (status, err) == (0, "")
    assert VECTOR_DIGEST in out
    assert "(localhost)" in out
    assert "secret    from the URL" in out
    assert SECRET not in out


def test_dry_run_uses_the_kernels_address(capsys, monkeypatch):
    monkeypatch.setenv("TUMBLER_SECRET", "s")
    status, out, _ = run(
        capsys, "--open", "tumbler://127.0.0.1:9/", "--dry-run", "--at", "2030-01-01T00:00Z"
    )
    assert status == 0
    assert "address   127.0.0.1 (picked by the kernel)" in out
    expected = protocol.make_knock("s", "127.0.0.1", openurl._time("2030-01-01T00:00Z"))
    assert expected.decode() in out


def test_at_with_offset_is_converted_to_utc(capsys, monkeypatch):
    monkeypatch.setenv("TUMBLER_SECRET", SECRET)
    status, out, _ = run(
        capsys,
        "tumbler://127.0.0.1/",
        "--dry-run",
        "--from",
        "192.168.0.5",
        "--at",
        "2004-11-27T16:30+01:00",
    )
    assert status == 0
    assert VECTOR_DIGEST in out


def test_send_and_verbose(capsys, monkeypatch):
    monkeypatch.setenv("TUMBLER_SECRET", "s3cret")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2)
        url = f"tumbler://127.0.0.1:{sock.getsockname()[1]}/"
        status, out, err = run(capsys, "--open", url, "-v", "--at", "2030-01-01T00:00Z")
        data = sock.recv(2048)
    assert (status, out) == (0, "")
    assert data == protocol.make_knock("s3cret", "127.0.0.1", openurl._time("2030-01-01T00:00Z"))
    assert data.decode() in err
    assert "s3cret" not in err


def test_secret_file_warning_and_precedence_over_env(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TUMBLER_SECRET", "from-env")
    path = tmp_path / "door.secret"
    path.write_text(f"{SECRET}\n")
    path.chmod(0o644)
    status, out, err = run(
        capsys,
        "tumbler://127.0.0.1/",
        "--secret-file",
        str(path),
        "--dry-run",
        "--from",
        "192.168.0.5",
        "--at",
        "2004-11-27T15:30Z",
    )
    assert status == 0
    assert VECTOR_DIGEST in out
    assert (
        err
        == f"tumbler: warning: secret file {path} is readable by group or others; chmod 600 it\n"
    )


def test_secret_file_private_no_warning(capsys, tmp_path):
    path = tmp_path / "door.secret"
    path.write_text("x\n")
    path.chmod(0o600)
    status, _, err = run(capsys, "tumbler://127.0.0.1/", "--secret-file", str(path), "--dry-run")
    assert (status, err) == (0, "")


def test_prompt_is_used_last(capsys, monkeypatch):
    prompts: list[str] = []

    def answer(prompt: str = "", stream=None) -> str:
        prompts.append(prompt)
        return SECRET

    monkeypatch.setattr(getpass, "getpass", answer)
    status, out, _ = run(
        capsys,
        "tumbler://127.0.0.1:8675/",
        "--dry-run",
        "--from",
        "192.168.0.5",
        "--at",
        "2004-11-27T15:30Z",
    )
    assert status == 0
    assert prompts == ["Secret for tumbler://127.0.0.1:8675/: "]
    assert "secret    from the prompt" in out
    assert VECTOR_DIGEST in out


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--open", "http://hunter2@host/"], 2, "bad URL: scheme http://"),
        (["--open", "tumbler://hunter2@fd00::1/"], 2, "brackets"),
        (["--open", "tumbler://hunter2@host:0/"], 2, "port"),
        (["--open", "tumbler://@127.0.0.1/"], 2, "empty secret"),
        (["--open", "tumbler://hunter2@127.0.0.1/", "--from", "nat-box"], 2, "--from"),
        (["tumbler://hunter2@127.0.0.1/", "--open", "tumbler://127.0.0.1/"], 2, "once"),
        ([], 2, "nothing to do"),
        (["--bogus", "tumbler://hunter2@127.0.0.1/"], 2, "unrecognized arguments: --bogus"),
        (["a", "tumbler://hunter2@127.0.0.1/"], 2, "unrecognized arguments: tumbler://***@"),
        (["--open"], 2, "expected one argument"),
        (["--open", "tumbler://hunter2@127.0.0.1/", "--at", "yesterday"], 2, "ISO 8601"),
        (["--open", "tumbler://hunter2@127.0.0.1/", "-4", "-6"], 2, "not allowed with"),
        (["--open", "tumbler://hunter2@127.0.0.1/", "-6"], 1, "cannot resolve 127.0.0.1 as IPv6"),
        (["--open", "tumbler://127.0.0.1/", "--secret-file", "/nonexistent/x"], 1, "cannot read"),
    ],
)
def test_errors_are_one_line_with_status(capsys, argv, status, message, no_prompt):
    got, out, err = run(capsys, *argv)
    assert got == status
    assert out == ""
    assert_one_line_error(err, "hunter2")
    assert message in err


def test_empty_env_secret_is_an_error(capsys, monkeypatch, no_prompt):
    monkeypatch.setenv("TUMBLER_SECRET", "")
    status, _, err = run(capsys, "tumbler://127.0.0.1/")
    assert status == 2
    assert_one_line_error(err)
    assert "empty secret from TUMBLER_SECRET" in err


def test_unresolvable_host_fails_before_asking(capsys, monkeypatch, no_prompt):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(knock.socket, "getaddrinfo", fail)
    status, _, err = run(capsys, "--open", "tumbler://no.such.host/")
    assert status == 1
    assert_one_line_error(err)
    assert "cannot resolve no.such.host" in err


def test_keyboard_interrupt_at_prompt(capsys, monkeypatch):
    def interrupt(prompt: str = "", stream=None) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(getpass, "getpass", interrupt)
    status, _, _ = run(capsys, "tumbler://127.0.0.1/")
    assert status == 130


def test_version(capsys):
    status, out, _ = run(capsys, "--version")
    assert (status, out) == (0, f"tumbler {__version__}\n")


def test_help_reads_well(capsys):
    status, out, _ = run(capsys, "--help")
    assert status == 0
    assert out.startswith("usage: tumbler [--open] URL")
    for text in (
        "--secret-file FILE",
        "--from ADDR",
        "--dry-run",
        "TUMBLER_SECRET",
        "examples:",
        "tumbler --open tumbler://host.example.org/",
        "tumbler://[fd00::1]/",
        "knock ",
        "sniff ",
        "%40",
    ):
        assert text in out
    assert "%%" not in out
    assert "--at" not in out  # hidden, for tests


def test_knock_help(capsys):
    status, out, _ = run(capsys, "knock", "--help")
    assert status == 0
    assert out.startswith("usage: tumbler knock")
    assert "--delay MS" in out
    assert "default 100" in out
    assert "examples:" in out


def test_knock_dry_run(capsys):
    status, out, err = run(capsys, "knock", "--dry-run", "127.0.0.1", "42", "udp/196", "69:udp")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "knock 1/3: tcp/42 -> 127.0.0.1 (dry run)",
        "knock 2/3: udp/196 -> 127.0.0.1 (dry run)",
        "knock 3/3: udp/69 -> 127.0.0.1 (dry run)",
    ]


def test_knock_udp_default(capsys):
    status, out, _ = run(capsys, "knock", "--dry-run", "-u", "127.0.0.1", "42", "tcp/43")
    assert status == 0
    assert "udp/42" in out
    assert "tcp/43" in out


def test_knock_sends_verbose(capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(2)
        port = udp.getsockname()[1]
        status, out, err = run(capsys, "knock", "-v", "--delay", "0", "127.0.0.1", f"udp/{port}")
        assert udp.recv(10) == sequence.UDP_KNOCK_PAYLOAD
    assert (status, err) == (0, "")
    assert out == f"knock 1/1: udp/{port} -> 127.0.0.1: sent\n"


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["knock", "127.0.0.1"], 2, "required: PORT"),
        (["knock", "127.0.0.1", "0"], 2, "bad knock port '0'"),
        (["knock", "127.0.0.1", "icmp/3"], 2, "bad knock port"),
        (["knock", "--delay", "-5", "127.0.0.1", "42"], 2, "delay"),
        (["knock", "--delay", "soon", "127.0.0.1", "42"], 2, "delay"),
        (["knock", "-6", "127.0.0.1", "42"], 1, "cannot resolve"),
    ],
)
def test_knock_errors(capsys, argv, status, message):
    got, _, err = run(capsys, *argv)
    assert got == status
    assert_one_line_error(err)
    assert message in err


def test_sniff_is_dispatched_lazily(capsys, monkeypatch):
    calls: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        calls.append(argv)
        return 7

    module = types.ModuleType("tumbler.cli.sniff")
    module.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tumbler.cli.sniff", module)
    assert client.main(["sniff", "--json", "capture.pcap"]) == 7
    assert calls == [["--json", "capture.pcap"]]


def test_sniff_missing_is_one_line(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tumbler.cli.sniff", None)  # import raises ModuleNotFoundError
    status, _, err = run(capsys, "sniff")
    assert status == 1
    assert_one_line_error(err)
    assert "not available" in err


def test_every_command_has_a_summary_and_loader():
    assert {"knock", "sniff"} <= set(client.COMMANDS)
    for name, command in client.COMMANDS.items():
        assert command.summary, name
        assert callable(command.load)
