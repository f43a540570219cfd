"""Deciding in a worker, claiming in the main process, and the messages between them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.unit.test_daemon import CONFIG, SOURCE, T, knock
from tumbler.config.daemon import load_config
from tumbler.daemon import wire
from tumbler.daemon.pipeline import CANDIDATE, Candidate, Pipeline, build_runtime
from tumbler.daemon.stats import Stats
from tumbler.daemon.workers import exit_text
from tumbler.decisions.replay.local import MemoryReplayCache
from tumbler.decisions.replay.recent import RecentClaims
from tumbler.ports import PortSpec


@pytest.fixture
def runtime(tmp_path: Path):
    conf = tmp_path / "tumblerd.conf"
    conf.write_text(CONFIG.format(state=tmp_path / "state.db", control=tmp_path / "control.sock"))
    return build_runtime(load_config(conf))


def pipeline(runtime) -> Pipeline:
    return Pipeline(runtime, RecentClaims(MemoryReplayCache()), Stats(logging.getLogger("t")))


def test_a_worker_proposes_and_the_main_process_claims_once(runtime) -> None:
    main, one, two = pipeline(runtime), pipeline(runtime), pipeline(runtime)
    sent: list[bytes] = []
    one.defer = two.defer = lambda c: sent.append(wire.candidate(c))
    data = knock("first door secret")
    assert one.decide(data, SOURCE, T).outcome == CANDIDATE
    assert two.decide(data, SOURCE, T).outcome == CANDIDATE
    assert not one.stats.total and not two.stats.total  # nothing is counted before the claim
    verdicts = [main.settle(wire.parse_candidate(wire.parse(m)["candidate"])) for m in sent]
    assert [v.outcome for v in verdicts] == ["accepted", "replay"]
    assert verdicts[0].door is not None and verdicts[0].door.name == "ssh"
    # Told of the claim, a worker refuses further copies itself.
    candidate = wire.parse_candidate(wire.parse(sent[0])["candidate"])
    told = wire.parse(wire.claimed(candidate.key, candidate.expires))
    one.replay.note(told["claimed"], told["until"])
    assert one.decide(data, SOURCE, T).outcome == "replay"
    assert len(sent) == 2


def test_a_candidate_for_a_door_gone_by_reload_opens_nothing(runtime) -> None:
    main = pipeline(runtime)
    verdict = main.settle(Candidate("k", T + 60, T, SOURCE, ("gone",)))
    assert verdict.outcome == "no-door" and not verdict.doors


def test_candidate_round_trip_keeps_ports_and_target() -> None:
    c = Candidate(
        "fwknop:x",
        T + 60,
        T,
        "2001:db8::1",
        ("ssh",),
        "fwknop",
        "for 192.0.2.9 (user u)",
        "192.0.2.9",
        (PortSpec("tcp", 22, 22), PortSpec("udp", 60000, 60010)),
        30.0,
    )
    assert wire.parse_candidate(wire.parse(wire.candidate(c))["candidate"]) == c


@pytest.mark.parametrize(
    "change",
    [
        {"address": "not an address"},
        {"target": "1.2.3"},
        {"doors": []},
        {"doors": ["../etc"]},
        {"kind": "shell"},
        {"ports": ["tcp/0"]},
        {"expires": "soon"},
        {"now": True},
        {"expires": float("inf")},
        {"key": 5},
    ],
)
def test_a_bad_candidate_is_refused(change: dict[str, object]) -> None:
    good = json.loads(wire.candidate(Candidate("k", T + 60, T, SOURCE, ("ssh",))))["candidate"]
    good.update(change)
    with pytest.raises(wire.BadMessage):
        wire.parse_candidate(good)


@pytest.mark.parametrize("data", [b"", b"\xff", b"[]", b"{}", b'{"other": 1}'])
def test_a_message_that_is_not_one(data: bytes) -> None:
    with pytest.raises(wire.BadMessage):
        wire.parse(data)


def test_counts_and_skew() -> None:
    message = wire.parse(
        wire.counts({"no-door": 3}, {"door": "ssh", "address": SOURCE, "offset": -90, "at": T})
    )
    assert wire.parse_counts(message["counts"]) == {"no-door": 3}
    assert wire.parse_skew(message["skew"]) == {
        "door": "ssh",
        "address": SOURCE,
        "offset": -90,
        "at": T,
    }
    with pytest.raises(wire.BadMessage):
        wire.parse_counts({"no-door": -1})
    with pytest.raises(wire.BadMessage):
        wire.parse_skew({"door": "ssh", "address": "x", "at": T})


def test_exit_text() -> None:
    assert exit_text(9) == "killed by signal SIGKILL"
    assert exit_text(3 << 8) == "exit status 3"
