"""`tumblerd`: the command-line front-end of the daemon and its administration commands."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from tumbler import __version__
from tumbler.cli.common import EXIT_FAILURE, EXIT_USAGE, exit_status
from tumbler.cli.logfmt import JournalFormatter, stderr_is_journal
from tumbler.config.daemon import (
    FIREWALLS,
    ROOT_CONTROL,
    Config,
    default_control_path,
    load_config,
)
from tumbler.daemon import sdnotify
from tumbler.errors import ConfigError, TumblerError
from tumbler.protocols.tumbler1 import normalize_address

DEFAULT_CONFIG = "/etc/tumbler/tumblerd.conf"

EPILOG = """\
examples:
  tumblerd --config /etc/tumbler/tumblerd.conf        serve in the foreground
  tumblerd --check-config --config tumblerd.conf      check a config and exit
  tumblerd firewall init --print                      show the default-closed policy
  tumblerd firewall list                              what is open, for whom, until when
  tumblerd status ssh                                 one door: its knocks, what it holds open
  tumblerd close 198.51.100.7 --door ssh              close one door early for an address
  tumblerd firewall remove                            take the policy away (opens the host)

signals: SIGHUP reloads the config (a broken one is refused, the old one keeps
serving); SIGTERM and SIGINT stop cleanly.

exit status (every command): 0 done, 1 failed at run time, 2 bad usage or config.
"""


def setup_logging(log_file: str | None, verbose: bool = False) -> None:
    """Log to stderr (journald reads it) and to the config's log file, if any."""
    root = logging.getLogger("tumblerd")
    root.handlers.clear()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    stderr = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        stderr.setFormatter(JournalFormatter("%(message)s"))
    else:
        stderr.setFormatter(logging.Formatter("%(asctime)s tumblerd: %(message)s", "%H:%M:%S"))
    root.addHandler(stderr)
    if log_file:
        # WatchedFileHandler reopens the file after logrotate moves it.
        handler = logging.handlers.WatchedFileHandler(log_file, encoding="utf-8")
        handler.setFormatter(
            logging.Formatter("%(asctime)s tumblerd[%(process)d]: %(levelname)s %(message)s")
        )
        root.addHandler(handler)


def _parser() -> argparse.ArgumentParser:
    config_opts = argparse.ArgumentParser(add_help=False)
    config_opts.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"config file (default {DEFAULT_CONFIG})",
    )
    parser = argparse.ArgumentParser(
        prog="tumblerd",
        description="Listen for Tumbler knocks and open doors for the addresses that knock.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=DEFAULT_CONFIG,
        help=f"config file (default {DEFAULT_CONFIG})",
    )
    parser.add_argument(
        "-p",
        "--port",
        type=int,
        metavar="N",
        help="UDP port to listen on, overriding the config's port",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="check the config file, report problems and exit",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    parser.add_argument("--version", action="version", version=f"tumblerd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    fw = sub.add_parser(
        "firewall",
        parents=[config_opts],
        help="manage the firewall doors",
        description="Manage the firewall that tumblerd's doors open.",
    )
    fw.add_argument(
        "action",
        choices=("init", "list", "flush", "remove"),
        help="init: apply the default-closed policy and guard forward doors' ports (again: "
        "converge, e.g. on a new knock port); list: what is open now; flush: close all "
        "that tumblerd opened; "
        "remove: take the policy away, which opens every port it kept closed",
    )
    fw.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="with init: print the rules instead of applying them",
    )
    fw.add_argument(
        "--backend",
        choices=FIREWALLS,
        help="firewall backend (default: the config's firewall key)",
    )
    status = sub.add_parser(
        "status", parents=[config_opts], help="show a running daemon's counters and open doors"
    )
    status.add_argument(
        "door",
        nargs="?",
        metavar="DOOR",
        help="show this door alone: its accepted knocks and what it holds open",
    )
    status.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    close = sub.add_parser(
        "close", parents=[config_opts], help="close early what is open for an address"
    )
    close.add_argument("address", help="the IPv4 or IPv6 address to close for")
    close.add_argument(
        "--door", metavar="NAME", help="close only what this door opened (default: every door)"
    )
    imp = sub.add_parser(
        "import-fwknop",
        help="print tumblerd doors equivalent to an fwknop access.conf",
        description="Read fwknop's access.conf and print the equivalent [door-NAME] sections "
        "on stdout; what cannot be carried over (GPG, NAT, command execution...) is listed on "
        "stderr. The output holds the keys: write it to a file only you can read.",
    )
    imp.add_argument("access_conf", metavar="FILE", help="fwknop's access.conf")
    sub.add_parser(
        "demo",
        help="show a knock opening a port, end to end (as root: in network namespaces)",
        description="Build a throw-away lab (network namespaces when root, loopback otherwise), "
        "knock, and show the port opening for the knocker alone. Cleans up after itself.",
    )
    return parser


def _config_for(args: argparse.Namespace) -> Config:
    """The config to act on; the administration commands work on defaults before one exists."""
    admin = args.command in ("firewall", "status", "close")
    if admin and args.config == DEFAULT_CONFIG and not os.path.exists(DEFAULT_CONFIG):
        return Config(path="(built-in defaults)")
    return load_config(args.config)


