"""The one table from an error to an exit status, and the one-line error every command prints.

Errors are one line on stderr, `tumbler: error: ...`, with exit status 2 for bad input and
1 for failures at run time; a secret is never printed. Apart from `cli.common` (which
re-exports all of it beside the argparse parts) because the plain knock, `tumbler --open
URL`, reports its errors here without loading argparse.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from tumbler.client.knock import KnockUsageError
from tumbler.errors import ConfigError, SecretFileError, TumblerError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[list[str]], int]


def error(message: str) -> None:
    print(f"tumbler: error: {message}", file=sys.stderr)


def warn(message: str) -> None:
    print(f"tumbler: warning: {message}", file=sys.stderr)


def exit_status(exc: BaseException) -> int:
    """The one table from an error to an exit status, for every command of both programs.

    2 for input that cannot work (an option, a URL, a config, a secret file's content),
    1 for a failure at run time (a file that cannot be read, a network or firewall error).
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, SecretFileError):
        return EXIT_FAILURE if exc.unreadable else EXIT_USAGE
    if isinstance(exc, KnockUsageError | ConfigError):
        return EXIT_USAGE
    return EXIT_FAILURE


def guard(body: Callable[[], int]) -> int:
    """Run a command, mapping the library's errors to one line and an exit status."""
    try:
        return body()
    except TumblerError as exc:
        error(str(exc))
        return exit_status(exc)
    except OSError as exc:
        error(exc.strerror or str(exc))
        return exit_status(exc)
    except KeyboardInterrupt as exc:
        print(file=sys.stderr)
        return exit_status(exc)
