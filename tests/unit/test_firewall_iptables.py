"""iptables backend against a simulated xtables: exact commands, atomic batches, restart logic."""

from __future__ import annotations

import shlex
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tumbler.actions.firewall import DoorGrant, get_backend
from tumbler.actions.firewall.iptables import (
    IptablesBackend,
    IptablesLegacyBackend,
    StateStore,
    parse_rule,
    restore_line,
    row_problem,
)
from tumbler.actions.firewall.runner import CommandError, CommandResult
from tumbler.errors import FirewallError
from tumbler.ports import PortSpec, parse_port_list

SSH = (PortSpec("tcp", 22, 22),)
SPEC = "-s 10.213.0.2/32 -p tcp -m tcp --dport 22 -m comment --comment"


class FakeXtables:
    """Just enough of iptables/ip6tables(-restore) to check what the backend asks for."""

    def __init__(self) -> None:
        self.chains: dict[int, dict[str, list[list[str]]]] = {
            v: {"INPUT": [], "OUTPUT": []} for v in (4, 6)
        }
        self.policy = {4: "ACCEPT", 6: "ACCEPT"}
        self.calls: list[tuple[tuple[str, ...], str | None]] = []
        self.fail: Callable[[tuple[str, ...], str | None], bool] = lambda argv, text: False

    def _done(
        self, argv: tuple[str, ...], code: int, out: str = "", err: str = "", check: bool = True
    ) -> CommandResult:
        result = CommandResult(argv, code, out, err)
        if check and code:
            raise CommandError(argv, f"exit {code}: {err}", code, err)
        return result

    def run(self, argv: list[str], input: str | None = None, check: bool = True) -> CommandResult:
        full = tuple(argv)
        self.calls.append((full, input))
        if self.fail(full, input):
            return self._done(full, 1, err="iptables: rejected by test", check=check)
        version = 6 if argv[0].startswith("ip6") else 4
        chains = self.chains[version]
        args = [a for a in argv[1:] if a not in ("-w", "5")]
        if argv[0].endswith("-restore"):
            return self._restore(full, version, input or "", check)
        op, chain, spec = args[0], args[1], args[2:]
        if op == "-S":
            if chain not in chains:
                return self._done(full, 1, err="No chain/target/match by that name.", check=check)
            head = f"-P {chain} {self.policy[version]}" if chain == "INPUT" else f"-N {chain}"
            head = "-P OUTPUT ACCEPT" if chain == "OUTPUT" else head
            lines = [head] + [f"-A {chain} {render(rule)}" for rule in chains[chain]]
            return self._done(full, 0, "\n".join(lines) + "\n")
        if op == "-N":
            if chain in chains:
                return self._done(full, 1, err="Chain already exists.", check=check)
            chains[chain] = []
        elif op == "-C":
            if spec[-1] not in chains and spec[-1] not in ("ACCEPT", "DROP"):
                return self._done(full, 2, err="Couldn't load target", check=check)
            return self._done(full, 0 if spec in chains[chain] else 1, check=check)
        elif op == "-I":
            chains[chain].insert(int(spec[0]) - 1, spec[1:])
        elif op == "-P":
            self.policy[version] = spec[0]
        else:
            raise AssertionError(f"unexpected {argv}")
        return self._done(full, 0)

    def _restore(
        self, argv: tuple[str, ...], version: int, text: str, check: bool
    ) -> CommandResult:
        assert "--noflush" in argv
        chains = {name: list(rules) for name, rules in self.chains[version].items()}
        policy = self.policy[version]
        for number, line in enumerate(text.splitlines(), 1):
            if line in ("*filter", "COMMIT"):
                continue
            if line.startswith(":INPUT "):
                policy = line.split()[1]
                continue
            if line.startswith(":"):
                chains.setdefault(line[1:].split()[0], [])
                continue
            op, chain, *spec = shlex.split(line)
            if op == "-A":
                chains[chain].append(spec)
            elif op == "-I":
                chains[chain].insert(int(spec[0]) - 1, spec[1:])
            elif op == "-F":
                chains[chain].clear()
            elif op == "-X" and not chains[chain]:
                del chains[chain]
            elif op == "-D" and spec in chains[chain]:
                chains[chain].remove(spec)
            else:
                return self._done(
                    argv, 1, err=f"iptables-restore: line {number} failed", check=check
                )
        self.chains[version] = chains
        self.policy[version] = policy
        return self._done(argv, 0)

    def rules(self, version: int = 4) -> list[str]:
        return [render(r) for r in self.chains[version].get("TUMBLER", [])]


