"""The one door through which every firewall program runs.

Every change to the firewall goes through `Runner.run`: an argv list (never a
shell), a timeout, captured output, and a `FirewallError` that names the command
and the reason. Backends take a runner in their constructor, so tests can hand
them a fake that records each call, and the network-namespace tests can hand
them a runner whose `prefix` is `ip netns exec <ns>`.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from tumbler.errors import FirewallError

DEFAULT_TIMEOUT = 15.0

# iptables-nft prints this on every call when legacy tables also exist; it is
# noise, not a reason, and would only confuse an error message.
_NOISE = ("# Warning: iptables-legacy tables present",)


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandError(FirewallError):
    """A firewall command that could not run or exited non-zero."""

    def __init__(
        self, argv: Sequence[str], reason: str, returncode: int | None = None, stderr: str = ""
    ) -> None:
        self.argv = tuple(argv)
        self.reason = reason
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(f"{shlex.join(self.argv)}: {reason}")


def clean_stderr(text: str) -> str:
    """Drop known noise lines and join the rest into one line for a log message."""
    lines = [line.strip() for line in text.splitlines()]
    kept = [line for line in lines if line and not line.startswith(_NOISE)]
    return " | ".join(kept)


class Runner:
    """Runs firewall programs from argv lists, optionally inside a prefix.

    `prefix` is prepended to every argv (e.g. `["ip", "netns", "exec", "ns1"]`);
    the backends never know about it.
    """

    def __init__(self, prefix: Sequence[str] = (), timeout: float = DEFAULT_TIMEOUT) -> None:
        self.prefix = tuple(prefix)
        self.timeout = timeout

    def run(
        self, argv: Sequence[str], input: str | None = None, check: bool = True
    ) -> CommandResult:
        """Run argv (with `input` on stdin); raise `CommandError` if it cannot run.

        With `check` (the default) a non-zero exit raises too; without it the
        caller reads `returncode` itself (for probes such as `iptables -C`).
        """
        if not argv:
            raise ValueError("empty argv")
        full = (*self.prefix, *argv)
        try:
            proc = subprocess.run(
                full,
                input=input,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError as exc:
            missing = exc.filename or full[0]
            raise CommandError(full, f"{missing} not found (is it installed?)") from exc
        except PermissionError as exc:
            raise CommandError(full, f"permission denied: {exc.strerror}") from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandError(full, f"timed out after {self.timeout:g}s") from exc
        except OSError as exc:
            raise CommandError(full, f"cannot run: {exc}") from exc
        result = CommandResult(full, proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise CommandError(full, describe_failure(result), proc.returncode, proc.stderr)
        return result


def describe_failure(result: CommandResult) -> str:
    """A one-line reason for a non-zero exit, with a hint when it is a privilege problem."""
    err = clean_stderr(result.stderr) or clean_stderr(result.stdout) or "no output"
    reason = f"exit {result.returncode}: {err}"
    lowered = err.lower()
    if "operation not permitted" in lowered or "permission denied" in lowered:
        reason += " (needs root or CAP_NET_ADMIN)"
    return reason
