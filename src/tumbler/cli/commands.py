"""The subcommands of `tumbler`, each loaded only when asked for.

`tumbler COMMAND ...` is dispatched on its first argument (`cli.tumbler`); anything else is
the knock, `tumbler [--open] URL`. A command's module, and what it imports, costs start-up
time only for that command.
"""

from __future__ import annotations

from collections.abc import Callable

from tumbler.cli.exits import Handler


def _load_knock() -> Handler | None:
    from tumbler.cli import sequence

    return sequence.knock_main


def _load_open() -> Handler | None:
    from tumbler.cli import proxy as proxy_cli

    return proxy_cli.open_main


def _load_ssh_proxy() -> Handler | None:
    from tumbler.cli import proxy as proxy_cli

    return proxy_cli.ssh_proxy_main


def _load_keygen() -> Handler | None:
    from tumbler.cli import keygen

    return keygen.keygen_main


def _load_sniff() -> Handler | None:
    """Imported only when asked for: it is another module's, with optional extras."""
    import importlib

    try:
        sniff = importlib.import_module("tumbler.cli.sniff")
    except ModuleNotFoundError as exc:
        if exc.name not in ("tumbler.cli.sniff", "tumbler.audit.sniff"):
            raise
        return None
    main: Handler = sniff.main
    return main


class Command:
    """A subcommand: a one-line summary for --help and a lazy loader of its main.

    A plain class: typing.NamedTuple would load typing at every start of the client.
    """

    __slots__ = ("load", "summary")

    def __init__(self, summary: str, load: Callable[[], Handler | None]) -> None:
        self.summary = summary
        self.load = load


COMMANDS: dict[str, Command] = {
    "open": Command("knock with a profile from hosts.conf, then wait for its port", _load_open),
    "ssh-proxy": Command("ssh ProxyCommand: knock, wait for the port, relay", _load_ssh_proxy),
    "knock": Command("send a classic port-knock sequence (TCP SYNs, UDP)", _load_knock),
    "sniff": Command("audit tcpdump output or a capture: knocks anyone could replay", _load_sniff),
    "keygen": Command(
        "make a v2 key: a door stanza for the server, a URL for the client", _load_keygen
    ),
}