def render(spec: list[str]) -> str:
    """Like `iptables -S`: the comment always in double quotes."""
    out = []
    for prev, token in zip(["", *spec], spec, strict=False):
        out.append(f'"{token}"' if prev == "--comment" else token)
    return " ".join(out)


def shown(addr: str, proto: str, dport: str, tag: str) -> str:
    """A rule as `iptables -S TUMBLER` shows it, after the chain name."""
    return (
        f"-s {addr} -p {proto} -m {proto} --dport {dport} "
        f'-m comment --comment "tumbler:{tag}" -j ACCEPT'
    )


@pytest.fixture
def xt() -> FakeXtables:
    return FakeXtables()


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "state.sqlite")


def backend(xt: FakeXtables, db: str) -> IptablesBackend:
    return IptablesBackend(state_path=db, runner=xt)  # type: ignore[arg-type]


def test_open_runs_exact_commands(xt: FakeXtables, db: str) -> None:
    expires = backend(xt, db).open("ssh", "10.213.0.2", SSH, 30, now=1000.0)
    assert expires == 1030.0
    assert xt.calls == [
        (("iptables", "-w", "5", "-S", "TUMBLER"), None),
        (("iptables", "-w", "5", "-N", "TUMBLER"), None),
        (("iptables", "-w", "5", "-C", "INPUT", "-j", "TUMBLER"), None),
        (("iptables", "-w", "5", "-I", "INPUT", "1", "-j", "TUMBLER"), None),
        (
            ("iptables-restore", "-w", "5", "--noflush"),
            "*filter\n-A TUMBLER -s 10.213.0.2/32 -p tcp -m tcp --dport 22 -m comment "
            "--comment tumbler:ssh:1030 -j ACCEPT\nCOMMIT\n",
        ),
    ]
    assert xt.chains[4]["INPUT"] == [["-j", "TUMBLER"]]


def test_open_several_ports_is_one_batch(xt: FakeXtables, db: str) -> None:
    backend(xt, db).open(
        "web", "10.213.0.2", parse_port_list("tcp/443, udp/60000-60010"), 5.5, 100.0
    )
    restores = [text for argv, text in xt.calls if argv[0] == "iptables-restore"]
    assert len(restores) == 1
    assert xt.rules() == [
        shown("10.213.0.2/32", "tcp", "443", "web:106"),
        shown("10.213.0.2/32", "udp", "60000:60010", "web:106"),
    ]


def test_ipv6_uses_ip6tables(xt: FakeXtables, db: str) -> None:
    backend(xt, db).open("ssh", "FD00:213::2", SSH, 30, 1000.0)
    assert {argv[0] for argv, _ in xt.calls} == {"ip6tables", "ip6tables-restore"}
    assert xt.rules(6)[0].startswith("-s fd00:213::2/128 -p tcp")


def test_legacy_variant_pairs_its_binaries(xt: FakeXtables, db: str) -> None:
    b = IptablesLegacyBackend(state_path=db, runner=xt)  # type: ignore[arg-type]
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    b.open("ssh", "fd00:213::2", SSH, 30, 1000.0)
    assert {argv[0] for argv, _ in xt.calls} == {
        "iptables-legacy",
        "iptables-legacy-restore",
        "ip6tables-legacy",
        "ip6tables-legacy-restore",
    }


