"""The README's demonstration command, run for real: it must pass every step it checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tumbler.lab.netns import leftover_namespaces


def test_tumblerd_demo_opens_the_port_for_the_knocker_alone(
    netns_ready: None, tmp_path: Path
) -> None:
    state = tmp_path / "state"  # the user's own; the demo's client must not write there
    result = subprocess.run(
        [sys.executable, "-m", "tumbler.cli.tumblerd", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, XDG_STATE_HOME=str(state)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "a lab of network namespaces" in result.stdout
    assert "[FAILED]" not in result.stdout
    assert "[ok] A connects now" in result.stdout
    assert "[ok] A connects to the v2 door's port" in result.stdout
    assert not state.exists()
    assert "demo finished: every step behaved" in result.stdout
    assert not leftover_namespaces("tmbdemo-")
