"""The dev issuer's files under concurrent use: the probe runs token commands in parallel,
each opening the same issuer directory (found by the isolation kit's e2e test)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tenancy.identity import DevIssuer
from tenancy.identity.dev import JWKS_FILE


def test_opening_the_issuer_concurrently_never_fails(tmp_path: Path) -> None:
    first = DevIssuer.load_or_create(tmp_path)
    (tmp_path / JWKS_FILE).unlink()  # every opener now has to write it, at the same time

    def open_issuer(_: int) -> str:
        return DevIssuer.load_or_create(tmp_path).kid

    with ThreadPoolExecutor(max_workers=8) as pool:
        kids = set(pool.map(open_issuer, range(64)))
    assert kids == {first.kid}
    assert json.loads((tmp_path / JWKS_FILE).read_text()) == first.jwks()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["dev-issuer-ed25519.pem", JWKS_FILE]
    )  # no temporary file left behind


def test_an_unchanged_jwks_file_is_not_rewritten(tmp_path: Path) -> None:
    DevIssuer.load_or_create(tmp_path)
    jwks = tmp_path / JWKS_FILE
    os.utime(jwks, (1_000_000_000, 1_000_000_000))
    DevIssuer.load_or_create(tmp_path)
    assert jwks.stat().st_mtime == 1_000_000_000
    jwks.write_text("{}")  # changed on disk: the issuer's keys are written again
    issuer = DevIssuer.load_or_create(tmp_path)
    assert json.loads(jwks.read_text()) == issuer.jwks()
