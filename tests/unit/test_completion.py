"""Bash completion (completion/tumbler.bash) in a real bash: what `complete -p` registers,
and what the registered function offers for partial words, checked against --help."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.console import (
    choices_of,
    declared_options,
    firewall_actions,
    help_text,
    tumbler_commands,
    tumblerd_commands,
)

SCRIPT = Path(__file__).resolve().parents[2] / "completion" / "tumbler.bash"

# Completes the words given as arguments (the last one partial) the way bash's readline
# does: COMP_WORDS, COMP_CWORD, COMP_LINE and COMP_POINT set, then the function that
# `complete -p` names called with the command, the word and the previous word.
_COMPLETE = r"""
source "$1"; shift
COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
spec=$(complete -p "$1") || exit 3
function=${spec#*-F }
function=${function%% *}
"$function" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
printf '%s\n' "${COMPREPLY[@]}"
"""

HOSTS = """\
[host-web1]
   url = tumbler://web1.example.org/
   wait = 22
[host-web2]
   url = tumbler://web2.example.org/
[host-db.internal]
   url = tumbler://192.0.2.7/
"""


def _bash() -> str:
    found = shutil.which("bash")
    if found is None:
        pytest.skip("bash is not installed")
    return found


def bash(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [_bash(), "--norc", "--noprofile", "-c", script, "bash", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    return proc.stdout


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / ".config" / "tumbler").mkdir(parents=True)
    (tmp_path / ".config" / "tumbler" / "hosts.conf").write_text(HOSTS)
    return tmp_path


def complete(*words: str, home: Path | None = None, **env: str) -> list[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(home or "/nonexistent"), **env}
    return bash(_COMPLETE, str(SCRIPT), *words, env=base).split()


def test_complete_p_registers_both_commands() -> None:
    out = bash(f'source "{SCRIPT}"; complete -p tumbler; complete -p tumblerd')
    assert out.splitlines() == ["complete -F _tumbler tumbler", "complete -F _tumblerd tumblerd"]


def test_profile_names_for_a_partial_word(home: Path) -> None:
    assert complete("tumbler", "open", "we", home=home) == ["web1", "web2"]
    assert complete("tumbler", "open", "-v", "", home=home) == ["web1", "web2", "db.internal"]
    assert complete("tumbler", "ssh-proxy", "d", home=home) == ["db.internal"]
    assert complete("tumbler", "ssh-proxy", "web1", "", home=home) == []  # PORT: nothing


def test_profile_file_from_the_line_the_environment_and_xdg(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.conf"
    other.write_text("[host-office]\nurl = tumbler://office.example/\n")
    assert complete("tumbler", "open", "--profiles", str(other), "", home=home) == ["office"]
    assert complete("tumbler", "open", "--profiles", "=", str(other), "o", home=home) == ["office"]
    assert complete("tumbler", "open", "", home=home, TUMBLER_PROFILES=str(other)) == ["office"]
    xdg = tmp_path / "xdg"
    (xdg / "tumbler").mkdir(parents=True)
    (xdg / "tumbler" / "hosts.conf").write_text("[host-lab]\nurl = tumbler://lab/\n")
    assert complete("tumbler", "open", "", home=home, XDG_CONFIG_HOME=str(xdg)) == ["lab"]
    assert complete("tumbler", "open", "") == []  # no profile file: nothing, and no error


def test_commands_follow_help() -> None:
    assert complete("tumbler", "") == tumbler_commands()
    assert complete("tumblerd", "") == tumblerd_commands()
    assert complete("tumblerd", "firewall", "") == firewall_actions()
    assert complete("tumblerd", "-c", "/etc/x.conf", "firewall", "f") == ["flush"]
    backends = choices_of(help_text("tumblerd", "firewall"), "--backend")
    assert complete("tumblerd", "firewall", "--backend", "") == backends


@pytest.mark.parametrize(
    "command",
    [
        ("tumbler",),
        ("tumbler", "open"),
        ("tumbler", "ssh-proxy"),
        ("tumbler", "knock"),
        ("tumbler", "sniff"),
        ("tumblerd",),
        ("tumblerd", "firewall"),
        ("tumblerd", "status"),
        ("tumblerd", "close"),
        ("tumblerd", "import-fwknop"),
        ("tumblerd", "demo"),
    ],
    ids=" ".join,
)
def test_long_options_follow_help(command: tuple[str, ...]) -> None:
    declared = declared_options(help_text(*command))
    assert declared, command
    assert set(complete(*command, "--")) == declared


def test_all_commands_are_covered() -> None:
    """The parametrised list above has every command --help lists."""
    assert set(tumbler_commands()) == {"open", "ssh-proxy", "knock", "sniff", "keygen"}
    assert set(tumblerd_commands()) == {"firewall", "status", "close", "import-fwknop", "demo"}


DAEMON_CONFIG = """\
[common]
   port = 8675
[door-ssh]   # the one everybody uses
   secret = s1
[ door-web.internal ]
   secret = s2
\t[door-sftp]\r
   secret = s3
# [door-commented-out]
;[door-also-out]
[door-sshfs]
   secret = s4
[hosts-not-a-door]
"""


def test_door_names_from_the_config_on_the_line(tmp_path: Path) -> None:
    config = tmp_path / "tumblerd.conf"
    config.write_bytes(DAEMON_CONFIG.encode())
    c = str(config)
    everyone = ["ssh", "web.internal", "sftp", "sshfs"]
    assert complete("tumblerd", "status", "-c", c, "") == everyone
    assert complete("tumblerd", "status", "--config", c, "ss") == ["ssh", "sshfs"]
    assert complete("tumblerd", "--config", "=", c, "status", "w") == ["web.internal"]
    assert complete("tumblerd", "-c", c, "status", "--json", "sf") == ["sftp"]
    assert complete("tumblerd", "status", "-c", c, "ssh", "") == []  # one door at most
    assert complete("tumblerd", "close", "-c", c, "192.0.2.7", "--door", "s") == [
        "ssh",
        "sftp",
        "sshfs",
    ]
    assert complete("tumblerd", "close", "--config", c, "--door=ssh") == ["ssh", "sshfs"]
    assert complete("tumblerd", "close", "-c", c, "") == []  # the ADDRESS: nothing to guess


def test_door_names_need_a_readable_config(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.conf")
    assert complete("tumblerd", "status", "-c", missing, "") == []
    assert complete("tumblerd", "status", "-c", str(tmp_path), "") == []  # a folder
    if not Path("/etc/tumbler/tumblerd.conf").exists():
        assert complete("tumblerd", "status", "") == []  # no default config: nothing, quietly


def test_the_config_is_read_not_run(tmp_path: Path) -> None:
    """A config with shell in it: completion only reads header lines, it runs nothing."""
    canary = tmp_path / "ran"
    config = tmp_path / "tumblerd.conf"
    config.write_text(
        f"[door-$(touch {canary})]\n[door-`touch {canary}`]\n[door-ok]\ncommand = touch {canary}\n"
    )
    assert complete("tumblerd", "status", "-c", str(config), "") == ["ok"]
    assert not canary.exists()


def test_files_after_file_options(tmp_path: Path) -> None:
    (tmp_path / "door.secret").write_text("x\n")
    (tmp_path / "tumblerd.conf").write_text("")
    assert complete("tumbler", "--secret-file", f"{tmp_path}/do") == [f"{tmp_path}/door.secret"]
    assert complete("tumblerd", "--config", f"{tmp_path}/tu") == [f"{tmp_path}/tumblerd.conf"]
    assert complete("tumbler", "--open", "") == []  # a URL: nothing to guess


def test_shellcheck_clean() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed; ./dev test installs it as root")
    proc = subprocess.run(
        [shellcheck, "--shell=bash", str(SCRIPT)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout
