"""The Debian package end to end (issue 15, item 1): built by `./dev deb`, installed with
`dpkg -i`, used through the installed binaries, purged with nothing left behind.

The package is built once per run into the run's tmp folder (or taken from
$TUMBLER_DEB, a .deb built earlier). It is installed for one test only and purged in a
`finally`, even when the test fails; dpkg's front-end lock is taken first, as apt does,
so an apt run elsewhere on the machine is waited for rather than broken. The installed
code lives in /usr/lib/python3/dist-packages, which the project's virtualenv does not
see: the test checks that too.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from tests.netns.netns import Topology, reach, stop
from tests.packaging import uncomment_door
from tests.waiting import wait_until
from tumbler.lab.ready import NotReady, ReadyWatch

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "tumbler"
PORT = 2222
KNOCK = 8675
SECRET = "deb-package-door-secret"

# Paths the package or its maintainer scripts make, beside those dpkg lists.
MADE = [
    "/etc/tumbler",
    "/var/lib/tumbler",
    "/var/log/tumbler",
    "/run/tumbler",
    "/usr/lib/python3/dist-packages/tumbler",
]


# The installed programs run as an administrator runs them: nothing from this test's
# environment (a virtualenv, PYTHONPATH, TUMBLER_*) reaches them.
def clean_env() -> list[str]:
    """A bare environment, but for the test's own client state (tests/conftest.py): the
    installed `tumbler` must not remember knocks in root's home across runs."""
    state = f"XDG_STATE_HOME={os.environ['XDG_STATE_HOME']}"
    return ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C.UTF-8", state]


def _env() -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


@contextmanager
def locked(path: str, what: str, timeout: float) -> Iterator[None]:
    """Hold an fcntl lock on `path`, waiting for whoever holds it now."""
    with open(path, "a") as lock:

        def taken() -> bool:
            try:
                fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return False
            return True

        wait_until(taken, what, timeout)
        try:
            yield
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)


def dpkg_lock() -> AbstractContextManager[None]:
    """dpkg's front-end lock, taken the way apt takes it (apt or dpkg elsewhere is waited for)."""
    return locked("/var/lib/dpkg/lock-frontend", "dpkg's front-end lock", 900)


def dpkg(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    with dpkg_lock():
        proc = subprocess.run(
            ["dpkg", *args],
            capture_output=True,
            text=True,
            timeout=600,
            env={**_env(), "DPKG_FRONTEND_LOCKED": "1", "DEBIAN_FRONTEND": "noninteractive"},
        )
    assert not check or proc.returncode == 0, f"dpkg {' '.join(args)}: {proc.stderr}"
    return proc


def installed() -> bool:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", PACKAGE], capture_output=True, text=True
    )
    return proc.returncode == 0 and "installed" in proc.stdout.split()


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """An installed program, with a clean environment; its outcome, whatever the status."""
    return subprocess.run([*clean_env(), *argv], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="session")
