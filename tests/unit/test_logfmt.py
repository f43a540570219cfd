"""JournalFormatter: syslog priority prefixes; stderr_is_journal: the dev:ino check."""

from __future__ import annotations

import io
import logging
import os

import pytest

from tumbler.cli.logfmt import JournalFormatter, priority, stderr_is_journal


def record(level: int, msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("tumblerd", level, __file__, 1, msg, None, exc_info)


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.CRITICAL, "<2>"),
        (logging.ERROR, "<3>"),
        (logging.WARNING, "<4>"),
        (logging.INFO, "<6>"),
        (logging.DEBUG, "<7>"),
        (logging.INFO + 5, "<6>"),
        (1, "<7>"),
    ],
)
def test_prefix_by_level(level, prefix):
    line = JournalFormatter("%(message)s").format(record(level, "knock accepted"))
    assert line == prefix + "knock accepted"


def test_every_line_of_a_traceback_keeps_the_priority():
    text = JournalFormatter("%(message)s").format(record(logging.ERROR, "internal error", True))
    lines = text.split("\n")
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


def test_through_a_handler():
    stream = io.StringIO()
    logger = logging.getLogger("tumbler-test-logfmt")
    logger.propagate = False
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter("%(message)s"))
    logger.addHandler(handler)
    try:
        logger.warning("replay store %s unreachable", "redis://127.0.0.1:6379/0")
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == "<4>replay store redis://127.0.0.1:6379/0 unreachable\n"


def test_priority_values():
    assert [priority(x) for x in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]


def test_stderr_is_journal_compares_device_and_inode(tmp_path, monkeypatch):
    with open(tmp_path / "stream", "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert stderr_is_journal(stream) is True
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert stderr_is_journal(stream) is False
        monkeypatch.setenv("JOURNAL_STREAM", "garbage")
        assert stderr_is_journal(stream) is False
        monkeypatch.delenv("JOURNAL_STREAM")
        assert stderr_is_journal(stream) is False