def test_repeated_knock_refreshes_without_duplicate(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    xt.calls.clear()
    assert b.open("ssh", "10.213.0.2", SSH, 30, 1010.0) == 1040.0
    assert xt.calls[-1] == (
        ("iptables-restore", "-w", "5", "--noflush"),
        "*filter\n"
        f"-A TUMBLER {SPEC} tumbler:ssh:1040 -j ACCEPT\n"
        f"-D TUMBLER {SPEC} tumbler:ssh:1030 -j ACCEPT\n"
        "COMMIT\n",
    )
    assert len(xt.rules()) == 1
    assert [(e.address, e.expires) for e in b.list_open(1010.0)] == [("10.213.0.2", 1040.0)]


def test_repeat_within_the_same_second_changes_nothing(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    xt.calls.clear()
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    assert not [argv for argv, _ in xt.calls if argv[0].endswith("-restore")]
    assert len(xt.rules()) == 1


def test_rejected_batch_leaves_no_rule_and_no_row(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    xt.fail = lambda argv, text: argv[0] == "iptables-restore"
    with pytest.raises(FirewallError, match="rejected by test"):
        b.open("ssh", "10.213.0.2", parse_port_list("tcp/22, tcp/80"), 30, 1000.0)
    assert xt.rules() == []
    assert b.list_open(1000.0) == []


def test_failed_refresh_keeps_the_old_expiry(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    xt.fail = lambda argv, text: argv[0] == "iptables-restore"
    with pytest.raises(FirewallError):
        b.open("ssh", "10.213.0.2", SSH, 30, 1010.0)
    assert [e.expires for e in b.list_open(1010.0)] == [1030.0]
    assert xt.rules() == [shown("10.213.0.2/32", "tcp", "22", "ssh:1030")]


def test_missing_binary_is_reported(db: str) -> None:
    from tumbler.actions.firewall.runner import Runner

    b = IptablesBackend(state_path=db, runner=Runner(), binary="iptables-nonexistent")
    with pytest.raises(FirewallError, match="iptables-nonexistent not found"):
        b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    assert b.list_open(1000.0) == []


def test_expire_with_a_fake_clock(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    b.open("ssh", "fd00:213::3", SSH, 60, 1000.0)
    xt.calls.clear()
    assert b.expire(1029.9) == []
    assert xt.calls == []  # nothing due: no command at all
    closed = b.expire(1030.0)
    assert [(e.address, e.door, e.ports) for e in closed] == [("10.213.0.2", "ssh", "tcp/22")]
    assert xt.rules() == [] and len(xt.rules(6)) == 1
    assert [e.address for e in b.list_open(1030.0)] == ["fd00:213::3"]
    assert [e.address for e in b.expire(1060.0)] == ["fd00:213::3"]
    assert xt.rules(6) == []


def test_expire_failure_keeps_the_row_for_a_retry(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    xt.fail = lambda argv, text: argv[0] == "iptables-restore"
    with pytest.raises(FirewallError):
        b.expire(2000.0)
    xt.fail = lambda argv, text: False
    assert [e.address for e in b.expire(2000.0)] == ["10.213.0.2"]
    assert xt.rules() == []


def test_restore_after_crash_closes_due_and_keeps_the_rest(xt: FakeXtables, db: str) -> None:
    first = backend(xt, db)
    first.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    first.open("web", "10.213.0.3", parse_port_list("tcp/443"), 300, 1000.0)
    # The daemon dies; it comes back at t=1100 with the same kernel rules.
    second = backend(xt, db)
    closed = second.restore(1100.0)
    assert [(e.address, e.door) for e in closed] == [("10.213.0.2", "ssh")]
    assert xt.rules() == [shown("10.213.0.3/32", "tcp", "443", "web:1300")]
    assert [(e.address, e.expires) for e in second.list_open(1100.0)] == [("10.213.0.3", 1300.0)]


def test_restore_after_reboot_rearms_live_rules(xt: FakeXtables, db: str) -> None:
    backend(xt, db).open("web", "10.213.0.3", parse_port_list("tcp/443"), 300, 1000.0)
    backend(xt, db).open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    rebooted = FakeXtables()
    b = backend(rebooted, db)
    assert [e.address for e in b.restore(1100.0)] == ["10.213.0.2"]
    assert rebooted.chains[4]["INPUT"] == [["-j", "TUMBLER"]]
    assert rebooted.rules() == [shown("10.213.0.3/32", "tcp", "443", "web:1300")]
    assert b.restore(1100.0) == []  # idempotent
    assert len(rebooted.rules()) == 1


def test_restore_judges_rules_without_a_row_by_their_comment(
    xt: FakeXtables, tmp_path: Path
) -> None:
    backend(xt, str(tmp_path / "lost.sqlite")).open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    backend(xt, str(tmp_path / "lost.sqlite")).open("ssh", "10.213.0.4", SSH, 900, 1000.0)
    b = backend(xt, str(tmp_path / "new.sqlite"))  # the state database was lost
    assert [e.address for e in b.restore(1100.0)] == ["10.213.0.2"]
    assert [(e.address, e.expires) for e in b.list_open(1100.0)] == [("10.213.0.4", 1900.0)]
    assert len(xt.rules()) == 1
    assert [e.address for e in b.expire(1900.0)] == ["10.213.0.4"]
    assert xt.rules() == []


def test_close_and_flush(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    b.open("web", "10.213.0.2", parse_port_list("tcp/443"), 30, 1000.0)
    b.open("ssh", "fd00:213::2", SSH, 30, 1000.0)
    assert [e.door for e in b.close("10.213.0.2", "web", now=1000.0)] == ["web"]
    assert [e.door for e in b.list_open(1000.0)] == ["ssh", "ssh"]
    assert len(b.flush(1000.0)) == 2
    assert xt.rules() == [] and xt.rules(6) == []
    assert b.list_open(1000.0) == []
    assert xt.chains[4]["INPUT"] == [["-j", "TUMBLER"]]  # the chain and jump stay


def test_list_groups_ports_per_address_and_door(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("web", "10.213.0.2", parse_port_list("udp/53, tcp/443, tcp/80"), 30, 1000.0)
    [entry] = b.list_open(1000.0)
    assert (entry.address, entry.door, entry.ports, entry.expires) == (
        "10.213.0.2",
        "web",
        "tcp/80, tcp/443, udp/53",
        1030.0,
    )


def test_policy_render_and_idempotent_apply(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    lines = b.init_policy(8675, apply=False)
    tag = "-m comment --comment tumbler:policy"
    assert lines[:8] == [
        "iptables -N TUMBLER",
        "iptables -I INPUT 1 -j TUMBLER",
        f"iptables -A INPUT -i lo {tag} -j ACCEPT",
        f"iptables -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED {tag} -j ACCEPT",
        "iptables -A INPUT -p udp -m udp --dport 8675 "
        "-m hashlimit --hashlimit-above 25/sec --hashlimit-burst 100 "
        f"--hashlimit-mode srcip --hashlimit-name tumbler_knock {tag} -j DROP",
        f"iptables -A INPUT -p udp -m udp --dport 8675 {tag} -j ACCEPT",
        f"iptables -A INPUT -p udp {tag} -j DROP",
        f"iptables -A OUTPUT '!' -o lo -p icmp -m icmp --icmp-type 3/3 {tag} -j DROP",
    ]
    assert lines[8] == "iptables -P INPUT DROP"
    assert f"ip6tables -A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 135 {tag} -j ACCEPT" in lines
    assert xt.calls == []  # rendering changes nothing
    xt.chains[4]["INPUT"].append(["-p", "tcp", "--dport", "80", "-j", "ACCEPT"])  # his own
    b.init_policy(8675)
    assert xt.policy == {4: "DROP", 6: "DROP"}
    tags = [*tag.split()]
    assert xt.chains[4]["INPUT"] == [
        ["-j", "TUMBLER"],
        ["-p", "tcp", "--dport", "80", "-j", "ACCEPT"],
        ["-i", "lo", *tags, "-j", "ACCEPT"],
        ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tags, "-j", "ACCEPT"],
        [
            *("-p", "udp", "-m", "udp", "--dport", "8675", "-m", "hashlimit"),
            *("--hashlimit-above", "25/sec", "--hashlimit-burst", "100"),
            *(
                "--hashlimit-mode",
                "srcip",
                "--hashlimit-name",
                "tumbler_knock",
                *tags,
                "-j",
                "DROP",
            ),
        ],
        ["-p", "udp", "-m", "udp", "--dport", "8675", *tags, "-j", "ACCEPT"],
        ["-p", "udp", *tags, "-j", "DROP"],
    ]
    policy_batch = next(text for argv, text in xt.calls if argv[0] == "iptables-restore")
    assert policy_batch.startswith("*filter\n:TUMBLER - [0:0]\n-I INPUT 1 -j TUMBLER\n")
    assert "\n-A OUTPUT ! -o lo -p icmp" in policy_batch  # iptables-restore has no shell quotes
    before = {v: list(c["INPUT"]) for v, c in xt.chains.items()}
    b.init_policy(8675)
    assert {v: c["INPUT"] for v, c in xt.chains.items()} == before
    b.init_policy(9000)  # a new knock port replaces the old one
    text = "\n".join(render(rule) for rule in xt.chains[4]["INPUT"])
    assert "--dport 9000" in text and "--dport 8675" not in text
    assert len(xt.chains[4]["INPUT"]) == len(before[4])
    b.remove_policy(1000.0)
    assert xt.chains[4] == {"INPUT": [["-p", "tcp", "--dport", "80", "-j", "ACCEPT"]], "OUTPUT": []}
    assert xt.policy == {4: "ACCEPT", 6: "ACCEPT"}


def test_parse_rule_ignores_foreign_rules() -> None:
    assert parse_rule("-A TUMBLER -s 10.0.0.1/32 -j ACCEPT") is None
    assert parse_rule("-A INPUT " + shown("10.0.0.1/32", "tcp", "22", "a:1")) is None
    rule = parse_rule("-A TUMBLER " + shown("fd00::2/128", "udp", "6000:6010", "d:77"))
    assert rule is not None
    assert (rule.address, rule.door, rule.proto, rule.first, rule.last, rule.expires) == (
        "fd00::2",
        "d",
        "udp",
        6000,
        6010,
        77,
    )


@pytest.mark.parametrize("door", ["", "has space", "a:b", 'q"uote', "x" * 65])
def test_bad_door_names_are_refused(xt: FakeXtables, db: str, door: str) -> None:
    with pytest.raises(FirewallError, match="door name"):
        backend(xt, db).open(door, "10.213.0.2", SSH, 30, 1000.0)
    assert xt.calls == []


def test_bad_address_and_timeout(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    with pytest.raises(FirewallError, match="not an IP address"):
        b.open("ssh", "10.213.0.2; rm -rf /", SSH, 30, 1000.0)
    with pytest.raises(FirewallError, match="timeout"):
        b.open("ssh", "10.213.0.2", SSH, 0, 1000.0)
    assert xt.calls == []


def test_mapped_ipv6_counts_as_ipv4(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("ssh", "::ffff:10.213.0.2", SSH, 30, 1000.0)
    assert xt.rules()[0].startswith("-s 10.213.0.2/32 ")


def test_factory(db: str, xt: FakeXtables) -> None:
    assert get_backend("iptables", state_path=db, runner=xt).name == "iptables"  # type: ignore[arg-type]
    assert get_backend("iptables-legacy", state_path=db, runner=xt).name == "iptables-legacy"  # type: ignore[arg-type]
    with pytest.raises(FirewallError, match="needs the nftables backend"):
        get_backend("iptables", state_path=db, runner=xt, set_name="inet filter s")  # type: ignore[arg-type]
    with pytest.raises(FirewallError, match="unknown firewall backend"):
        get_backend("pf", state_path=db)


def test_undo_flips_and_reverses_a_batch() -> None:
    batch = ["-A TUMBLER -s 10.0.0.1/32 -j ACCEPT", "-D TUMBLER -s 10.0.0.2/32 -j ACCEPT"]
    assert IptablesBackend._undo(batch) == [
        "-A TUMBLER -s 10.0.0.2/32 -j ACCEPT",
        "-D TUMBLER -s 10.0.0.1/32 -j ACCEPT",
    ]


def test_state_database_write_error_leaves_no_rule(
    xt: FakeXtables, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(StateStore, "upsert", staticmethod(broken))
    with pytest.raises(FirewallError, match="readonly database"):
        backend(xt, db).open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    assert xt.rules() == []


def test_failed_commit_undoes_the_firewall_change(
    xt: FakeXtables, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = backend(xt, db)
    real = StateStore.transaction

    @contextmanager
    def transaction(self: StateStore) -> Iterator[sqlite3.Connection]:
        with real(self) as conn:
            yield conn
            raise sqlite3.OperationalError("disk I/O error")  # as the commit would

    monkeypatch.setattr(StateStore, "transaction", transaction)
    with pytest.raises(FirewallError, match="disk I/O error"):
        b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    restores = [text for argv, text in xt.calls if argv[0] == "iptables-restore"]
    assert len(restores) == 2 and "-D TUMBLER" in restores[1]
    assert xt.rules() == []
    monkeypatch.undo()
    assert b.list_open(1000.0) == []


def test_once_the_chain_is_known_a_knock_costs_one_restore(xt: FakeXtables, db: str) -> None:
    b = backend(xt, db)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    xt.calls.clear()
    b.open("ssh", "10.213.0.3", SSH, 30, 1001.0)
    b.open("ssh", "10.213.0.2", SSH, 30, 1002.0)
    assert [argv[0] for argv, _ in xt.calls] == ["iptables-restore", "iptables-restore"]
    assert len(xt.rules()) == 2


def test_a_chain_flushed_by_hand_is_read_again_and_the_knock_still_opens(
    xt: FakeXtables, db: str
) -> None:
    b = backend(xt, db)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    xt.chains[4]["TUMBLER"] = []  # an administrator flushed the chain
    xt.calls.clear()
    assert b.open("ssh", "10.213.0.2", SSH, 30, 1010.0) == 1040.0
    assert xt.rules() == [shown("10.213.0.2/32", "tcp", "22", "ssh:1040")]
    assert [argv[3] if len(argv) > 3 else argv[0] for argv, _ in xt.calls] == [
        "--noflush",  # the recorded refresh, refused: its -D finds nothing
        "-S",
        "-C",
        "--noflush",
    ]
    assert [(e.address, e.expires) for e in b.list_open(1010.0)] == [("10.213.0.2", 1040.0)]


@pytest.mark.parametrize(
    "token", ["", "a b", "a\tb", "x\n-I", 'say"hi', "it's", "back\\slash", "\x00", "é"]
)
def test_restore_line_refuses_what_iptables_restore_would_misread(token: str) -> None:
    with pytest.raises(FirewallError, match="refusing"):
        restore_line(["-A", "TUMBLER", "--comment", token])
    assert restore_line(["-A", "OUTPUT", "!", "-o", "lo"]) == "-A OUTPUT ! -o lo"


def test_row_problem_checks_form_and_the_config() -> None:
    doors = {"ssh": DoorGrant((PortSpec("tcp", 22, 22), PortSpec("udp", 6000, 6010)), 30.0)}
    now = 1000.0
    good = ("10.0.0.1", "ssh", "udp", 6001, 6002)
    assert row_problem(good, now + 30, doors, now) is None
    assert row_problem(("fd00::1", "ssh", "tcp", 22, 22), now, doors, now) is None
    bad = {
        ("10.0.0.1 ", "ssh", "tcp", 22, 22): "normal form",
        ("::ffff:10.0.0.1", "ssh", "tcp", 22, 22): "normal form",
        ("10.0.0.0/8", "ssh", "tcp", 22, 22): "not an IP address",
        ("10.0.0.1", "ssh\n-I INPUT", "tcp", 22, 22): "door name",
        ("10.0.0.1", "web", "tcp", 22, 22): "no such door",
        ("10.0.0.1", "ssh", "icmp", 22, 22): "neither tcp nor udp",
        ("10.0.0.1", "ssh", "tcp", 1, 65535): "does not open these ports",
        ("10.0.0.1", "ssh", "tcp", "22", 22): "not a port range",
        ("10.0.0.1", "ssh", "tcp", 23, 22): "not a port range",
        ("10.0.0.1", "ssh", "tcp", 0, 22): "not a port range",
        (b"10.0.0.1", "ssh", "tcp", 22, 22): "not text",
    }
    for key, why in bad.items():
        assert why in (row_problem(key, now + 10, doors, now) or ""), key
    assert "timeout" in (row_problem(good, 2100000000.0, doors, now) or "")
    assert "expiry" in (row_problem(good, float("nan"), doors, now) or "")
    assert row_problem(("10.0.0.1", "web", "tcp", 1, 9), 2e9, None, now) is None  # form only


def test_policy_counts_an_ipv6_source_by_its_64(xt: FakeXtables, db: str) -> None:
    lines = backend(xt, db).init_policy(8675, apply=False)
    (v6,) = [line for line in lines if line.startswith("ip6tables") and "hashlimit" in line]
    assert "--hashlimit-name tumbler_knock --hashlimit-srcmask 64" in v6
    (v4,) = [line for line in lines if line.startswith("iptables ") and "hashlimit" in line]
    assert "srcmask" not in v4


def test_policy_counts_an_ipv6_source_by_the_configured_prefix(xt: FakeXtables, db: str) -> None:
    lines = backend(xt, db).init_policy(8675, apply=False, ipv6_prefix=48)
    (v6,) = [line for line in lines if line.startswith("ip6tables") and "hashlimit" in line]
    assert "--hashlimit-srcmask 48" in v6
    with pytest.raises(FirewallError, match="out of range"):
        backend(xt, db).init_policy(8675, apply=False, ipv6_prefix=129)
