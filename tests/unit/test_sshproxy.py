"""The ssh-proxy engine with a fake clock and sender: minutes of retries, dialling, relay."""

from __future__ import annotations

import os
import socket
import threading
from datetime import UTC, datetime, timedelta

from tumbler.client.sshproxy import OFFSETS, Dialer, MinuteKnocker, knock_until_open, relay
from tumbler.protocols import tumbler1 as protocol

T0 = datetime(2004, 11, 27, 15, 30, 10, tzinfo=UTC)


class FakeClock:
    """One clock for both the wall time (minute stamps) and monotonic seconds."""

    def __init__(self, start: datetime = T0) -> None:
        self.start = start.timestamp()
        self.seconds = 0.0

    def now(self) -> float:
        return self.start + self.seconds

    def monotonic(self) -> float:
        return self.seconds


def knocker_with(clock: FakeClock) -> tuple[MinuteKnocker, list[str]]:
    """A knocker whose sends record the digest a real client would put on the wire."""
    digests: list[str] = []

    def send(when: float) -> None:
        stamp = protocol.stamp_for_minute(int(when // 60))
        digests.append(protocol.knock_digest(stamp, "192.0.2.1", "s"))

    return MinuteKnocker(send=send, clock=clock.now), digests


def test_minutes_are_now_then_next_then_previous_then_none() -> None:
    clock = FakeClock()
    knocker, digests = knocker_with(clock)
    assert [knocker.knock() for _ in range(4)] == [0, 1, -1, None]
    assert [stamp for _, stamp in knocker.sent] == ["10410271530", "10410271531", "10410271529"]
    assert len(set(digests)) == len(digests) == 3


def test_a_new_minute_is_fresh_but_no_stamp_is_ever_sent_twice() -> None:
    clock = FakeClock()
    knocker, digests = knocker_with(clock)
    assert knocker.knock() == 0  # 15:30
    clock.seconds = 45
    assert knocker.knock() == 1  # 15:31
    clock.seconds = 65  # now 15:31: 15:31 was sent, 15:32 is fresh
    assert knocker.knock() == 1
    assert knocker.knock() is None  # 15:30 and 15:31 were both sent already
    clock.seconds = 125  # 15:32: now was sent, 15:33 is fresh
    assert knocker.knock() == 1
    assert knocker.knock() is None
    stamps = [stamp for _, stamp in knocker.sent]
    assert stamps == ["10410271530", "10410271531", "10410271532", "10410271533"]
    assert len(set(digests)) == len(digests)


def test_retry_loop_knocks_every_retry_after_until_dial_succeeds() -> None:
    clock = FakeClock()
    knocker, _ = knocker_with(clock)
    dials: list[float] = []

    def dial(timeout: float) -> str | None:
        dials.append(timeout)
        clock.seconds += timeout
        return "connected" if clock.seconds >= 7 else None

    got = knock_until_open(
        knocker, dial, retry_after=3, wait_timeout=10, clock=clock.monotonic, log=None
    )
    assert got == "connected"
    assert [offset for offset, _ in knocker.sent] == [0, 1, -1]  # at 0 s, 3 s and 6 s
    assert dials == [3, 3, 3]


def test_retry_loop_gives_up_at_wait_timeout_and_logs() -> None:
    clock = FakeClock()
    knocker, _ = knocker_with(clock)
    lines: list[str] = []

    def dial(timeout: float) -> None:
        clock.seconds += timeout

    got = knock_until_open(
        knocker, dial, retry_after=3, wait_timeout=10, clock=clock.monotonic, log=lines.append
    )
    assert got is None
    assert clock.seconds == 10
    assert lines == [
        "knock 1 sent (minute +0)",
        "knock 2 sent (minute +1)",
        "knock 3 sent (minute -1)",
        "no fresh minute left to knock with; still waiting",
    ]


def test_dialer_keeps_trying_until_something_listens() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    sockaddr = server.getsockname()
    dialer = Dialer(socket.AF_INET, sockaddr, every=0.05)
    try:
        assert dialer.wait(0.3) is None
        assert dialer.attempts >= 3
        assert dialer.last_error == "Connection refused"
        server.listen(1)
        conn = dialer.wait(2)
        assert conn is not None
        with conn:
            assert conn.getpeername() == sockaddr
            assert conn.gettimeout() is None
    finally:
        dialer.close()
        server.close()


def test_relay_is_binary_safe_and_half_closes() -> None:
    ours, theirs = socket.socketpair()
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    payload = bytes(range(256)) * 1024  # 256 KiB, every byte value, bigger than a pipe

    def peer() -> None:  # an echo server that closes after the client's EOF
        with theirs:
            while data := theirs.recv(65536):
                theirs.sendall(data)

    def feed() -> None:
        os.write(stdin_w, payload)
        os.close(stdin_w)

    received = bytearray()

    def drain() -> None:
        while data := os.read(stdout_r, 65536):
            received.extend(data)

    workers = [threading.Thread(target=f) for f in (peer, feed, drain)]
    for worker in workers:
        worker.start()
    relay(ours, stdin_r, stdout_w)
    os.close(stdout_w)
    for worker in workers:
        worker.join(5)
    ours.close()
    os.close(stdin_r)
    os.close(stdout_r)
    assert bytes(received) == payload


def test_relay_ends_when_the_server_closes_even_if_stdin_stays_open() -> None:
    ours, theirs = socket.socketpair()
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    theirs.sendall(b"bye\x00")
    theirs.close()
    relay(ours, stdin_r, stdout_w)
    assert os.read(stdout_r, 100) == b"bye\x00"
    for fd in (stdin_w, stdin_r, stdout_r, stdout_w):
        os.close(fd)
    ours.close()


def test_offsets_stay_inside_the_default_window() -> None:
    accepted = set(protocol.minute_stamps(T0, 1))
    for offset in OFFSETS:
        assert protocol.minute_stamp(T0 + timedelta(minutes=offset)) in accepted


# --- the CLI front-end -----------------------------------------------------------------


def test_ssh_proxy_usage_errors_exit_2_and_keep_stdout_clean(capsys, monkeypatch) -> None:
    from tumbler.cli import tumbler as client

    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")
    monkeypatch.delenv("TUMBLER_PROFILES", raising=False)
    assert client.main(["ssh-proxy", "127.0.0.1", "99999"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("tumbler: error: argument PORT: '99999' is not a TCP port")
    assert client.main(["ssh-proxy", "--url", "http://x/", "127.0.0.1", "22"]) == 2
    out, err = capsys.readouterr()
    assert (out, err.count("\n")) == ("", 1)


def test_secret_order_env_beats_profile_file(tmp_path, monkeypatch) -> None:
    from tumbler.client import knock, plan
    from tumbler.client.profiles import parse_profiles

    secret_file = tmp_path / "s"
    secret_file.write_text("from-file\n")
    secret_file.chmod(0o600)
    profile = parse_profiles(
        f"[host-a]\n  url = tumbler://h/\n  secret_file = {secret_file}\n", "p"
    ).profiles["a"]
    url = knock.parse_url("tumbler://h/")
    assert plan.secret_for(url, None, profile, environ={}).value == "from-file"
    assert plan.secret_for(url, None, profile, environ={"TUMBLER_SECRET": "env"}).value == "env"
    other = tmp_path / "o"
    other.write_text("cli\n")
    other.chmod(0o600)
    assert (
        plan.secret_for(url, str(other), profile, environ={"TUMBLER_SECRET": "env"}).value == "cli"
    )
