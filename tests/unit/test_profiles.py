"""Client profiles (hosts.conf): parsing, errors located by file and line, permissions."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tumbler.cli import tumbler as client
from tumbler.client import profiles
from tumbler.errors import ConfigError

GOOD = """\
# my hosts
[host-web1]
   url = tumbler://web1.example.org:9000/
   secret_file = web1.secret      # relative to this file
   from = 203.0.113.9
   family = 4
   wait = 22
   wait_timeout = 30s
   retry_after = 2

[host-v6]
   url = tumbler://[fd00::1]/
   secret_file = ~/door.secret
   family = 6
"""


def test_good_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "hosts.conf"
    parsed = profiles.parse_profiles(GOOD, str(path))
    assert list(parsed.profiles) == ["web1", "v6"]
    web1 = parsed.profiles["web1"]
    assert (web1.url.host, web1.url.port, web1.url.secret) == ("web1.example.org", 9000, None)
    assert web1.secret_file == str(tmp_path / "web1.secret")
    assert web1.source == "203.0.113.9"
    assert web1.family == socket.AF_INET
    assert (web1.wait, web1.wait_timeout, web1.retry_after) == (22, 30.0, 2.0)
    assert web1.line == 2
    v6 = parsed.profiles["v6"]
    assert v6.url.host == "fd00::1" and v6.url.port == 8675
    assert v6.secret_file == str(tmp_path / "home" / "door.secret")
    assert v6.family == socket.AF_INET6
    assert v6.wait is None
    assert (v6.wait_timeout, v6.retry_after) == (10.0, 3.0)
    assert parsed.for_host("WEB1.example.org") is web1
    assert parsed.for_host("fd00::1") is v6
    assert parsed.for_host("other") is None


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("url = tumbler://h/\n", 1, "outside any section"),
        ("[host-a]\n  url = tumbler://h/\n[door-b]\n", 3, "unknown section [door-b]"),
        ("[host-a]\n  url = tumbler://h/\n[host-a]\n", 3, "appears twice"),
        ("[host-a\n", 1, "bad section header"),
        ("\n[host-a]\n  url = http://h/\n", 3, "url: bad URL: scheme http:// is not tumbler://"),
        ("[host-a]\n  url = tumbler://h/\n  color = red\n", 3, "unknown key 'color'"),
        ("[host-a]\n  url = tumbler://h/\n  url = tumbler://g/\n", 3, "given twice"),
        ("[host-a]\n  url = tumbler://h/\n  wait = 70000\n", 3, "wait: expected a TCP port"),
        ("[host-a]\n  url = tumbler://h/\n  family = 5\n", 3, "family: expected 4 or 6"),
        ("[host-a]\n  url = tumbler://h/\n  from = nowhere\n", 3, "from: 'nowhere' is not"),
        ("[host-a]\n  url = tumbler://h/\n  wait_timeout = -1\n", 3, "wait_timeout: bad dur"),
        ("[host-a]\n  url = tumbler://h/\n  retry_after = 0\n", 3, "retry_after: duration"),
        ("[host-a]\n  url = tumbler://h/\n  secret_file =\n", 3, "secret_file: empty value"),
        ("[host-a]\n  secret_file = x\n", 1, "[host-a] has no url"),
        ("[host-a]\n  url tumbler://h/\n", 2, "expected 'key = value'"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        profiles.parse_profiles(text, "/home/u/hosts.conf")
    assert str(caught.value).startswith(f"/home/u/hosts.conf:{line}: ")
    assert message in str(caught.value)


def test_error_never_echoes_a_url_secret() -> None:
    with pytest.raises(ConfigError) as caught:
        profiles.parse_profiles("[host-a]\n  url = tumbler://hunter2@h:99999/\n", "p")
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).startswith("p:2: url: bad URL: port")


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_permission_warnings(tmp_path: Path) -> None:
    plain = "[host-a]\n  url = tumbler://h/\n"
    secret = "[host-a]\n  url = tumbler://s3cret@h/\n"
    assert profiles.load_profiles(_write(tmp_path / "a", plain, 0o644)).warnings == ()
    assert profiles.load_profiles(_write(tmp_path / "b", secret, 0o600)).warnings == ()
    (readable,) = profiles.load_profiles(_write(tmp_path / "c", secret, 0o644)).warnings
    assert "holds a secret in a URL and is readable by group or others" in readable
    assert "s3cret" not in readable
    (writable,) = profiles.load_profiles(_write(tmp_path / "d", plain, 0o620)).warnings
    assert "writable by group or others" in writable


def test_unreadable_file_is_a_located_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.conf: cannot read profiles"):
        profiles.load_profiles(tmp_path / "missing.conf")


def test_default_path() -> None:
    env = {"HOME": "/h"}
    assert profiles.default_path({"TUMBLER_PROFILES": "/p/x.conf"}) == Path("/p/x.conf")
    assert profiles.default_path({"XDG_CONFIG_HOME": "/x"}) == Path("/x/tumbler/hosts.conf")
    assert profiles.default_path(env).name == "hosts.conf"
    assert profiles.default_path(env).parent.name == "tumbler"


# --- the CLI ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("TUMBLER_SECRET", raising=False)
    monkeypatch.delenv("TUMBLER_PROFILES", raising=False)


def test_open_bad_profile_file_exits_2_with_file_and_line(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "hosts.conf", "[host-a]\n  url = tumbler://h/\n  bogus = 1\n", 0o600)
    status = client.main(["open", "a", "--profiles", str(path)])
    _, err = capsys.readouterr()
    assert status == 2
    assert err == f"tumbler: error: {path}:3: unknown key 'bogus' in [host-a] " + (
        "(known: family, from, fwknoprc, retry_after, secret_file, ssh_key, url, wait, "
        "wait_timeout)\n"
    )


def test_open_unknown_name_and_missing_file(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "hosts.conf", "[host-a]\n  url = tumbler://h/\n", 0o600)
    assert client.main(["open", "b", "--profiles", str(path)]) == 2
    assert "no [host-b] (profiles: a)" in capsys.readouterr().err
    monkey = tmp_path / "nothing.conf"
    assert client.main(["open", "a", "--profiles", str(monkey)]) == 2
    assert "nothing.conf: no profile file here" in capsys.readouterr().err


def test_open_without_wait_knocks_once(tmp_path: Path, capsys) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as door:
        door.bind(("127.0.0.1", 0))
        door.settimeout(5)
        port = door.getsockname()[1]
        secret = _write(tmp_path / "s", "open-pAsSwOrD\n", 0o600)
        conf = f"[host-lo]\n  url = tumbler://127.0.0.1:{port}/\n  secret_file = {secret}\n"
        path = _write(tmp_path / "hosts.conf", conf, 0o600)
        status = client.main(["open", "lo", "--profiles", str(path)])
        out, err = capsys.readouterr()
        assert (status, err) == (0, "")
        assert out == f"lo: knocked on 127.0.0.1 udp/{port}\n"
        data, _ = door.recvfrom(200)
        assert data.startswith(b"TUMBLER1: ")


def test_profiles_follow_the_daemon_comment_rule() -> None:
    parsed = profiles.parse_profiles(
        "[host-a]   # laptop\n   url = tumbler://h.example/  # comment\n   wait = 22 # ssh\n"
    )
    assert parsed.profiles["a"].wait == 22
    with pytest.raises(ConfigError, match=r"<profiles>:2: control character"):
        profiles.parse_profiles("[host-a]\n   url = tumbler://h.example/\x00\n")


def test_signed_and_fwknop_profiles_side_by_side(tmp_path: Path) -> None:
    from tumbler.client.fwknop import FwknopURL
    from tumbler.client.signed import SshKnockURL

    loaded = profiles.parse_profiles(
        "[host-ssh]\n   url = tumbler+ssh://alice@h.example/\n   ssh_key = id_ed25519\n"
        "[host-spa]\n   url = fwknop://h.example/tcp/22\n   fwknoprc = rc\n",
        str(tmp_path / "hosts.conf"),
    )
    ssh, spa = loaded.profiles["ssh"], loaded.profiles["spa"]
    assert ssh.url == SshKnockURL("h.example", user="alice") and ssh.fwknop is None
    assert ssh.ssh_key == str(tmp_path / "id_ed25519") and ssh.fwknoprc is None
    assert isinstance(spa.fwknop, FwknopURL) and spa.ssh_key is None
    assert spa.fwknoprc == str(tmp_path / "rc")
    with pytest.raises(ConfigError, match="ssh_key is for a tumbler\\+ssh:// url"):
        profiles.parse_profiles("[host-w]\n   url = fwknop://h/tcp/22\n   ssh_key = k\n")
    with pytest.raises(ConfigError, match="fwknoprc needs an fwknop:// url"):
        profiles.parse_profiles("[host-w]\n   url = tumbler+ssh://h/\n   fwknoprc = rc\n")
