"""nftables backend: the exact JSON transactions it sends, and how it reads the kernel back."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tumbler.actions.firewall import get_backend, resolve_name
from tumbler.actions.firewall.nftables import MAX_PORTS, NftablesBackend
from tumbler.actions.firewall.runner import CommandError, CommandResult
from tumbler.errors import FirewallError
from tumbler.ports import PortSpec, parse_port_list

SSH = (PortSpec("tcp", 22, 22),)
OWN = {"family": "inet", "table": "tumbler"}
ENSURE = [
    {"add": {"table": {"family": "inet", "name": "tumbler"}}},
    {
        "add": {
            "set": {
                **OWN,
                "name": "open4",
                "type": ["ipv4_addr", "inet_proto", "inet_service"],
                "flags": ["timeout"],
            }
        }
    },
    {
        "add": {
            "set": {
                **OWN,
                "name": "open6",
                "type": ["ipv6_addr", "inet_proto", "inet_service"],
                "flags": ["timeout"],
            }
        }
    },
]


class FakeNft:
    """Records each call; `lists` answers `nft -j list ...` by its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], str | None]] = []
        self.lists: dict[tuple[str, ...], Any] = {}
        self.fail_apply = False

    def run(self, argv: list[str], input: str | None = None, check: bool = True) -> CommandResult:
        full = tuple(argv)
        self.calls.append((full, input))
        if full[:3] == ("nft", "-j", "list"):
            key = full[3:]
            if key not in self.lists:
                err = "Error: No such file or directory"
                if check:
                    raise CommandError(full, err, 1, err)
                return CommandResult(full, 1, "", err)
            body = {"nftables": [{"metainfo": {"version": "1.0.6"}}, *self.lists[key]]}
            return CommandResult(full, 0, json.dumps(body), "")
        assert full == ("nft", "-j", "-f", "-")
        if self.fail_apply:
            raise CommandError(full, "exit 1: Error: Could not process rule: No such file", 1)
        return CommandResult(full, 0, "", "")

    def transactions(self) -> list[list[dict[str, Any]]]:
        return [json.loads(text)["nftables"] for argv, text in self.calls if argv[2] == "-f"]


def nft_backend(fake: FakeNft, **kw: Any) -> NftablesBackend:
    return NftablesBackend(runner=fake, **kw)  # type: ignore[arg-type]


def elem(addr: str, proto: str, port: int, timeout: int, door: str = "ssh") -> dict[str, Any]:
    return {
        "elem": {
            "val": {"concat": [addr, proto, port]},
            "timeout": timeout,
            "comment": f"tumbler:{door}",
        }
    }


def test_open_is_one_transaction_add_delete_add() -> None:
    fake = FakeNft()
    assert nft_backend(fake).open("ssh", "10.213.0.2", SSH, 30, 1000.0) == 1030.0
    [tx] = fake.transactions()
    key = {"concat": ["10.213.0.2", "tcp", 22]}
    add = {
        "add": {"element": {**OWN, "name": "open4", "elem": [elem("10.213.0.2", "tcp", 22, 30)]}}
    }
    assert tx == [
        *ENSURE,
        add,
        {"delete": {"element": {**OWN, "name": "open4", "elem": [key]}}},
        add,
    ]
    assert len(fake.calls) == 1


def test_refresh_sends_the_same_transaction() -> None:
    fake = FakeNft()
    b = nft_backend(fake)
    b.open("ssh", "10.213.0.2", SSH, 30, 1000.0)
    assert b.open("ssh", "10.213.0.2", SSH, 30, 1010.0) == 1040.0
    first, second = fake.transactions()
    assert first == second


def test_ranges_expand_and_fractional_timeouts_round_up() -> None:
    fake = FakeNft()
    expires = nft_backend(fake).open(
        "d", "fd00:213::2", parse_port_list("udp/6000-6002, tcp/22, tcp/22"), 2.2, 0.0
    )
    assert expires == 3.0
    add = fake.transactions()[0][3]["add"]["element"]
    assert add["name"] == "open6"
    assert [e["elem"]["val"]["concat"] for e in add["elem"]] == [
        ["fd00:213::2", "udp", 6000],
        ["fd00:213::2", "udp", 6001],
        ["fd00:213::2", "udp", 6002],
        ["fd00:213::2", "tcp", 22],
    ]
    assert {e["elem"]["timeout"] for e in add["elem"]} == {3}


def test_too_many_ports_is_refused_before_any_command() -> None:
    fake = FakeNft()
    with pytest.raises(FirewallError, match=f"at most {MAX_PORTS}"):
        nft_backend(fake).open("d", "10.213.0.2", (PortSpec("tcp", 1, 2000),), 30, 0.0)
    assert fake.calls == []


def test_failure_raises_and_is_a_single_transaction() -> None:
    fake = FakeNft()
    fake.fail_apply = True
    with pytest.raises(FirewallError, match="Could not process rule"):
        nft_backend(fake).open("ssh", "10.213.0.2", parse_port_list("tcp/22, tcp/80"), 30, 0.0)
    assert len(fake.calls) == 1  # nothing else ran: the kernel applied all or nothing


def test_mapped_address_goes_to_the_ipv4_set() -> None:
    fake = FakeNft()
    nft_backend(fake).open("ssh", "::ffff:10.213.0.2", SSH, 30, 0.0)
    add = fake.transactions()[0][3]["add"]["element"]
    assert add["name"] == "open4"
    assert add["elem"][0]["elem"]["val"]["concat"][0] == "10.213.0.2"


def own_table(*elems: dict[str, Any], v6: tuple[dict[str, Any], ...] = ()) -> list[dict[str, Any]]:
    return [
        {"table": {"family": "inet", "name": "tumbler", "handle": 1}},
        {
            "set": {
                **OWN,
                "name": "open4",
                "type": ["ipv4_addr", "inet_proto", "inet_service"],
                "elem": list(elems),
            }
        },
        {
            "set": {
                **OWN,
                "name": "open6",
                "type": ["ipv6_addr", "inet_proto", "inet_service"],
                "elem": list(v6),
            }
        },
    ]


def put_own(fake: FakeNft, *elems: dict[str, Any], v6: tuple[dict[str, Any], ...] = ()) -> None:
    """What `nft -j list set inet tumbler open4|open6` answers, each set on its own."""
    for item in own_table(*elems, v6=v6)[1:]:
        fake.lists[("set", "inet", "tumbler", item["set"]["name"])] = [item]


def listed(addr: str, proto: str, port: int, expires: int, door: str = "ssh") -> dict[str, Any]:
    item = elem(addr, proto, port, 30, door)
    item["elem"]["expires"] = expires
    return item


def test_list_open_reads_the_kernel_and_groups() -> None:
    fake = FakeNft()
    put_own(
        fake,
        listed("10.213.0.2", "tcp", 22, 20),
        listed("10.213.0.2", "udp", 6001, 21),
        listed("10.213.0.2", "udp", 6000, 21),
        listed("10.213.0.3", "tcp", 22, 5, door="other"),
        {
            "elem": {"val": {"concat": ["10.213.0.9", "tcp", 22]}, "timeout": 5, "expires": 4}
        },  # not ours
        v6=(listed("fd00:213::2", "tcp", 22, 9),),
    )
    entries = nft_backend(fake).list_open(1000.0)
    assert [(e.address, e.door, e.ports, e.expires) for e in entries] == [
        ("10.213.0.2", "ssh", "tcp/22, udp/6000-6001", 1021.0),
        ("10.213.0.3", "other", "tcp/22", 1005.0),
        ("fd00:213::2", "ssh", "tcp/22", 1009.0),
    ]


def test_list_open_without_table_is_empty() -> None:
    assert nft_backend(FakeNft()).list_open(0.0) == []


def test_flush_and_close_delete_in_one_transaction() -> None:
    fake = FakeNft()
    put_own(
        fake, listed("10.213.0.2", "tcp", 22, 20), listed("10.213.0.3", "tcp", 22, 20, door="b")
    )
    b = nft_backend(fake)
    assert [e.address for e in b.close("10.213.0.3", now=0.0)] == ["10.213.0.3"]
    key = {"concat": ["10.213.0.3", "tcp", 22]}
    assert fake.transactions()[-1] == [
        {
            "add": {
                "element": {**OWN, "name": "open4", "elem": [{"elem": {"val": key, "timeout": 1}}]}
            }
        },
        {"delete": {"element": {**OWN, "name": "open4", "elem": [key]}}},
    ]
    assert [e.address for e in b.flush(0.0)] == ["10.213.0.2", "10.213.0.3"]
    assert len(fake.transactions()[-1][1]["delete"]["element"]["elem"]) == 2
    assert b.close("10.213.0.2", door="nope", now=0.0) == []


def test_expire_and_restore_leave_it_to_the_kernel() -> None:
    fake = FakeNft()
    b = nft_backend(fake)
    assert b.expire(1e12) == [] and b.restore(1e12) == []
    assert fake.calls == []


def admin_set(
    name: str, kind: str, flags: tuple[str, ...] = ("timeout",), elems: tuple[Any, ...] = ()
) -> list[dict[str, Any]]:
    spec = {
        "family": "inet",
        "table": "filter",
        "name": name,
        "type": kind,
        "flags": list(flags),
        "elem": list(elems),
    }
    return [{"set": spec}]


def test_admin_set_gets_bare_address_elements() -> None:
    fake = FakeNft()
    fake.lists[("set", "inet", "filter", "tumbler_ssh")] = admin_set("tumbler_ssh", "ipv4_addr")
    b = nft_backend(fake, set_name="inet filter tumbler_ssh")
    b.open("ssh", "10.213.0.2", SSH, 30, 0.0)
    b.open("ssh", "10.213.0.2", SSH, 30, 0.0)
    tx = fake.transactions()
    ref = {"family": "inet", "table": "filter", "name": "tumbler_ssh"}
    add = {
        "add": {
            "element": {
                **ref,
                "elem": [{"elem": {"val": "10.213.0.2", "timeout": 30, "comment": "tumbler:ssh"}}],
            }
        }
    }
    assert tx[0] == [add, {"delete": {"element": {**ref, "elem": ["10.213.0.2"]}}}, add]
    assert tx[1] == tx[0]
    lists = [argv for argv, _ in fake.calls if argv[2] == "list"]
    assert len(lists) == 1  # the set's type is checked once


def test_admin_set_ipv6_needs_a_companion() -> None:
    fake = FakeNft()
    fake.lists[("set", "inet", "filter", "tumbler_ssh")] = admin_set("tumbler_ssh", "ipv4_addr")
    b = nft_backend(fake, door_sets={"ssh": "inet filter tumbler_ssh"})
    with pytest.raises(
        FirewallError,
        match=re.escape("create 'set tumbler_ssh_v6 { type ipv6_addr; flags timeout; }'"),
    ):
        b.open("ssh", "fd00:213::2", SSH, 30, 0.0)
    fake.lists[("set", "inet", "filter", "tumbler_ssh_v6")] = admin_set(
        "tumbler_ssh_v6", "ipv6_addr"
    )
    b.open("ssh", "fd00:213::2", SSH, 30, 0.0)
    assert fake.transactions()[-1][0]["add"]["element"]["name"] == "tumbler_ssh_v6"
    # Other doors still use tumbler's own table.
    b.open("web", "10.213.0.2", SSH, 30, 0.0)
    assert fake.transactions()[-1][0] == {"add": {"table": {"family": "inet", "name": "tumbler"}}}


def test_admin_set_must_time_out_and_exist() -> None:
    fake = FakeNft()
    fake.lists[("set", "inet", "filter", "plain")] = admin_set("plain", "ipv4_addr", flags=())
    with pytest.raises(FirewallError, match="lacks 'flags timeout'"):
        nft_backend(fake, set_name="inet filter plain").open("ssh", "10.213.0.2", SSH, 30, 0.0)
    with pytest.raises(FirewallError, match="does not exist"):
        nft_backend(fake, set_name="inet filter missing").open("ssh", "10.213.0.2", SSH, 30, 0.0)
    with pytest.raises(FirewallError, match="expected '<family> <table> <set>'"):
        nft_backend(fake, set_name="tumbler_ssh")
    assert fake.transactions() == []


def test_admin_set_listing_shows_only_tumbler_elements() -> None:
    fake = FakeNft()
    fake.lists[("set", "inet", "filter", "tumbler_ssh")] = admin_set(
        "tumbler_ssh",
        "ipv4_addr",
        elems=(
            {"elem": {"val": "10.213.0.2", "timeout": 30, "expires": 12, "comment": "tumbler:ssh"}},
            {"elem": {"val": "10.213.0.7", "timeout": 30, "expires": 12, "comment": "by hand"}},
            "10.213.0.8",
        ),
    )
    entries = nft_backend(fake, set_name="inet filter tumbler_ssh").list_open(100.0)
    assert [(e.address, e.ports, e.expires) for e in entries] == [
        ("10.213.0.2", "set inet filter tumbler_ssh", 112.0)
    ]


