"""Secrets come from environment variables or secret files, never from settings files or logs.

``get_secret("dropbox_refresh_token")`` looks, in order, at ``SMARTMETER_DROPBOX_REFRESH_TOKEN`` and at the
file named by ``SMARTMETER_DROPBOX_REFRESH_TOKEN_FILE`` (systemd credentials, Docker/K8s secrets).
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import SecretStr

from smartmeter.errors import ConfigError

PREFIX = "SMARTMETER_"


def env_name(name: str) -> str:
    return PREFIX + name.upper()


def get_secret(name: str, *, required: bool = True) -> SecretStr | None:
    """Return the secret called ``name``, or raise ConfigError naming where it was looked for."""
    var = env_name(name)
    value = os.environ.get(var)
    if value:
        return SecretStr(value.strip())
    file_var = var + "_FILE"
    path = os.environ.get(file_var)
    if path:
        try:
            return SecretStr(Path(path).read_text(encoding="utf-8").strip())
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {path} named by {file_var}: {exc.strerror}") from exc
    if required:
        raise ConfigError(f"secret {name!r} is not set", hint=f"set {var} or {file_var}")
    return None
