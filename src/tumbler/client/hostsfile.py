"""Where the profile file is, and what its keys default to.

Apart from `client.profiles` (the file's parser) so that `tumbler ssh-proxy` on a host
without a profile file never loads the parser: it runs before every ssh.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PROFILES_ENV = "TUMBLER_PROFILES"
DEFAULT_WAIT_TIMEOUT = 10.0
DEFAULT_RETRY_AFTER = 3.0


def profiles_path(environ: Mapping[str, str] | None = None) -> str:
    """$TUMBLER_PROFILES, else $XDG_CONFIG_HOME/tumbler/hosts.conf, else ~/.config/..."""
    environ = os.environ if environ is None else environ
    if environ.get(PROFILES_ENV):
        return os.path.expanduser(environ[PROFILES_ENV])
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "tumbler", "hosts.conf")
