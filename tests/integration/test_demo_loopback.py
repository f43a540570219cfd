"""The demonstration's loopback path (what a user without root sees), run for real."""

from __future__ import annotations

import io
from pathlib import Path

from tumbler.lab.demo import Demo, run_loopback


def test_loopback_demo_passes_every_step(tmp_path: Path) -> None:
    out = io.StringIO()
    demo = Demo(out)
    run_loopback(demo, tmp_path)
    text = out.getvalue()
    assert demo.failures == 0, text
    assert "[ok] the door's command ran" in text
    assert "door hello opened for 127.0.0.1" in text
    assert "replay 1" in text
