"""Namespace tests: marked `netns`, skipped with a reason outside root, failed instead in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns.netns import Lab, Topology, unavailable_reason

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.netns)


@pytest.fixture(scope="session")
def netns_ready() -> None:
    """Skip (or, when CI is set, fail: a skip in CI is a failure) if namespaces cannot be made."""
    reason = unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the netns tests, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def lab(netns_ready: None) -> Iterator[Lab]:
    """A lab whose namespaces and processes are removed even if the test fails."""
    made = Lab()
    try:
        yield made
    finally:
        made.cleanup()


@pytest.fixture
def topology(lab: Lab) -> Topology:
    """Server, client A and client B on one switch; see netns.Lab.topology."""
    return lab.topology()
