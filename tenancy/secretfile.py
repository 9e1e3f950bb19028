"""Secrets kept in files: created once, 0600, never overwritten, refused if others can read.

Root keys, link-signing keys and webhook secrets all live this way when no environment
variable provides them; one implementation keeps the rules the same for each.
"""

from __future__ import annotations

import os
from pathlib import Path

from tenancy.errors import ConfigurationError


def load_or_create_secret(path: str | Path, *, size: int = 32) -> bytes:
    """The secret in ``path``; created with ``size`` random bytes (mode 0600, exclusive
    create, so two processes never write different secrets) when absent.

    Raises:
        ConfigurationError: the file is readable by group or others, or too short.
    """
    file = Path(path)
    if not file.exists():
        file.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it first: read theirs
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(size))
    if file.stat().st_mode & 0o077:
        raise ConfigurationError(f"secret file {file} must not be readable by others")
    secret = file.read_bytes()
    if len(secret) < size:
        raise ConfigurationError(f"secret file {file} holds fewer than {size} bytes")
    return secret
