"""The config reader: Listing Two verbatim, tumbler's added keys, and errors by file and line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tumbler.config import inifile
from tumbler.config.daemon import Config, load_config, parse_config
from tumbler.durations import parse_duration
from tumbler.errors import ConfigError, TumblerError
from tumbler.ports import PortSpec
from tumbler.sources.spec import SourceSpec

LISTING_TWO = Path(__file__).parent.parent / "data" / "listing-two.conf"

DOOR = "[door-a]\n   secret = s3cr3t-a\n   command = true\n"


def write(tmp_path: Path, text: str, name: str = "tumblerd.conf", mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


def load_error(tmp_path: Path, text: str) -> tuple[ConfigError, Path]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value, path


# --- Listing Two, verbatim -------------------------------------------------------------------


def test_listing_two_is_the_articles_text():
    text = LISTING_TWO.read_text(encoding="utf-8")
    assert text.startswith("# The common section")
    assert "[door-X] section, \n" in text  # trailing spaces kept, as printed


def test_listing_two_loads_verbatim(tmp_path):
    path = write(tmp_path, LISTING_TWO.read_text(encoding="utf-8"))
    config = load_config(path)
    assert config.path == str(path)
    assert config.port == 8675
    assert config.log == "/var/log/tumblerd.log"
    assert [d.name for d in config.doors] == ["open-ssh", "close-ssh"]
    opener, closer = config.doors
    assert opener.secret == "open-pAsSwOrD"
    assert closer.secret == "close-pAsSwOrD"
    assert opener.command == "iptables -I INPUT -p tcp -s %IP% --dport 22 -j ACCEPT"
    assert closer.command == "iptables -D INPUT -p tcp -s %IP% --dport 22 -j ACCEPT"
    assert opener.line == 15
    assert closer.line == 18
    assert opener.open == ()
    assert not opener.is_sequence
    assert config.secret_doors == config.doors
    assert config.sequence_doors == ()
    assert config.warnings == ()


def test_listing_two_with_a_utf8_bom_loads(tmp_path):
    # Some editors save UTF-8 with a byte-order mark; the first line is still a comment.
    path = tmp_path / "bom.conf"
    path.write_bytes(b"\xef\xbb\xbf" + LISTING_TWO.read_bytes())
    path.chmod(0o600)
    assert [d.name for d in load_config(path).doors] == ["open-ssh", "close-ssh"]


def test_secret_is_not_in_repr(tmp_path):
    config = load(tmp_path, LISTING_TWO.read_text(encoding="utf-8"))
    assert "pAsSwOrD" not in repr(config)


# --- defaults and added keys -----------------------------------------------------------------


def test_defaults(tmp_path):
    config = load(tmp_path, DOOR)
    assert config.port == 8675
    assert config.window == 1
    assert config.listen == ("0.0.0.0", "::")
    assert config.replay.store == "sqlite"
    assert config.replay.fallback is None
    assert config.log is None
    assert config.command_timeout == 30.0
    assert config.firewall == "auto"
    door = config.doors[0]
    assert door.timeout == 30.0
    assert door.firewall == "auto"
    assert door.set is None


def test_default_state_for_a_user_is_under_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    config = parse_config(DOOR, "x.conf", tmp_path)
    assert config.state == str(tmp_path / "xdg" / "tumbler" / "state.db")


def test_default_state_for_root_is_var_lib(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert parse_config(DOOR, "x.conf", tmp_path).state == "/var/lib/tumbler/state.db"


def test_added_common_keys(tmp_path):
    config = load(
        tmp_path,
        "[common]\n"
        "  port = 9000\n"
        "  listen = 127.0.0.1, ::1\n"
        "  window = 2\n"
        "  state = /tmp/t/state.db\n"
        "  replay = memory\n"
        "  command_timeout = 5m\n" + DOOR,
    )
    assert config.port == 9000
    assert config.listen == ("127.0.0.1", "::1")
    assert config.window == 2
    assert config.state == "/tmp/t/state.db"
    assert config.replay.store == "memory"
    assert config.command_timeout == 300.0


def test_redis_replay_with_fallback(tmp_path):
    config = load(
        tmp_path, "[common]\n replay = redis://localhost:6379/0\n replay_fallback = sqlite\n" + DOOR
    )
    assert config.replay.store == "redis://localhost:6379/0"
    assert config.replay.fallback == "sqlite"


def test_sentinel_with_login_tls_and_acks(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    write(tmp_path, "hunter2\n", name="redis.pass")
    config = load(
        tmp_path,
        "[common]\n replay = rediss+sentinel://10.0.0.1:26379,10.0.0.2:26379/tumbler/1\n"
        " replay_acks = 2\n replay_user = tumbler\n replay_password_file = redis.pass\n"
        " replay_tls_ca = ca.pem\n replay_ack_timeout = 0.5\n" + DOOR,
    )
    access = config.replay.access
    assert access.ack_timeout == 0.5
    assert (access.user, access.password, access.acks) == ("tumbler", "hunter2", 2)
    assert access.tls_ca == str(tmp_path / "ca.pem")
    assert "hunter2" not in repr(config)


def test_a_readable_password_file_or_config_is_warned_about(tmp_path):
    write(tmp_path, "hunter2\n", name="redis.pass", mode=0o644)
    config = load(
        tmp_path, "[common]\n replay = redis://h\n replay_password_file = redis.pass\n" + DOOR
    )
    assert any("redis.pass holds a secret or password" in w for w in config.warnings)
    path = write(
        tmp_path,
        "[common]\n replay = redis://h\n replay_password = hunter2\n"
        "[door-a]\n sequence = 7000,8123,9345\n command = true\n",
        mode=0o640,
    )
    warnings = load_config(path).warnings
    assert len(warnings) == 1
    assert "hunter2" not in warnings[0]
    assert "chmod 600" in warnings[0]


def test_acks_default_is_left_to_the_kind_of_store(tmp_path):
    config = load(tmp_path, "[common]\n replay = redis+cluster://h:7000\n" + DOOR)
    assert config.replay.access.acks is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1.5m", 90.0), (" 2 M ", 120.0)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "-1", "1d", "m", "5 minutes", "1e3", "1h30m"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_door_open_timeout_firewall_set(tmp_path):
    config = load(
        tmp_path,
        "[door-ssh]\n"
        "  secret = x\n"
        "  open = tcp/22, udp/60001-60010\n"
        "  timeout = 1h\n"
        "  firewall = nftables\n"
        "  set = inet filter tumbler_ssh\n",
    )
    door = config.doors[0]
    assert door.open == (PortSpec("tcp", 22, 22), PortSpec("udp", 60001, 60010))
    assert door.command is None
    assert door.timeout == 3600.0
    assert door.firewall == "nftables"
    assert str(door.set) == "inet filter tumbler_ssh"


def test_door_inherits_common_firewall(tmp_path):
    config = load(
        tmp_path, "[common]\n firewall = iptables\n[door-ssh]\n secret = x\n open = tcp/22\n"
    )
    assert config.doors[0].firewall == "iptables"


def test_sequence_door(tmp_path):
    config = load(
        tmp_path,
        "[door-seq]\n sequence = 7000, udp/8000, 9000\n sequence_timeout = 5\n open = 22\n",
    )
    door = config.doors[0]
    assert door.is_sequence
    assert door.secret is None
    assert door.sequence == (
        PortSpec("tcp", 7000, 7000),
        PortSpec("udp", 8000, 8000),
        PortSpec("tcp", 9000, 9000),
    )
    assert door.sequence_timeout == 5.0
    assert config.secret_doors == ()
    assert config.sequence_doors == (door,)


SEQ_DOOR = "[door-seq]\n sequence = 7000, 8000, 9000\n open = 22\n"


def test_sequence_log_prefix(tmp_path):
    common = "[common]\n sequence_source = file:/var/log/ulog.log\n"
    config = load(tmp_path, common + " sequence_log_prefix = FIREWALL:\n" + SEQ_DOOR)
    assert config.sequence_source == SourceSpec("file", "/var/log/ulog.log", "FIREWALL:")
    assert load(tmp_path, common + SEQ_DOOR).sequence_source.prefix is None


@pytest.mark.parametrize(
    ("common", "reason"),
    [
        (" sequence_log_prefix = FIREWALL:\n", "only applies to sequence_source = file:PATH"),
        (" sequence_source = file:/x\n sequence_log_prefix = SRC=\n", "no '='"),
    ],
)
def test_sequence_log_prefix_refused(tmp_path, common, reason):
    err, path = load_error(tmp_path, "[common]\n" + common + SEQ_DOOR)
    assert str(err).startswith(f"{path}:")
    assert reason in str(err)


def test_secret_file(tmp_path):
    secret = tmp_path / "door.secret"
    secret.write_text("from-a-file\nsecond line ignored\n")
    secret.chmod(0o600)
    config = load(tmp_path, "[door-a]\n secret_file = door.secret\n command = true\n")
    assert config.doors[0].secret == "from-a-file"
    assert config.warnings == ()


def test_secret_file_absolute_path(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    secret = other / "s"
    secret.write_text("abs-secret")
    secret.chmod(0o600)
    config = load(tmp_path, f"[door-a]\n secret_file = {secret}\n command = true\n")
    assert config.doors[0].secret == "abs-secret"


def test_semicolon_comments_and_blank_lines(tmp_path):
    config = load(
        tmp_path, "\n; a comment\n\n[door-a]\n ; another\n secret = x = y\n command = t\n"
    )
    assert config.doors[0].secret == "x = y"


# --- permissions -----------------------------------------------------------------------------


def test_world_readable_config_with_a_secret_warns(tmp_path):
    path = write(tmp_path, DOOR, mode=0o644)
    config = load_config(path)
    assert len(config.warnings) == 1
    assert str(path) in config.warnings[0]
    assert "s3cr3t-a" not in config.warnings[0]


def test_group_readable_config_with_a_secret_warns(tmp_path):
    assert len(load_config(write(tmp_path, DOOR, mode=0o640)).warnings) == 1


def test_private_config_does_not_warn(tmp_path):
    assert load_config(write(tmp_path, DOOR, mode=0o600)).warnings == ()


def test_world_readable_secret_file_warns(tmp_path):
    secret = tmp_path / "door.secret"
    secret.write_text("file-secret\n")
    secret.chmod(0o644)
    # The config holds no secret itself, so only the secret file is named.
    path = write(tmp_path, "[door-a]\n secret_file = door.secret\n command = t\n", mode=0o644)
    warnings = load_config(path).warnings
    assert len(warnings) == 1
    assert str(secret) in warnings[0]
    assert "file-secret" not in warnings[0]
    secret.chmod(0o600)
    assert load_config(path).warnings == ()


# --- errors, each naming file and line -------------------------------------------------------

ERRORS = [
    pytest.param("[common]\n[nonsense]\n", 2, "unknown section", id="unknown-section"),
    pytest.param(
        "[door-a b]\n secret = x\n command = t\n", 1, "unknown section", id="bad-door-name"
    ),
    pytest.param("[common]\n  colour = blue\n" + DOOR, 2, "unknown key", id="unknown-key"),
    pytest.param(DOOR + " colour = blue\n", 4, "unknown key", id="unknown-door-key"),
    pytest.param(
        "[common]\n port = 1\n" + "[door-a]\n command = t\n", 3, "no secret", id="no-secret"
    ),
    pytest.param(
        DOOR + "[door-b]\n secret = s3cr3t-a\n command = t\n", 4, "same secret", id="same-secret"
    ),
    pytest.param("[common]\n port = 0\n" + DOOR, 2, "port", id="port-0"),
    pytest.param("[common]\n port = 70000\n" + DOOR, 2, "port", id="port-70000"),
    pytest.param("[common]\n port = abc\n" + DOOR, 2, "port", id="port-abc"),
    pytest.param("[common]\n port = -1\n" + DOOR, 2, "port", id="port-negative"),
    pytest.param("[common]\n port =\n" + DOOR, 2, "port", id="port-empty"),
    pytest.param("# header\nport = 8675\n" + DOOR, 2, "outside any section", id="key-outside"),
    pytest.param("[common]\n port = 1\n port = 2\n" + DOOR, 3, "twice", id="duplicate-key"),
    pytest.param(
        DOOR + "[door-a]\n secret = z\n command = t\n", 4, "twice", id="duplicate-section"
    ),
    pytest.param("[common]\n[common]\n" + DOOR, 2, "twice", id="duplicate-common"),
    pytest.param("[common\n" + DOOR, 1, "section header", id="bad-header"),
    pytest.param(DOOR + "[door-b\n", 4, "section header", id="bad-header-late"),
    pytest.param("[common]\n just words\n" + DOOR, 2, "key = value", id="no-equals"),
    pytest.param("[common]\n = 5\n" + DOOR, 2, "key = value", id="no-key"),
    pytest.param(
        "[door-a]\n secret = x\n secret_file = f\n command = t\n",
        3,
        "not both",
        id="secret-and-file",
    ),
    pytest.param("[door-a]\n secret = \n command = t\n", 2, "empty", id="empty-secret"),
    pytest.param(
        "[door-a]\n command = t\n secret_file = empty\n", 3, "empty", id="empty-secret-file"
    ),
    pytest.param(
        "[door-a]\n command = t\n secret_file = missing\n", 3, "missing", id="missing-secret-file"
    ),
    pytest.param(
        "[door-a]\n command = t\n secret_file = adir\n", 3, "adir", id="secret-file-is-a-directory"
    ),
    pytest.param("[common]\n[door-a]\n secret = x\n", 2, "does nothing", id="no-command-no-open"),
    pytest.param(
        "[door-a]\n secret = x\n sequence = 1, 2\n open = 22\n",
        3,
        "not both",
        id="sequence-and-secret",
    ),
    pytest.param("[door-a]\n sequence = 1-5\n open = 22\n", 2, "range", id="sequence-range"),
    pytest.param(
        "[door-a]\n secret = x\n sequence_timeout = 5\n command = t\n",
        3,
        "sequence_timeout",
        id="sequence-timeout-alone",
    ),
    pytest.param(
        "[door-a]\n secret = x\n command = t\n timeout = 5\n",
        4,
        "needs an open",
        id="timeout-no-open",
    ),
    pytest.param(
        "[door-a]\n secret = x\n command = t\n firewall = nftables\n",
        4,
        "needs an open",
        id="fw-no-open",
    ),
    pytest.param(
        "[door-a]\n secret = x\n open = 22\n timeout = soon\n", 4, "duration", id="bad-duration"
    ),
    pytest.param(
        "[door-a]\n secret = x\n open = 22\n timeout = 0\n", 4, "positive", id="zero-duration"
    ),
    pytest.param(
        "[common]\n command_timeout = 1d\n" + DOOR, 2, "duration", id="bad-command-timeout"
    ),
    pytest.param(
        "[door-a]\n secret = x\n open = 22\n firewall = pf\n", 4, "firewall", id="bad-firewall"
    ),
    pytest.param("[common]\n firewall = ipfw\n" + DOOR, 2, "firewall", id="bad-common-firewall"),
    pytest.param(
        "[door-a]\n secret = x\n open = 22\n set = tumbler\n", 4, "set", id="bad-set-short"
    ),
    pytest.param(
        "[door-a]\n secret = x\n open = 22\n set = bridge filter s\n", 4, "set", id="bad-set-family"
    ),
    pytest.param(
        "[door-a]\n secret = x\n open = 22\n set = inet filter a;b\n", 4, "set", id="bad-set-chars"
    ),
    pytest.param("[door-a]\n secret = x\n open = tcp/0\n", 3, "open", id="bad-open"),
    pytest.param("[door-a]\n secret = x\n open = ,\n", 3, "open", id="empty-open"),
    pytest.param(
        "[common]\n replay_fallback = memory\n" + DOOR, 2, "redis", id="fallback-no-redis"
    ),
    pytest.param(
        "[common]\n replay = memory\n replay_fallback = sqlite\n" + DOOR,
        3,
        "redis",
        id="fallback-memory",
    ),
    pytest.param(
        "[common]\n replay = redis://h\n replay_fallback = redis\n" + DOOR,
        3,
        "replay_fallback",
        id="bad-fallback",
    ),
    pytest.param("[common]\n replay = postgres\n" + DOOR, 2, "replay", id="bad-replay"),
    pytest.param(
        "[common]\n replay = redis+sentinel://h:26379\n" + DOOR,
        2,
        "service name",
        id="sentinel-no-service",
    ),
    pytest.param("[common]\n replay_acks = 1\n" + DOOR, 2, "redis", id="acks-no-redis"),
    pytest.param(
        "[common]\n replay = redis+cluster://h:7000\n replay_acks = 17\n" + DOOR,
        3,
        "out of range",
        id="acks-too-many",
    ),
    pytest.param(
        "[common]\n replay = redis://h\n replay_ack_timeout = 6s\n" + DOOR,
        3,
        "more than 5 s",
        id="ack-timeout-too-long",
    ),
    pytest.param(
        "[common]\n replay = redis://h\n replay_password = a\n replay_password_file = empty\n"
        + DOOR,
        4,
        "not both",
        id="password-twice",
    ),
    pytest.param(
        "[common]\n replay = redis://h\n replay_password_file = empty\n" + DOOR,
        3,
        "is empty",
        id="password-file-empty",
    ),
    pytest.param(
        "[common]\n replay = redis://h\n replay_tls_ca = empty\n" + DOOR,
        3,
        "rediss://",
        id="tls-without-rediss",
    ),
    pytest.param(
        "[common]\n replay = rediss://h\n replay_tls_ca = missing.pem\n" + DOOR,
        3,
        "not a readable file",
        id="tls-ca-missing",
    ),
    pytest.param(
        "[common]\n replay = rediss://h\n replay_tls_cert = empty\n" + DOOR,
        3,
        "go together",
        id="tls-cert-without-key",
    ),
    pytest.param("[common]\n window = 61\n" + DOOR, 2, "window", id="window-too-big"),
    pytest.param("[common]\n window = -1\n" + DOOR, 2, "window", id="window-negative"),
    pytest.param("[common]\n listen = 0.0.0.0 localhost\n" + DOOR, 2, "listen", id="bad-listen"),
    pytest.param("[common]\n listen = ,\n" + DOOR, 2, "listen", id="empty-listen"),
    pytest.param("[common]\n log =\n" + DOOR, 2, "log", id="empty-log"),
]


@pytest.mark.parametrize(("text", "line", "fragment"), ERRORS)
def test_error_names_file_and_line(tmp_path, text, line, fragment):
    (tmp_path / "empty").write_text("")
    (tmp_path / "adir").mkdir()
    err, path = load_error(tmp_path, text)
    assert str(err).startswith(f"{path}:{line}: "), str(err)
    assert err.path == str(path)
    assert err.line == line
    assert fragment in str(err)


def test_config_without_doors_is_an_error(tmp_path):
    err, path = load_error(tmp_path, "[common]\n port = 8675\n")
    assert str(err).startswith(f"{path}:")
    assert "door" in str(err)


def test_unreadable_config_is_a_config_error(tmp_path):
    missing = tmp_path / "nope.conf"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert str(info.value).startswith(f"{missing}: ")


def test_config_error_is_a_tumbler_error(tmp_path):
    with pytest.raises(TumblerError):
        parse_config("[bogus]\n")


def test_line_numbers_count_newlines_only(tmp_path):
    # A form feed or a Unicode line separator inside a comment is not a line break to an
    # editor, so it must not shift the line an error names.
    err, _ = load_error(tmp_path, "# page\x0c break \u2028 here\n[common]\n colour = x\n" + DOOR)
    assert err.line == 3


def test_crlf_line_endings(tmp_path):
    path = tmp_path / "crlf.conf"
    path.write_bytes(b"[door-a]\r\n secret = x\r\n command = t\r\n[door-b]\r\n bogus = 1\r\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 5
    path.write_bytes(b"[door-a]\r\n secret = x\r\n command = t\r\n")
    assert load_config(path).doors[0].secret == "x"


# --- a secret never appears in an error message ----------------------------------------------

SECRET = "hunter2-Zq9"

SECRET_LEAKS = [
    pytest.param(f"[door-a]\n secret {SECRET}\n command = t\n", id="missing-equals"),
    pytest.param(f"[door-a]\n secret: {SECRET}\n command = t\n", id="colon"),
    pytest.param(f"[door-a]\n secret = {SECRET}\n comand = t\n", id="typo-after-secret"),
    pytest.param(f"[door-a]\n secret = {SECRET}\n secret = {SECRET}\n command = t\n", id="dup"),
    pytest.param(f"[door-a]\n secret = {SECRET}\n[door-b]\n secret = {SECRET}\n", id="same"),
    pytest.param(f"[door-a]\n secret = {SECRET}\n secret_file = f\n command = t\n", id="both"),
    pytest.param(f"[door-a]\n secret = {SECRET}\n", id="no-command"),
    pytest.param(f"[door-a]\n secret = {SECRET}\n sequence = 1,2\n open = 2\n", id="sequence"),
    pytest.param(f"[door-a]\n secret = {SECRET}\n command = t\n[door-b\n", id="bad-header"),
    pytest.param(f"[door-a]\n secret {SECRET}=\n command = t\n", id="base64-missing-equals"),
    pytest.param(f"[door-a]\n secret:{SECRET}=x\n command = t\n", id="colon-and-equals"),
    pytest.param(f"secret {SECRET}=\n", id="base64-outside-section"),
    pytest.param(f"secret = {SECRET}\n", id="outside-section"),
    pytest.param(f"[common]\n secret = {SECRET}\n", id="in-common"),
]


@pytest.mark.parametrize("text", SECRET_LEAKS)
def test_secret_never_in_error(tmp_path, text):
    err, _ = load_error(tmp_path, text)
    assert SECRET not in str(err)
    assert SECRET not in repr(err)
    assert SECRET not in err.message


def test_secret_from_file_never_in_error(tmp_path):
    (tmp_path / "s").write_text(SECRET)
    err, _ = load_error(
        tmp_path,
        f"[door-a]\n secret = {SECRET}\n command = t\n[door-b]\n secret_file = s\n command = t\n",
    )
    assert "same secret" in str(err)
    assert SECRET not in str(err)


def test_secret_with_a_unicode_line_separator_is_not_cut(tmp_path):
    # Cut at U+2028, the tail of the secret would stand alone on a "line" and be quoted.
    config = load(tmp_path, "[door-a]\n secret = abc\u2028Zq9-tail\n command = t\n")
    assert config.doors[0].secret == "abc\u2028Zq9-tail"
    err, _ = load_error(tmp_path, "[door-a]\n secret = abc\u2028Zq9-tail\n command = t\n x\n")
    assert err.line == 4
    assert "Zq9" not in str(err)


def test_undecodable_secret_file_is_a_config_error(tmp_path):
    (tmp_path / "latin1").write_bytes(b"caf\xe9\n")
    err, path = load_error(tmp_path, "[door-a]\n command = t\n secret_file = latin1\n")
    assert str(err).startswith(f"{path}:3: secret_file ")


def test_nul_in_secret_file_path_is_a_config_error(tmp_path):
    err, path = load_error(tmp_path, "[door-a]\n command = t\n secret_file = a\x00b\n")
    assert str(err).startswith(f"{path}:3: control character")
    assert "\x00" not in str(err)


@pytest.mark.parametrize(
    ("sequence", "reason"),
    [("100, 101, 300", "neighbouring ports"), ("42", "at least two ports")],
)
def test_sequence_a_scan_could_complete_is_refused_with_its_line(tmp_path, sequence, reason):
    err, path = load_error(tmp_path, f"[door-seq]\n   command = true\n   sequence = {sequence}\n")
    assert str(err).startswith(f"{path}:3:")
    assert reason in str(err)


@pytest.mark.parametrize("value", ["\u0668\u0666\u0667\u0665", "\uff12\uff12", "0008675000000"])
def test_numbers_are_ascii_digits_of_sane_length(tmp_path, value):
    err, path = load_error(
        tmp_path, f"[common]\n   port = {value}\n[door-a]\n   secret = s\n   command = true\n"
    )
    assert str(err).startswith(f"{path}:2:")


def test_a_huge_duration_is_refused():
    with pytest.raises(ValueError):
        parse_duration("9" * 400)


def test_doors_mixing_iptables_variants_are_refused(tmp_path):
    err, path = load_error(
        tmp_path,
        "[door-a]\n   secret = a\n   open = tcp/22\n   firewall = iptables-nft\n"
        "[door-b]\n   secret = b\n   open = tcp/80\n   firewall = iptables-legacy\n",
    )
    assert str(err).startswith(f"{path}:5:")
    assert "iptables-legacy" in str(err) and "iptables-nft" in str(err)


def test_doors_may_mix_nftables_and_one_iptables_variant(tmp_path):
    config = load(
        tmp_path,
        "[door-a]\n   secret = a\n   open = tcp/22\n   firewall = iptables\n"
        "[door-b]\n   secret = b\n   open = tcp/80\n   firewall = nftables\n"
        "[door-c]\n   secret = c\n   open = tcp/81\n   firewall = iptables\n",
    )
    assert [d.firewall for d in config.doors] == ["iptables", "nftables", "iptables"]


# One comment rule for both files (see tumbler.inifile).


def test_trailing_comments_are_cut_except_in_secret_and_command() -> None:
    config = parse_config(
        "[common]   # the daemon\n"
        "   port = 9000        # the knock port\n"
        "   firewall = nftables   # or iptables\n"
        "[door-ssh]\n"
        "   secret = s3cr#t with # inside\n"
        "   command = logger 'opened #%IP%' # not a comment: commands run to the end\n"
        "   open = tcp/22 # ssh\n"
    )
    assert config.port == 9000
    assert config.firewall == "nftables"
    [door] = config.doors
    assert door.secret == "s3cr#t with # inside"
    assert door.command == "logger 'opened #%IP%' # not a comment: commands run to the end"
    assert [str(p) for p in door.open] == ["tcp/22"]


@pytest.mark.parametrize("bad", ["\x00", "\x1b", "\x7f", "\x0c", "\x0b", "\x85"])
def test_a_control_character_in_a_value_is_refused_at_parse_time(bad: str) -> None:
    text = f"[common]\n   log = /tmp/x{bad}y\n[door-a]\n   secret = abc{bad}def\n   command = t\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, "/etc/t.conf")
    message = str(err.value)
    assert message.startswith("/etc/t.conf:2:")
    assert "control character" in message
    assert "abc" not in message


# The format's rules are applied with str methods (fast to start); these are the patterns
# they were written from, and every text must get the same answer from both.
LINE_BREAK = re.compile(r"\r\n|\r|\n")
TRAILING_COMMENT = re.compile(r"\s#.*\Z", re.DOTALL)
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
FORMAT_TEXT = st.text(alphabet=st.sampled_from("a# \t\r\n\x00\x0b\x85\u2028\u3000\xa0=[];"))


@given(FORMAT_TEXT)
def test_the_format_rules_are_the_patterns_they_were(text: str) -> None:
    assert inifile.split_lines(text) == LINE_BREAK.split(text)
    stripped = text.strip()
    assert inifile.strip_comment(stripped) == TRAILING_COMMENT.sub("", stripped).rstrip()
    has_control = not text.isprintable() and not inifile._CONTROL.isdisjoint(text)
    assert has_control == (CONTROL.search(text) is not None)


def test_the_comment_rule_examples() -> None:
    assert inifile.strip_comment("22 # ssh") == "22"
    assert inifile.strip_comment("a#b # c # d") == "a#b"
    assert inifile.strip_comment("a\u3000# wide space") == "a"
    assert inifile.strip_comment("#x") == "#x"
    assert inifile.split_lines("a\r\nb\rc\nd\x0ce") == ["a", "b", "c", "d\x0ce"]


@pytest.mark.parametrize("firewall", ["nftables", "auto"])
def test_door_opening_more_ports_than_nftables_holds_is_refused(tmp_path, firewall):
    text = (
        f"[common]\n   firewall = {firewall}\n"
        "[door-wide]\n   secret = s\n   timeout = 30\n   open = tcp/22, udp/60000-61023\n"
    )
    err, path = load_error(tmp_path, text)
    assert str(err).startswith(f"{path}:6: door wide opens 1025 ports")
    assert "at most 1024" in str(err)


def test_port_limit_is_nftables_own(tmp_path):
    ports = "tcp/22, udp/60000-61023"
    assert load(tmp_path, f"[door-a]\n secret = s\n firewall = iptables\n open = {ports}\n")
    with_set = f"[door-a]\n secret = s\n set = inet filter t\n open = {ports}\n"
    assert load(tmp_path, f"[common]\n firewall = nftables\n{with_set}")  # his rule says the ports
    assert load(tmp_path, "[door-a]\n secret = s\n open = tcp/1-1024\n")  # exactly the limit
