"""Where sequence doors see connection attempts: the config's `sequence_source`, parsed once.

`nflog` reads the kernel's NFLOG group (tumbler installs the logging rules); `file:PATH`
follows a kernel-format firewall log that syslog writes. KINDS is the one list of what
`sequence_source` may name, and `open_source` builds a source of each kind (importing its
module only when the config asks for it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from tumbler.sources.base import AttemptSink, Source

Kind = Literal["nflog", "file"]
KINDS: tuple[Kind, ...] = ("nflog", "file")


@dataclass(frozen=True)
class SourceSpec:
    """One sequence source: its kind, and for a log file its path and trusted line prefix."""

    kind: Kind = "nflog"
    path: str | None = None  # for `file`
    prefix: str | None = None  # for `file`: the log prefix of trusted lines (None: 'kernel:')

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """`nflog` or `file:PATH`; else ValueError."""
        if text == "nflog":
            return cls("nflog")
        if text.startswith("file:") and len(text) > len("file:"):
            return cls("file", text[len("file:") :])
        raise ValueError(f"sequence_source must be nflog or file:PATH, got {text!r}")

    def __str__(self) -> str:
        return f"file:{self.path}" if self.kind == "file" else self.kind


def open_source(
    spec: SourceSpec, *, nflog_group: int, on_foreign: Callable[[str], None] | None = None
) -> Source[AttemptSink]:
    """The (unstarted) source `spec` names: `nflog_group` for nflog, `on_foreign` for a file."""
    if spec.kind == "file":
        from tumbler.sources.logfile import LogFileSource

        return LogFileSource(str(spec.path), prefix=spec.prefix, on_foreign=on_foreign)
    from tumbler.sources.nflog import NflogSource

    return NflogSource(nflog_group)
