"""SoftHSM2 for tests: a private token directory, a config, and one initialised token.

SoftHSM2 reads ``SOFTHSM2_CONF`` once, when the library is initialised, and python-pkcs11
keeps a loaded library for the life of the process; a token initialised after that is
not seen either. So there is one token directory, one config and one token per test
process: ``softhsm_token`` creates them on its first call and hands the same token to
every later caller (keys on it carry random ids, so tests do not collide).

When the library is missing it is installed with apt-get (we run as root), as
``bench/harness.py`` installs wrk. Still missing: a failure under ``CI=true``, else a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.support.postgres import in_ci

LIBRARY = os.environ.get("TENANCY_TEST_PKCS11_LIBRARY", "/usr/lib/softhsm/libsofthsm2.so")
TOKEN_LABEL = "tenancy-test"
USER_PIN = "1234-user"
SO_PIN = "5678-officer"


class SoftHSMToken(NamedTuple):
    library: str
    token_label: str
    pin: str


class _Setup(NamedTuple):
    token: SoftHSMToken
    conf: Path


_setup: _Setup | None = None


def _missing() -> str | None:
    """None when the library and ``softhsm2-util`` are there, else what is missing."""
    if not Path(LIBRARY).is_file():
        return f"the SoftHSM2 library {LIBRARY}"
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util"
    return None


def ensure_softhsm() -> None:
    """Install Debian's softhsm2 when missing; fail (CI) or skip when that did not work."""
    if _missing() is None:
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", "softhsm2"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            subprocess.run(install, capture_output=True)
    missing = _missing()
    if missing is None:
        return
    message = f"SoftHSM2 is not installed: {missing} is missing (Debian: apt-get install softhsm2)"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message + " (outside CI this skips; CI=true makes it fail)")


def _create(base: Path) -> _Setup:
    tokens = base / "tokens"
    tokens.mkdir(mode=0o700, parents=True)
    conf = base / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n",
        encoding="utf-8",
    )
    init = [
        "softhsm2-util",
        "--init-token",
        "--free",
        "--label",
        TOKEN_LABEL,
        "--so-pin",
        SO_PIN,
        "--pin",
        USER_PIN,
    ]
    done = subprocess.run(
        init, capture_output=True, text=True, env={**os.environ, "SOFTHSM2_CONF": str(conf)}
    )
    if done.returncode != 0:
        pytest.fail(f"softhsm2-util could not initialise a token: {done.stderr or done.stdout}")
    return _Setup(SoftHSMToken(LIBRARY, TOKEN_LABEL, USER_PIN), conf)


@contextmanager
def softhsm_token(base: Path) -> Iterator[SoftHSMToken]:
    """Yield ``(library_path, token_label, pin)`` of a SoftHSM2 token, with
    ``SOFTHSM2_CONF`` pointing at its private config while the block runs.

    ``base`` (an empty directory, e.g. from ``tmp_path_factory``) holds the token
    directory and the config on the first call of the process; later calls reuse them.
    Use it from a session-scoped fixture.
    """
    global _setup
    ensure_softhsm()
    if _setup is None:
        _setup = _create(base)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(_setup.conf))
        yield _setup.token