def deb(netns_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb: $TUMBLER_DEB if given, else built once per run by `./dev deb`."""
    given = os.environ.get("TUMBLER_DEB")
    if given:
        return Path(given)
    if shutil.which("dpkg") is None:
        pytest.skip("not a Debian system: no dpkg")
    out = tmp_path_factory.mktemp("deb")
    proc = subprocess.run(
        ["./dev", "deb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "TUMBLER_DEB_DIR": str(out)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("tumbler_*_all.deb")
    return built


def contents(deb: Path) -> list[str]:
    """The paths the .deb holds, absolute, without the directories every system has."""
    listing = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    names = subprocess.run(
        ["tar", "-tf", "-"], input=listing, capture_output=True, check=True
    ).stdout.decode()
    return sorted({"/" + n.removeprefix("./").rstrip("/") for n in names.split() if n != "./"})


def existing(paths: list[str]) -> set[str]:
    return {p for p in paths if os.path.lexists(p)}


def ruleset() -> str:
    """The root namespace's nftables ruleset, which the package must leave alone."""
    if shutil.which("nft") is None:
        return ""
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def test_install_use_and_purge(deb: Path, topology: Topology, tmp_path: Path) -> None:
    paths = contents(deb)
    with one_at_a_time():
        before = existing(paths + MADE)
        firewall_before = ruleset()
        with install(deb):
            check_installed(paths)
            check_example_config(tmp_path)
            knock_through_installed_binaries(topology, tmp_path)
            assert ruleset() == firewall_before, "installing or using the package changed it"
        assert not installed()
        left = existing(paths + MADE) - before
        assert not left, f"left after purge: {sorted(left)}"
        assert ruleset() == firewall_before, "purging the package changed the firewall"


@contextmanager
def install(deb: Path) -> Iterator[None]:
    """`dpkg -i` now, `dpkg --purge` at the end, whatever happens in between."""
    if installed():
        pytest.fail(
            f"the {PACKAGE} package is already installed here; this test installs and purges "
            "its own, so remove it first (dpkg --purge tumbler)",
            pytrace=False,
        )
    try:
        dpkg("-i", str(deb))
        yield
    finally:
        purge = dpkg("--purge", PACKAGE, check=False)
    assert purge.returncode == 0, purge.stderr
    assert "warning" not in purge.stderr.lower(), purge.stderr


@contextmanager
def one_at_a_time() -> Iterator[None]:
    """Another run of this test on the machine (another checkout) is waited for, not broken."""
    with locked("/run/lock/tumbler-deb-package-test", "another run of the package test", 900):
        yield


def check_installed(paths: list[str]) -> None:
    """Where everything went, with which modes; nothing started, nothing enabled."""
    for program in ("/usr/bin/tumbler", "/usr/bin/tumblerd"):
        assert os.access(program, os.X_OK), program
        assert Path(program).read_text().startswith("#!/usr/bin/python3"), program
    where = run("/usr/bin/python3", "-c", "import tumbler; print(tumbler.__file__)").stdout
    assert where.startswith("/usr/lib/python3/dist-packages/tumbler/"), where
    # The project's own interpreter still sees the project's code, not the package's.
    ours = subprocess.run(
        [sys.executable, "-c", "import tumbler; print(tumbler.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not ours.startswith("/usr/lib/python3/"), ours

    for directory, mode in (("/etc/tumbler", 0o700), ("/var/lib/tumbler", 0o700)):
        info = os.stat(directory)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == mode, directory
        assert (info.st_uid, info.st_gid) == (0, 0), directory
    conf = os.stat("/etc/tumbler/tumblerd.conf")
    assert stat.S_IMODE(conf.st_mode) == 0o600 and conf.st_uid == 0
    conffiles = subprocess.run(
        ["dpkg-query", "-W", "-f=${Conffiles}", PACKAGE], capture_output=True, text=True
    ).stdout
    assert "/etc/tumbler/tumblerd.conf" in conffiles

    unit = "/lib/systemd/system/tumblerd.service"
    assert unit in paths and os.path.isfile(unit)
    assert not os.path.lexists("/etc/systemd/system/multi-user.target.wants/tumblerd.service")
    running = [p for p in os.listdir("/proc") if p.isdigit() and _is_installed_tumblerd(p)]
    assert running == [], "installing started tumblerd"

    # The unit's Documentation=man:tumblerd(8) resolves, and so do the other pages.
    for page, section in (("tumbler", "1"), ("tumblerd", "8"), ("tumblerd.conf", "5")):
        found = subprocess.run(["man", "-w", section, page], capture_output=True, text=True)
        assert found.stdout.strip() == f"/usr/share/man/man{section}/{page}.{section}.gz", found
    completions = "/usr/share/bash-completion/completions"
    for command in ("tumbler", "tumblerd"):
        spec = subprocess.run(
            [
                "bash",
                "--norc",
                "--noprofile",
                "-c",
                f"source {completions}/{command}; complete -p {command}",
            ],
            capture_output=True,
            text=True,
        )
        assert spec.stdout.startswith("complete -F "), spec


def _is_installed_tumblerd(pid: str) -> bool:
    try:
        return b"/usr/bin/tumblerd" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def check_example_config(tmp_path: Path) -> None:
    """The example opens nothing as installed, and its door works once uncommented."""
    proc = run("/usr/bin/tumblerd", "--check-config", "--config", "/etc/tumbler/tumblerd.conf")
    assert proc.returncode == 2, proc
    assert "no [door-NAME] section" in proc.stderr, proc.stderr
    secret = tmp_path / "ssh.secret"
    secret.write_text(f"{SECRET}\n")
    secret.chmod(0o600)
    example = Path("/etc/tumbler/tumblerd.conf").read_text()
    enabled = uncomment_door(example, "ssh").replace("/etc/tumbler/ssh.secret", str(secret))
    config = tmp_path / "example-with-ssh.conf"
    config.write_text(enabled)
    config.chmod(0o600)
    proc = run("/usr/bin/tumblerd", "--check-config", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{config}: ok, 1 doors", proc.stdout
    assert proc.stderr == ""


def knock_through_installed_binaries(topo: Topology, tmp_path: Path) -> None:
    """The installed tumblerd serves a door in the lab's server; the installed tumbler opens it."""
    folder = tmp_path / "server"
    folder.mkdir(mode=0o700)
    log = folder / "tumblerd.log"
    config = folder / "tumblerd.conf"
    config.write_text(
        "[common]\n"
        f"   port = {KNOCK}\n"
        f"   listen = {topo.server4}, {topo.server6}\n"
        f"   log = {log}\n"
        f"   state = {folder / 'state.db'}\n"
        f"   control = {folder / 'control' / 'control.sock'}\n"
        "   firewall = nftables\n"
        "[door-ssh]\n"
        f"   secret = {SECRET}\n"
        f"   open = tcp/{PORT}\n"
        "   timeout = 30\n"
    )
    config.chmod(0o600)
    server = topo.server
    init = server.run(
        [*clean_env(), "/usr/bin/tumblerd", "firewall", "init", "--config", str(config)]
    )
    assert "default-closed policy applied" in init.stdout, init.stdout
    server.listen(PORT)
    stderr_path = folder / "tumblerd.stderr"
    # `env -i` clears the environment, so the notify socket is named on its command line.
    with ReadyWatch() as watch, open(stderr_path, "wb") as stderr:
        daemon = server.popen(
            [
                *clean_env(),
                f"NOTIFY_SOCKET={watch.path}",
                "/usr/bin/tumblerd",
                "--config",
                str(config),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            watch.wait(daemon)
        except NotReady as exc:
            raise AssertionError(
                f"the installed tumblerd {exc}: {stderr_path.read_text()}"
            ) from None
    assert reach(topo, PORT, "a4", "b4") == {"a4": False, "b4": False}

    sent = topo.a.run(
        [
            *clean_env(),
            "/usr/bin/tumbler",
            "-v",
            "--open",
            f"tumbler://{SECRET}@{topo.server4}:{KNOCK}/",
        ]
    )
    assert re.search(r"^datagram +\S", sent.stderr, re.MULTILINE), sent.stderr
    wait_until(
        lambda: f"opened tcp/{PORT} for {topo.a4} until" in log.read_text(),
        "the installed tumblerd to open the door for A",
    )
    assert reach(topo, PORT, "a4", "b4") == {"a4": True, "b4": False}
    assert stop(daemon) == 0
