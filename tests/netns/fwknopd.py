"""A real fwknopd (Debian's fwknop-server) in a test namespace, opening by command cycle.

Each stanza's CMD_CYCLE_OPEN touches `open-<label>-$IP-$PROTO-$PORT-$CLIENT_TIMEOUT` in
the test's folder, so a test waits for that file instead of a firewall rule. fwknopd runs
in the foreground in UDP-server mode with its own run folder and a verbose log, which a
test reads to learn that a packet was looked at and refused.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.netns.netns import Namespace, wait_until


@dataclass
class Stanza:
    """One access.conf stanza; `label` names the files its command cycle makes."""

    label: str
    key_base64: str
    hmac_key_base64: str | None = None
    hmac_digest: str = "sha256"
    mode: str = "cbc"
    open_ports: str = "tcp/22"
    extra: str = ""

    def text(self, folder: Path) -> str:
        lines = ["SOURCE ANY", f"KEY_BASE64 {self.key_base64}", f"ENCRYPTION_MODE {self.mode}"]
        if self.hmac_key_base64 is not None:
            lines += [f"HMAC_KEY_BASE64 {self.hmac_key_base64}"]
            lines += [f"HMAC_DIGEST_TYPE {self.hmac_digest}"]
        touch = f"/usr/bin/touch {folder}/open-{self.label}-$IP-$PROTO-$PORT-$CLIENT_TIMEOUT"
        lines += [
            f"OPEN_PORTS {self.open_ports}",
            f"CMD_CYCLE_OPEN {touch}",
            "CMD_CYCLE_CLOSE NONE",
        ]
        return "\n".join(lines) + "\n" + self.extra


def fwknopd_path() -> str | None:
    return shutil.which("fwknopd") or next(
        (p for p in ("/usr/sbin/fwknopd", "/sbin/fwknopd") if Path(p).exists()), None
    )


class Fwknopd:
    """fwknopd in `ns`, listening on UDP 62201 of `interface`; the lab kills it at clean-up."""

    def __init__(self, ns: Namespace, folder: Path, stanzas: list[Stanza], interface: str = "eth0"):
        exe = fwknopd_path()
        if exe is None:
            raise RuntimeError("fwknopd is not installed (apt-get install fwknop-server)")
        self.folder = folder
        self.log = folder / "fwknopd.log"
        conf, access = folder / "fwknopd.conf", folder / "access.conf"
        conf.write_text(
            f"ENABLE_UDP_SERVER Y;\nPCAP_INTF {interface};\nFWKNOP_RUN_DIR {folder};\n"
            "ENABLE_DIGEST_PERSISTENCE N;\nMAX_SPA_PACKET_AGE 120;\n"
        )
        access.write_text("\n".join(s.text(folder) for s in stanzas))
        conf.chmod(0o600)
        access.chmod(0o600)
        argv = [
            *(exe, "-c", str(conf), "-a", str(access), "-f", "-v", "-v"),
            *("-d", str(folder / "digest.cache"), "-p", str(folder / "fwknopd.pid")),
            *("-i", interface),
        ]
        with open(self.log, "wb") as out:
            self.proc = ns.popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_until(self._started, "fwknopd to start its UDP server", 15)

    def _started(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"fwknopd exited {self.proc.returncode}: {self.log_text()}")
        return "Kicking off UDP server" in self.log_text()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def opened(self, label: str) -> list[str]:
        """The names of the files the command cycle of stanza `label` made so far."""
        return sorted(p.name for p in self.folder.glob(f"open-{label}-*"))