def test_policy_render_and_commands() -> None:
    b = nft_backend(FakeNft())
    text = "\n".join(b.init_policy(8675, apply=False))
    assert "type filter hook input priority filter; policy drop;" in text
    assert "udp dport 8675 accept" in text
    limit = "{ ip saddr limit rate over 25/second burst 100 packets } drop"
    assert f"udp dport 8675 add @knock4 {limit}" in text
    assert "ip saddr . meta l4proto . th dport @open4 accept" in text
    assert "ip6 saddr . meta l4proto . th dport @open6 accept" in text
    assert "meta l4proto udp drop\n\t}\n\tchain output {" in text
    unreachable = "icmpv6 type destination-unreachable icmpv6 code port-unreachable drop"
    assert text.rstrip().endswith(f'oif != "lo" {unreachable}\n\t}}\n}}')
    cmds = b.policy_commands(8675)
    assert cmds[:3] == ENSURE
    assert cmds[3] == {
        "add": {
            "chain": {
                **OWN,
                "name": "input",
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": "drop",
            }
        }
    }
    assert cmds[4] == {"flush": {"chain": {**OWN, "name": "input"}}}
    assert [c["add"]["set"]["name"] for c in cmds[5:7]] == ["knock4", "knock6"]
    assert len(cmds) == 7 + 9 + 4
    assert cmds[16]["add"]["chain"]["hook"] == "output"
    assert cmds[18]["add"]["rule"]["expr"][-1] == {"drop": None}
    assert cmds[12]["add"]["rule"]["expr"] == [
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": "udp", "field": "dport"}},
                "right": 8675,
            }
        },
        {"accept": None},
    ]
    assert cmds[10]["add"]["rule"]["expr"][0] == {
        "match": {
            "op": "==",
            "left": {"payload": {"protocol": "udp", "field": "dport"}},
            "right": 8675,
        }
    }


def test_policy_apply_is_one_transaction() -> None:
    fake = FakeNft()
    nft_backend(fake).init_policy(8675)
    assert len(fake.transactions()) == 1


def test_knock_port_is_checked() -> None:
    with pytest.raises(FirewallError, match="out of range"):
        nft_backend(FakeNft()).init_policy(0, apply=False)


def test_probe_and_auto() -> None:
    fake = FakeNft()
    fake.lists[("tables",)] = []
    assert NftablesBackend.probe(fake) is None  # type: ignore[arg-type]
    assert resolve_name("auto", fake) == "nftables"  # type: ignore[arg-type]
    assert get_backend("auto", state_path="/nonexistent", runner=fake).name == "nftables"  # type: ignore[arg-type]


def test_auto_falls_back_and_explains() -> None:
    class Nothing:
        def run(
            self, argv: list[str], input: str | None = None, check: bool = True
        ) -> CommandResult:
            raise CommandError(argv, f"{argv[0]} not found (is it installed?)")

    with pytest.raises(
        FirewallError, match=r"nftables: nft -j list tables: nft not found.*iptables: "
    ):
        resolve_name("auto", Nothing())  # type: ignore[arg-type]


def test_policy_counts_an_ipv6_source_by_its_64() -> None:
    b = nft_backend(FakeNft())
    text = "\n".join(b.init_policy(8675, apply=False))
    mask = "ffff:ffff:ffff:ffff::"
    limit = f"{{ ip6 saddr & {mask} limit rate over 25/second burst 100 packets }} drop"
    assert f"udp dport 8675 add @knock6 {limit}" in text
    assert "add @knock4 { ip saddr limit" in text  # IPv4 stays per address
    rules = [
        c["add"]["rule"]["expr"] for c in b.policy_commands(8675) if "rule" in c.get("add", {})
    ]
    updates = [
        e["set"] for expr in rules for e in expr if "set" in e and isinstance(e["set"], dict)
    ]
    (knock6,) = [u for u in updates if u.get("set") == "@knock6"]
    assert knock6["elem"] == {"&": [{"payload": {"protocol": "ip6", "field": "saddr"}}, mask]}


def test_policy_counts_an_ipv6_source_by_the_configured_prefix() -> None:
    b = nft_backend(FakeNft())
    text = "\n".join(b.init_policy(8675, apply=False, ipv6_prefix=56))
    assert "ip6 saddr & ffff:ffff:ffff:ff00:: limit rate over" in text
    rules = [
        c["add"]["rule"]["expr"] for c in b.policy_commands(8675) if "rule" in c.get("add", {})
    ]
    masks = [
        e["set"]["elem"]["&"][1]
        for expr in rules
        for e in expr
        if "set" in e and isinstance(e["set"], dict) and e["set"].get("set") == "@knock6"
    ]
    assert masks == ["ffff:ffff:ffff:ff00::"]  # what is applied is what was printed
