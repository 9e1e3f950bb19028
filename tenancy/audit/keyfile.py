"""The audit key: from ``TENANCY_AUDIT_KEY`` (hex) or a file only its owner can read.

The key authenticates chain heads. It must not be readable by the database's
application role: it lives in the process environment or a 0600 file, never in a table.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tenancy.errors import ConfigurationError

ENV_VAR = "TENANCY_AUDIT_KEY"
MIN_BYTES = 32


def load_audit_key(source: bytes | str | os.PathLike[str] | None = None) -> bytes:
    """The key: ``bytes`` as given, a path to a 0600 file holding hex, or (``None``) the
    hex in ``$TENANCY_AUDIT_KEY``. Refuses keys shorter than 32 bytes."""
    if isinstance(source, bytes):
        key = source
    elif source is None:
        value = os.environ.get(ENV_VAR)
        if not value:
            raise ConfigurationError(f"no audit key: set {ENV_VAR} (hex) or pass a key file")
        key = _hex(value, ENV_VAR)
    else:
        path = Path(source)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"audit key file {path} must be mode 0600 (is {stat.S_IMODE(mode):04o})"
            )
        key = _hex(path.read_text().strip(), str(path))
    if len(key) < MIN_BYTES:
        raise ConfigurationError(f"audit key must be at least {MIN_BYTES} bytes")
    return key


def write_audit_key(path: str | os.PathLike[str]) -> bytes:
    """Create a new random key in a fresh 0600 file (never overwrites one)."""
    key = os.urandom(MIN_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.hex() + "\n")
    return key


def _hex(value: str, where: str) -> bytes:
    try:
        return bytes.fromhex(value.strip())
    except ValueError:
        raise ConfigurationError(f"audit key in {where} is not hex") from None
