"""nftables in-process: libnftables through ctypes, instead of forking `nft` per change.

`nft -j -f -` costs a fork and an exec of a program that loads the ruleset cache every
time, about 10 ms from a Python daemon; the same JSON transaction through libnftables in
the daemon's own process takes a fraction of a millisecond. `LibnftRunner` is a `Runner`
that answers the two nft forms the nftables backend uses (`nft -j -f -` with JSON on
stdin, and `nft -j list ...`) through the library and hands every other argv to the
program, so the backend does not know which path it took.

The library acts in the calling process's network namespace, exactly like the `nft`
program would without a prefix; a runner with a prefix (`ip netns exec ...`) therefore
never takes the in-process path. `TUMBLER_NFT=program` in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence

from tumbler.actions.firewall.runner import CommandError, CommandResult, Runner, describe_failure

LIBRARY = "libnftables.so.1"
NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_JSON = 1 << 4
ENV = "TUMBLER_NFT"


class Libnftables:
    """One libnftables context; calls are serialised, since a context is not thread-safe."""

    def __init__(self, library: str = LIBRARY) -> None:
        lib = ctypes.CDLL(library)
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.restype = None
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.restype = None
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).restype = ctypes.c_int
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        ctx = lib.nft_ctx_new(NFT_CTX_DEFAULT)
        if not ctx:
            raise OSError("nft_ctx_new failed")
        lib.nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON)
        if lib.nft_ctx_buffer_output(ctx) or lib.nft_ctx_buffer_error(ctx):
            lib.nft_ctx_free(ctx)
            raise OSError("libnftables cannot buffer its output")
        self._lib = lib
        self._ctx: int | None = ctx
        self._lock = threading.Lock()

    def run(self, command: str) -> tuple[int, str, str]:
        """Run one command buffer (JSON or nft syntax); return (status, output, error text)."""
        with self._lock:
            if self._ctx is None:
                raise OSError("libnftables context is closed")
            status = self._lib.nft_run_cmd_from_buffer(self._ctx, command.encode("utf-8"))
            out = self._lib.nft_ctx_get_output_buffer(self._ctx) or b""
            err = self._lib.nft_ctx_get_error_buffer(self._ctx) or b""
        return (
            0 if status == 0 else 1,
            out.decode("utf-8", "replace"),
            err.decode("utf-8", "replace"),
        )

    def close(self) -> None:
        with self._lock:
            if self._ctx is not None:
                self._lib.nft_ctx_free(self._ctx)
                self._ctx = None


_shared: Libnftables | None = None
_shared_lock = threading.Lock()


def load(library: str = LIBRARY) -> Libnftables | None:
    """The process's libnftables context, or None if the library cannot load here."""
    global _shared
    with _shared_lock:
        if _shared is None:
            try:
                _shared = Libnftables(library)
            except (OSError, AttributeError):
                return None
        return _shared


class LibnftRunner(Runner):
    """A `Runner` that answers `nft -j ...` in-process and runs anything else as a program."""

    in_process = True

    def __init__(self, nft: Libnftables, timeout: float | None = None) -> None:
        super().__init__((), timeout if timeout is not None else Runner().timeout)
        self.nft = nft

    @staticmethod
    def command_for(argv: Sequence[str], input: str | None) -> str | None:
        """The library command for an nft argv, or None if it must run as a program."""
        if len(argv) < 3 or argv[0] != "nft" or argv[1] != "-j":
            return None
        rest = list(argv[2:])
        if rest == ["-f", "-"]:
            return input
        if input is None and rest[0] == "list" and all(a and not a.startswith("-") for a in rest):
            return " ".join(rest)
        return None

    def run(
        self, argv: Sequence[str], input: str | None = None, check: bool = True
    ) -> CommandResult:
        command = self.command_for(argv, input)
        if command is None:
            return super().run(argv, input, check)
        try:
            status, out, err = self.nft.run(command)
        except OSError as exc:
            raise CommandError(argv, f"libnftables: {exc}") from exc
        result = CommandResult(tuple(argv), status, out, err)
        if check and status != 0:
            raise CommandError(argv, describe_failure(result), status, err)
        return result


def default_runner() -> Runner:
    """In-process nftables when libnftables loads (and TUMBLER_NFT is not `program`)."""
    if os.environ.get(ENV, "").lower() != "program":
        nft = load()
        if nft is not None:
            return LibnftRunner(nft)
    return Runner()


__all__ = ["LibnftRunner", "Libnftables", "default_runner", "load"]
