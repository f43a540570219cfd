"""The argv runner: every firewall command's errors say what ran and why it failed."""

from __future__ import annotations

import sys

import pytest

from tumbler.actions.firewall.runner import CommandError, Runner, clean_stderr
from tumbler.errors import FirewallError


def test_runs_argv_and_captures_output() -> None:
    result = Runner().run(
        [sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"], "hi"
    )
    assert result.returncode == 0
    assert result.stdout == "HI\n"


def test_missing_binary_is_a_firewall_error_naming_it() -> None:
    with pytest.raises(FirewallError, match="no-such-nft-binary not found"):
        Runner().run(["no-such-nft-binary", "-j", "list", "tables"])


def test_non_zero_exit_carries_command_and_stderr() -> None:
    code = "import sys; sys.stderr.write('Error: Could not process rule\\n'); sys.exit(1)"
    with pytest.raises(CommandError) as info:
        Runner().run([sys.executable, "-c", code])
    assert info.value.returncode == 1
    assert "exit 1: Error: Could not process rule" in str(info.value)
    assert sys.executable in str(info.value)


def test_permission_problem_gets_a_hint() -> None:
    code = "import sys; sys.stderr.write('Operation not permitted (you must be root)'); sys.exit(4)"
    with pytest.raises(CommandError, match="needs root or CAP_NET_ADMIN"):
        Runner().run([sys.executable, "-c", code])


def test_check_false_returns_the_exit_status() -> None:
    result = Runner().run([sys.executable, "-c", "raise SystemExit(2)"], check=False)
    assert result.returncode == 2


def test_timeout() -> None:
    with pytest.raises(CommandError, match=r"timed out after 0\.2s"):
        Runner(timeout=0.2).run([sys.executable, "-c", "import time; time.sleep(5)"])


def test_prefix_is_prepended() -> None:
    runner = Runner(prefix=[sys.executable, "-c", "import sys; print(sys.argv[1:])"])
    assert runner.run(["nft", "list"]).stdout.strip() == "['nft', 'list']"


def test_legacy_warning_noise_is_dropped() -> None:
    text = "# Warning: iptables-legacy tables present, use iptables-legacy to see them\nreal\n"
    assert clean_stderr(text) == "real"
