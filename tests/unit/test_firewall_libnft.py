"""The in-process nftables runner: which argv it takes, what it returns, when it is chosen."""

from __future__ import annotations

import pytest

from tumbler.actions.firewall import libnft
from tumbler.actions.firewall.libnft import Libnftables, LibnftRunner, default_runner
from tumbler.actions.firewall.nftables import NftablesBackend
from tumbler.actions.firewall.runner import CommandError, CommandResult, Runner
from tumbler.ports import PortSpec


class FakeLib:
    """Stands in for a libnftables context: records buffers, answers with a set status."""

    def __init__(self, status: int = 0, out: str = "", err: str = "") -> None:
        self.commands: list[str] = []
        self.answer = (status, out, err)

    def run(self, command: str) -> tuple[int, str, str]:
        self.commands.append(command)
        return self.answer


@pytest.mark.parametrize(
    ("argv", "stdin", "expected"),
    [
        (["nft", "-j", "-f", "-"], '{"nftables": []}', '{"nftables": []}'),
        (["nft", "-j", "list", "tables"], None, "list tables"),
        (["nft", "-j", "list", "set", "inet", "filter", "s"], None, "list set inet filter s"),
        (["nft", "-f", "-"], "add table inet t", None),  # not JSON mode: the program
        (["nft", "-j", "list", "-a", "ruleset"], None, None),  # options: the program
        (["nft", "-j", "flush", "ruleset"], None, None),
        (["iptables", "-S"], None, None),
        (["nft", "-j"], None, None),
    ],
)
def test_which_argv_run_in_process(argv, stdin, expected) -> None:
    assert LibnftRunner.command_for(argv, stdin) == expected


def test_in_process_result_and_failure() -> None:
    fake = FakeLib(out='{"nftables": []}')
    runner = LibnftRunner(fake)  # type: ignore[arg-type]
    result = runner.run(["nft", "-j", "list", "tables"])
    assert result == CommandResult(("nft", "-j", "list", "tables"), 0, '{"nftables": []}', "")
    assert fake.commands == ["list tables"]

    fake.answer = (1, "", "Error: No such file or directory\n")
    with pytest.raises(CommandError, match="No such file or directory") as caught:
        runner.run(["nft", "-j", "-f", "-"], input="{}")
    assert caught.value.returncode == 1
    unchecked = runner.run(["nft", "-j", "list", "table", "inet", "x"], check=False)
    assert unchecked.returncode == 1 and "No such file" in unchecked.stderr


def test_other_programs_still_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def program(self, argv, input=None, check=True):
        seen.append(tuple(argv))
        return CommandResult(tuple(argv), 0, "", "")

    monkeypatch.setattr(Runner, "run", program)
    fake = FakeLib()
    LibnftRunner(fake).run(["iptables", "-w", "5", "-S", "INPUT"])  # type: ignore[arg-type]
    assert seen == [("iptables", "-w", "5", "-S", "INPUT")]
    assert fake.commands == []


def test_library_errors_become_command_errors() -> None:
    class Broken:
        def run(self, command: str) -> tuple[int, str, str]:
            raise OSError("context is closed")

    with pytest.raises(CommandError, match="libnftables: context is closed"):
        LibnftRunner(Broken()).run(["nft", "-j", "list", "tables"])  # type: ignore[arg-type]


def test_choice_follows_the_library_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLib()
    monkeypatch.delenv(libnft.ENV, raising=False)
    monkeypatch.setattr(libnft, "load", lambda library=libnft.LIBRARY: fake)
    chosen = default_runner()
    assert isinstance(chosen, LibnftRunner) and chosen.nft is fake

    monkeypatch.setenv(libnft.ENV, "program")
    assert type(default_runner()) is Runner

    monkeypatch.delenv(libnft.ENV)
    monkeypatch.setattr(libnft, "load", lambda library=libnft.LIBRARY: None)
    assert type(default_runner()) is Runner


def test_backend_without_runner_takes_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeLib()
    monkeypatch.setattr(
        "tumbler.actions.firewall.nftables.default_runner",
        lambda: LibnftRunner(fake),  # type: ignore[arg-type]
    )
    backend = NftablesBackend()
    assert isinstance(backend.runner, LibnftRunner)
    backend.open("ssh", "192.0.2.7", (PortSpec("tcp", 22, 22),), 30, 0.0)
    assert len(fake.commands) == 1 and '"192.0.2.7"' in fake.commands[0]
    given = Runner(prefix=["ip", "netns", "exec", "x"])
    assert NftablesBackend(runner=given).runner is given


def test_missing_library_is_not_fatal() -> None:
    with pytest.raises(OSError):
        Libnftables("libtumbler-no-such-library.so.0")
    assert libnft.load("libtumbler-no-such-library.so.0") in (None, libnft._shared)
