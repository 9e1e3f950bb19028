"""Debian tools the infra tests run (haproxy, pgbouncer): installed with apt-get when
missing (we run as root), as tests/support/softhsm.py installs SoftHSM2; still missing,
a failure under ``CI=true``, else a skip."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.postgres import in_ci


def ensure_tool(binary: str, package: str) -> str:
    """The path of ``binary`` (e.g. /usr/sbin/haproxy), installing ``package`` if needed."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        install = ["apt-get", "install", "-y", "-q", package]
        if subprocess.run(install, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
            subprocess.run(install, capture_output=True, check=False)
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/usr/bin:/sbin")
    if found:
        return found
    message = f"{binary} is not installed (Debian: apt-get install {package})"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message + " (outside CI this skips; CI=true makes it fail)")