def _refuse_untrusted(config: Config) -> bool:
    """Print why the daemon must not start on these files; True if there was any reason."""
    from tumbler.daemon import paths

    problems = paths.check(config)
    for problem in problems:
        print(f"tumblerd: error: {problem}", file=sys.stderr)
    return bool(problems)


def _serve(args: argparse.Namespace, config: Config) -> int:
    from tumbler.daemon import paths
    from tumbler.daemon.wiring import Daemon

    if _refuse_untrusted(config):
        return EXIT_USAGE
    try:
        paths.make_folders(config)
    except OSError as exc:
        print(f"tumblerd: error: cannot make {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        setup_logging(config.log, args.verbose)
    except OSError as exc:
        print(f"tumblerd: error: cannot open log file {config.log}: {exc}", file=sys.stderr)
        return 1
    for warning in config.warnings:
        logging.getLogger("tumblerd").warning("warning: %s", warning)
    try:
        daemon = Daemon(config, port=args.port)

        def ready() -> None:
            sdnotify.ready(f"{len(config.doors)} doors on udp port {daemon.port}")

        daemon.on_ready = ready
        asyncio.run(daemon.serve())
    except (OSError, TumblerError) as exc:
        logging.getLogger("tumblerd").error("cannot start: %s", exc)
        return exit_status(exc)
    return 0


def _firewall(args: argparse.Namespace, config: Config) -> int:
    from tumbler.actions.firewall import get_backend, resolve_name
    from tumbler.cli.firewall import NEEDS_ROOT, can_change_firewall, firewall_command
    from tumbler.errors import FirewallError

    wanted = args.backend or config.firewall
    if not (args.print_only and args.action == "init"):
        if not can_change_firewall():
            print(f"tumblerd: error: firewall {args.action} {NEEDS_ROOT}", file=sys.stderr)
            return 1
        name = resolve_name(wanted)
    elif wanted == "auto":
        # Printing changes nothing and needs no root; probing does, so without it
        # show what auto tries first.
        try:
            name = resolve_name(wanted)
        except FirewallError:
            name = "nftables"
            print("tumblerd: auto could not probe (not root): showing nftables", file=sys.stderr)
    else:
        name = resolve_name(wanted)
    # Doors that fill an administrator's nftables set (`set = ...`): list and flush
    # must look there too, not only in tumbler's own table.
    sets = {d.name: d.set for d in config.doors if d.set} if name == "nftables" else None
    backend = get_backend(name, state_path=config.state, door_sets=sets)
    # Forward doors' openings live in their own sets or chain: list and flush look there
    # too, and init guards their ports (those of the doors on this backend).
    backend.forward_doors = {d.name: d.open for d in config.doors if d.path == "forward"}
    forward = {
        d.name: d.open
        for d in config.doors
        if d.path == "forward" and d.firewall in (config.firewall, wanted, name)
    }
    # fwknop doors take SPA packets on fwknop's port too: the policy keeps both reachable.
    ports = [config.port]
    if config.fwknop_doors and config.fwknop_port != config.port:
        ports.append(config.fwknop_port)
    return firewall_command(
        args.action,
        backend,
        ports,
        args.print_only,
        sys.stdout,
        forward=forward,
        ipv6_prefix=config.ipv6_prefix,
    )


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _ask(config: Config, message: dict[str, str]) -> dict[str, Any]:
    """Ask the running daemon; a user who is not root is told so, not that it is down."""
    from tumbler.daemon.control import request

    if os.geteuid() != 0 and config.control == default_control_path():
        # os.path, not Path.exists: root's directory is 0700, and on Python 3.11
        # Path.exists raises PermissionError for what is inside it.
        if os.path.exists(ROOT_CONTROL) or os.path.isdir(os.path.dirname(ROOT_CONTROL)):
            raise TumblerError(
                f"tumblerd {message['command']} needs root (the control socket "
                f"{ROOT_CONTROL} is root's); run it with sudo"
            )
    return request(config.control, message)


def _unknown_door(name: str, config: Config) -> str | None:
    """Why `name` names no door of the config, or None if it does."""
    names = [d.name for d in config.doors]
    if name in names:
        return None
    if not names:
        return f"no door {name!r}: {config.path} has no doors (give the daemon's: -c FILE)"
    return f"no door {name!r} in {config.path} (its doors: {', '.join(names)})"


def _door_status(answer: dict[str, Any], door: str, as_json: bool) -> int:
    """One door of a status answer: the knocks it accepted and what it holds open."""
    if door not in answer["doors"]:
        print(
            f"tumblerd: error: the running daemon has no door {door!r} "
            "(reload it to take the config's new doors)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    accepted = answer.get("accepted_by_door", {}).get(door, 0)
    entries = [e for e in answer["open"] if e["door"] == door]
    if as_json:
        print(json.dumps({"door": door, "accepted": accepted, "open": entries}, indent=2))
        return 0
    print(f"door {door}: knocks accepted since the daemon started: {accepted}")
    if not entries:
        print("open: nothing")
    for e in entries:
        print(f"open: {e['address']:<39} {e['ports']:<20} until {_when(e['expires'])}")
    return 0


def _status(args: argparse.Namespace, config: Config) -> int:
    answer = _ask(config, {"command": "status"})
    if args.door is not None:
        return _door_status(answer, args.door, args.json)
    if args.json:
        print(json.dumps(answer, indent=2, sort_keys=True))
        return 0
    uptime = int(answer["uptime"])
    print(
        f"tumblerd pid {answer['pid']}, up {uptime // 3600}h{uptime % 3600 // 60:02d}m"
        f"{uptime % 60:02d}s, udp port {answer['port']}, {len(answer['doors'])} doors, "
        f"replay {answer['replay']}"
    )
    counters = answer["counters"]
    print("knocks: " + (", ".join(f"{k} {v}" for k, v in sorted(counters.items())) or "none"))
    for worker in answer.get("workers", []):
        counts = ", ".join(f"{k} {v}" for k, v in sorted(worker["counters"].items())) or "none"
        restarts = f", restarted {worker['restarts']} times" if worker["restarts"] else ""
        print(f"worker {worker['worker']} pid {worker['pid']}{restarts}: {counts}")
    skew = answer.get("last_clock_skew")
    if skew:
        knock = (
            f"v2 knock refused for door {skew['door']}"
            if "door" in skew
            else f"signed knock refused for key {skew['key']}"
        )
        print(
            f"clock skew: last {knock} from {skew['address']} "
            f"at {_when(skew['at'])}, its clock off by {skew['offset']:+d} s"
        )
    entries = answer["open"]
    if not entries:
        print("open: nothing")
    for e in entries:
        print(
            f"open: {e['address']:<39} door {e['door']:<16} {e['ports']:<20} "
            f"until {_when(e['expires'])}"
        )
    return 0


def _close(args: argparse.Namespace, config: Config) -> int:
    message = {"command": "close", "address": args.address}
    if args.door is not None:
        message["door"] = args.door
    closed = _ask(config, message)["closed"]
    for e in closed:
        print(f"closed: {e['address']} door {e['door']} {e['ports']}")
    if not closed:
        through = f" through door {args.door}" if args.door is not None else ""
        print(f"nothing was open for {args.address}{through}")
    return 0


def _import_fwknop(path: str) -> int:
    """Print the doors for an access.conf; 0 if at least one door came out, 1 if none."""
    from tumbler.protocols.fwknop_access import convert_access_conf

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        result = convert_access_conf(text, path)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"tumblerd: error: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"tumblerd: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(result.text)
    for note in result.warnings:
        print(f"tumblerd: warning: {note}", file=sys.stderr)
    for note in result.not_carried:
        print(f"tumblerd: {note}", file=sys.stderr)
    if not result.doors:
        print(f"tumblerd: no door could be made from {path}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a closed pipe is found here, not at exit
        return code
    except BrokenPipeError:
        # `tumblerd status | head -1`: the reader left; say nothing more, and let the
        # interpreter's own flush at exit find stdout pointing nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "close":
        try:
            args.address = normalize_address(args.address)
        except ValueError:
            parser.error(f"close: not an IPv4 or IPv6 address: {args.address!r}")
    if args.command == "demo":
        from tumbler.lab.demo import main as demo

        return demo()
    if args.command == "import-fwknop":
        return _import_fwknop(args.access_conf)
    if args.port is not None and not 1 <= args.port <= 65535:
        print(f"tumblerd: error: --port {args.port} is out of range 1-65535", file=sys.stderr)
        return 2
    try:
        config = _config_for(args)
    except ConfigError as exc:
        print(f"tumblerd: error: {exc}", file=sys.stderr)
        return exit_status(exc)
    if args.check_config:
        for warning in config.warnings:
            print(f"tumblerd: warning: {warning}", file=sys.stderr)
        if config.metrics is not None and importlib.util.find_spec("prometheus_client") is None:
            from tumbler.daemon.metrics import MISSING

            print(f"tumblerd: warning: {MISSING}", file=sys.stderr)
        if config.fwknop_doors:
            from tumbler.protocols.fwknop import crypto_missing

            missing = crypto_missing()
            if missing is not None:
                names = ", ".join(d.name for d in config.fwknop_doors)
                print(
                    f"tumblerd: warning: fwknop doors {names} will be off: {missing}",
                    file=sys.stderr,
                )
        if _refuse_untrusted(config):
            return EXIT_USAGE
        print(f"{args.config}: ok, {len(config.doors)} doors")
        return 0
    door = getattr(args, "door", None)
    if door is not None:
        unknown = _unknown_door(door, config)
        if unknown is not None:
            print(f"tumblerd: error: {unknown}", file=sys.stderr)
            return EXIT_USAGE
    try:
        if args.command == "firewall":
            return _firewall(args, config)
        if args.command == "status":
            return _status(args, config)
        if args.command == "close":
            return _close(args, config)
        return _serve(args, config)
    except TumblerError as exc:
        print(f"tumblerd: error: {exc}", file=sys.stderr)
        return exit_status(exc)


if __name__ == "__main__":
    sys.exit(main())
