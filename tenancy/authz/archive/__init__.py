"""Policy bundles as OPA bundle archives (``.tar.gz``), optionally signed as OPA signs them.

One archive serves both decision points: OPA loads it itself (a bundle service, or
``opa run -b``), and ``read_bundle`` loads it for the embedded engine, so every engine of a
deployment decides with the same policies, data and revision.

The format (OPA's "snapshot" bundle):

- ``/.manifest``: ``{"revision": ..., "roots": [...]}``. The roots are the data paths the
  bundle owns; every module's package and every data key lies under one, so OPA refuses
  writes there from elsewhere and a second bundle cannot claim them.
- every Rego module at ``/<its path>`` (``read_bundle`` skips ``*_test.rego``, as
  ``PolicyBundle.from_directory`` does: tests are not policy).
- ``/data.json``: the data document. (OPA also reads ``a/b/data.json`` as ``data.a.b``.)
- ``/.signatures.json`` (first member, when signed): ``{"signatures": ["<compact JWS>"]}``.
  The JWS (RS256, or ES256/384/512 by the EC key's curve; ``kid`` in its header) signs
  ``{"files": [{"name", "hash", "algorithm": "SHA-256"}...], "iat", "iss"[, "scope"]}``:
  a digest of every other member. Digests follow OPA's rule (``bundle/hash.go``): a
  structured file (base name ``data.json``, ``data.yaml``, ``.manifest`` or
  ``.signatures.json``) is parsed and hashed in a canonical form (object keys sorted,
  no whitespace, numbers as written, strings escaped as Go's ``encoding/json`` escapes
  them), so reformatting it keeps its digest; any other file is hashed byte for byte.

Writing is reproducible: members sorted, every timestamp and owner zeroed, so equal
bundles give byte-identical archives (signed ones too with a fixed ``issued_at`` and an
RSA key; ECDSA signatures are randomised, so EC-signed archives differ in the signature
bytes alone). Reading refuses the whole archive when any part of it is unsafe, ambiguous
or unverified: nothing of a refused archive is loaded.
"""

from __future__ import annotations

# The API reference shows members in import order: writing, then digests, then reading.
from tenancy.authz.archive.writing import write_bundle

# isort: split
from tenancy.authz.archive.digest import HASH_ALGORITHM, file_digest, go_json_string
from tenancy.authz.archive.reading import DEFAULT_MAX_BYTES, read_bundle

# The member names and the signature's issuer, importable from here as they always were.
# isort: split
from tenancy.authz.archive.layout import DATA as DATA
from tenancy.authz.archive.layout import MANIFEST as MANIFEST
from tenancy.authz.archive.layout import SIGNATURES as SIGNATURES
from tenancy.authz.archive.signing import ISSUER as ISSUER

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HASH_ALGORITHM",
    "file_digest",
    "go_json_string",
    "read_bundle",
    "write_bundle",
]
