"""The `tumbler` command: a subcommand by its first argument, else the knock.

`tumbler --open URL` is the article's client. Subcommands (`tumbler knock`, `tumbler
sniff`, `tumbler open NAME`, `tumbler ssh-proxy`, `tumbler keygen`) are dispatched through
`cli.commands.COMMANDS`, so the legacy form keeps working unchanged. The common forms of
the knock are read by `cli.quick` without argparse, the rest by `cli.openurl`: what runs
before every ssh should start fast (tests/unit/test_client_startup.py).
Errors are one line on stderr, `tumbler: error: ...`, with exit status 2 for bad
input and 1 for failures at run time (`cli.exits`); a secret is never printed.
"""

from __future__ import annotations

import sys

from tumbler.cli import quick
from tumbler.cli.commands import COMMANDS
from tumbler.cli.exits import EXIT_FAILURE, error, guard

TYPE_CHECKING = False  # not typing's: importing typing costs start-up time
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `tumbler` and `python -m tumbler`: a command, else the --open form."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        handler = COMMANDS[args[0]].load()
        if handler is None:
            error(f"'{args[0]}' is not available in this installation")
            return EXIT_FAILURE
        return handler(args[1:])
    plain = quick.plain_args(args)
    if plain is not None:
        return guard(
            lambda: quick.knock_plain(
                plain.url,
                secret_file=plain.secret_file,
                source=plain.source,
                family=plain.family,
                dry_run=plain.dry_run,
                verbose=plain.verbose,
            )
        )
    from tumbler.cli import openurl

    return openurl.open_main(args)


if __name__ == "__main__":
    sys.exit(main())
