"""`tumblerd firewall init|list|flush|remove` output and exit codes, over a stub backend."""

from __future__ import annotations

import io
from collections.abc import Sequence

from tumbler.actions.firewall.base import FirewallBackend, OpenEntry
from tumbler.actions.firewall.runner import Runner
from tumbler.cli.firewall import firewall_command
from tumbler.errors import FirewallError
from tumbler.ports import PortSpec


class Stub(FirewallBackend):
    name = "stub"

    def __init__(self, entries: list[OpenEntry], fail: bool = False) -> None:
        super().__init__()
        self.entries = entries
        self.fail = fail
        self.applied: list[int] = []

    @classmethod
    def probe(cls, runner: Runner | None = None) -> str | None:
        return None

    def open(
        self, door: str, address: str, ports: Sequence[PortSpec], timeout: float, now: float
    ) -> float:
        raise NotImplementedError

    def expire(self, now: float) -> list[OpenEntry]:
        return []

    def restore(self, now: float) -> list[OpenEntry]:
        return []

    def list_open(self, now: float) -> list[OpenEntry]:
        if self.fail:
            raise FirewallError("nft not found (is it installed?)")
        return self.entries

    def close(self, address: str, door: str | None = None, *, now: float) -> list[OpenEntry]:
        return []

    def flush(self, now: float) -> list[OpenEntry]:
        closed, self.entries = self.entries, []
        return closed

    def render_policy(self, knock_port: int, ipv6_prefix: int = 64) -> list[str]:
        return [f"policy for {knock_port}"]

    def apply_policy(self, knock_port: int, ipv6_prefix: int = 64) -> None:
        self.applied.append(knock_port)

    def remove_policy(self, now: float) -> list[OpenEntry]:
        return self.flush(0.0)


def run(action: str, backend: FirewallBackend, print_only: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = firewall_command(action, backend, 8675, print_only, out, err=err, now=1000.0)
    return code, out.getvalue(), err.getvalue()


def test_list_table() -> None:
    stub = Stub(
        [
            OpenEntry("10.213.0.2", "ssh", "tcp/22", 1030.0),
            OpenEntry("fd00:213::2", "web", "tcp/443", 1300.5),
        ]
    )
    code, out, _ = run("list", stub)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["ADDRESS", "DOOR", "PORTS", "UNTIL", "REMAINING"]
    assert lines[1].split()[:3] == ["10.213.0.2", "ssh", "tcp/22"]
    assert lines[1].endswith("30s") and lines[2].endswith("300s")
    assert "T" in lines[1].split()[3]  # local ISO time
    assert lines[0].index("DOOR") == lines[1].index("ssh")


def test_list_empty() -> None:
    assert run("list", Stub([])) == (0, "nothing is open\n", "")


def test_init_print_changes_nothing() -> None:
    stub = Stub([])
    assert run("init", stub, print_only=True) == (0, "policy for 8675\n", "")
    assert stub.applied == []
    code, out, _ = run("init", stub)
    assert code == 0 and "applied" in out and stub.applied == [8675]


class ForwardStub(Stub):
    """A stub that guards forwarded ports, as nftables and iptables do."""

    def __init__(self) -> None:
        super().__init__([])
        self.guarded: list[dict[str, tuple[PortSpec, ...]]] = []

    def render_forward(self, doors):  # type: ignore[no-untyped-def]
        return [f"guard {door} {ports[0]}" for door, ports in sorted(doors.items()) if ports]

    def guard_forward(self, doors):  # type: ignore[no-untyped-def]
        self.guarded.append(dict(doors))


WEB = {"web": (PortSpec("tcp", 8080, 8080),), "mail": ()}


def test_init_print_shows_the_forward_guards() -> None:
    stub = ForwardStub()
    out, err = io.StringIO(), io.StringIO()
    code = firewall_command("init", stub, 8675, True, out, err=err, forward=WEB)
    assert (code, out.getvalue()) == (0, "policy for 8675\nguard web tcp/8080\n")
    assert stub.guarded == [] and stub.applied == []
    out = io.StringIO()
    assert firewall_command("init", stub, 8675, False, out, err=err, forward=WEB) == 0
    assert stub.applied == [8675]
    assert stub.guarded == [{"web": WEB["web"]}]  # a door that opens no port guards nothing
    assert out.getvalue().splitlines()[1] == "door web: forwarded tcp/8080 guarded"
    assert err.getvalue() == ""


def test_a_backend_that_cannot_guard_says_so() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = firewall_command("init", Stub([]), 8675, True, out, err=err, forward=WEB)
    assert code == 1 and out.getvalue() == ""
    assert (
        err.getvalue() == "tumblerd firewall init: the stub backend cannot guard forwarded ports\n"
    )
    stub = Stub([])
    assert firewall_command("init", stub, 8675, False, out, err=err, forward=WEB) == 1
    assert stub.applied == []  # refused before any change


def test_flush_reports_what_closed() -> None:
    code, out, _ = run("flush", Stub([OpenEntry("10.213.0.2", "ssh", "tcp/22", 1030.0)]))
    assert code == 0
    assert out.splitlines()[0] == "closed 1 opening(s)"


def test_errors_and_misuse() -> None:
    code, _, err = run("list", Stub([], fail=True))
    assert code == 1 and "nft not found" in err
    code, _, err = run("explode", Stub([]))
    assert code == 2 and "unknown action" in err


def test_remove_warns_what_it_opens() -> None:
    code, out, err = run("remove", Stub([OpenEntry("10.213.0.2", "ssh", "tcp/22", 1030.0)]))
    assert code == 0
    assert out == "policy removed; closed 1 opening(s)\n"
    assert err.startswith("warning: tumbler's default-closed policy is removed: every port")


class Warned(Stub):
    def policy_warnings(self) -> list[str]:
        return ["INPUT also accepts '-p tcp --dport 22 -j ACCEPT', not tumbler's rule"]


def test_init_with_rules_that_still_accept_never_says_closed() -> None:
    code, out, err = run("init", Warned([]))
    assert code == 0
    assert "default-closed" not in out.replace("not default-closed", "")
    assert err.startswith("warning: INPUT also accepts")
