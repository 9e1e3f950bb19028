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

import gzip
import hashlib
import io
import json
import re
import tarfile
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tenancy.authz.bundle import PolicyBundle
from tenancy.errors import ConfigurationError, PolicyBundleInvalid

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HASH_ALGORITHM",
    "file_digest",
    "go_json_string",
    "read_bundle",
    "write_bundle",
]

DEFAULT_MAX_BYTES = 16 * 2**20
HASH_ALGORITHM = "SHA-256"
ISSUER = "tenancy"
MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"
DATA = "data.json"

_STRUCTURED = frozenset({DATA, "data.yaml", MANIFEST, SIGNATURES})
# Files OPA gives a meaning the embedded engine cannot honour: refused, never skipped.
_UNSUPPORTED = {
    "data.yaml": "YAML data",
    "data.yml": "YAML data",
    "policy.wasm": "a Wasm policy",
    "patch.json": "a delta bundle patch",
}
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_PACKAGE = re.compile(
    r"^[ \t]*package[ \t]+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)[ \t]*(#.*)?$",
    re.MULTILINE,
)
_PACKAGE_LINE = re.compile(r"^[ \t]*package\b", re.MULTILINE)
# What Go's encoder escapes in a string (HTML escaping off), plus lone surrogates, which
# Go's decoder has already turned into U+FFFD.
_GO_SPECIAL = re.compile('["\\\\\x00-\x1f\u2028\u2029\ud800-\udfff]')
_SURROGATE = re.compile("[\ud800-\udfff]")
_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}

_SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
_VerificationKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


# -- writing ------------------------------------------------------------------------------


def write_bundle(
    bundle: PolicyBundle,
    *,
    revision: str | None = None,
    signing_key: bytes | None = None,
    key_id: str = "tenancy",
    scope: str | None = None,
    issued_at: int | None = None,
) -> bytes:
    """``bundle`` as a gzip'd OPA bundle archive, signed when ``signing_key`` is given.

    ``revision`` is the manifest revision (default: ``bundle.bundle_revision``), what OPA
    and the embedded engine report with every decision. ``signing_key`` is a PEM private
    key (RSA of 2048 bits or more, or EC P-256/P-384/P-521): the signature names it
    ``key_id`` and carries ``scope`` when given. ``issued_at`` fixes the signature's
    ``iat`` (default: now) so that a signed build can be reproduced.

    Raises:
        ConfigurationError: the signing key is not a supported, unencrypted PEM private
            key; ``key_id`` is empty; a module declares no package or has a path OPA
            would not load as a module; the data is not JSON.
    """
    files = _bundle_files(bundle, revision or bundle.bundle_revision)
    if signing_key is not None:
        key, algorithm = _signing_key(signing_key)
        if not key_id:
            raise ConfigurationError("a signed bundle needs a key id")
        iat = int(time.time()) if issued_at is None else issued_at
        claims = _signature_claims(files, issued_at=iat, scope=scope)
        token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": key_id})
        files = {SIGNATURES: _compact_json({"signatures": [token]}), **files}
    return _tar_gz(files)


def _bundle_files(bundle: PolicyBundle, revision: str) -> dict[str, bytes]:
    """Every member but the signatures, by name (no leading "/"), sorted."""
    files: dict[str, bytes] = {}
    roots: set[str] = set()
    for path, source in bundle.modules.items():
        _check_module_path(path)
        roots.add(_package_path(path, source)[0])
        files[path] = _utf8(source, f"module {path}")
    data = bundle.data()
    for key in data:
        if not key or "/" in key:
            raise ConfigurationError(f"data key {key!r} cannot be a bundle root")
        roots.add(key)
    files[MANIFEST] = _compact_json({"revision": revision, "roots": sorted(roots)})
    files[DATA] = _compact_json(data)
    return dict(sorted(files.items()))


def _check_module_path(path: str) -> None:
    problem = _unsafe_name(path)
    if problem is not None:
        raise ConfigurationError(f"module path {path!r} {problem}")
    if not path.endswith(".rego") or path.endswith("_test.rego"):
        raise ConfigurationError(f"module path {path!r} must end in .rego (not _test.rego)")


def _signature_claims(
    files: Mapping[str, bytes], *, issued_at: int, scope: str | None
) -> dict[str, Any]:
    """The JWS payload OPA verifies: a digest of every file, then who signed when."""
    claims: dict[str, Any] = {
        "files": [
            {"name": name, "hash": file_digest(name, content), "algorithm": HASH_ALGORITHM}
            for name, content in sorted(files.items())
        ],
        "iat": issued_at,
        "iss": ISSUER,
    }
    if scope:
        claims["scope"] = scope
    return claims


def _tar_gz(files: Mapping[str, bytes]) -> bytes:
    """A gzip'd tar of ``files`` in their order, with nothing of the build host in it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in files.items():
            info = tarfile.TarInfo("/" + name)
            info.type = tarfile.REGTYPE
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)


def _compact_json(value: Any) -> bytes:
    try:
        text = json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"bundle data is not JSON: {exc}") from exc
    return _utf8(text, "bundle data")


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(f"{what} is not valid Unicode (a lone surrogate)") from exc


def _package_path(name: str, source: str) -> tuple[str, ...]:
    """The package of a module as a data path (``package a.b`` -> ("a", "b")).

    Raises:
        ConfigurationError: no package line, or one this reader does not understand
            (quoted path segments).
    """
    match = _PACKAGE.search(source)
    first = _PACKAGE_LINE.search(source)
    if match is None or first is None or first.start() != match.start():
        raise ConfigurationError(f"module {name} declares no package this reader understands")
    return tuple(match.group(1).split("."))


# -- OPA's file digests --------------------------------------------------------------------


def file_digest(name: str, content: bytes) -> str:
    """The hex SHA-256 digest OPA signs and checks for the member ``name``: over the
    canonical form of a structured file (so its layout is free), else over the bytes.

    Raises:
        PolicyBundleInvalid: a structured file is not UTF-8 JSON (YAML is not read).
    """
    if PurePosixPath(name).name not in _STRUCTURED:
        return hashlib.sha256(content).hexdigest()
    if PurePosixPath(name).name == "data.yaml":
        raise _invalid(f"{name}: YAML data is not supported")
    value = _load_json(name, content, literal_numbers=True)
    parts: list[str] = []
    _canonical(value, parts)
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


class _Number:
    """A JSON number as written: OPA decodes numbers as ``json.Number`` and hashes the
    literal, so ``1.0`` and ``1`` differ."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _canonical(value: Any, parts: list[str]) -> None:
    """Append OPA's canonical form of ``value`` (``walk`` in OPA's hash.go)."""
    if isinstance(value, dict):
        parts.append("{")
        for index, key in enumerate(sorted(value)):
            parts.append("," if index else "")
            parts.append(go_json_string(key))
            parts.append(":")
            _canonical(value[key], parts)
        parts.append("}")
    elif isinstance(value, list):
        parts.append("[")
        for index, item in enumerate(value):
            parts.append("," if index else "")
            _canonical(item, parts)
        parts.append("]")
    elif isinstance(value, _Number):
        parts.append(value.text)
    elif isinstance(value, str):
        parts.append(go_json_string(value))
    else:
        parts.append({True: "true", False: "false", None: "null"}[value])


def go_json_string(value: str) -> str:
    """``value`` as Go's ``json.Encoder`` writes it with HTML escaping off, which OPA
    hashes: ``"`` ``\\`` and the short escapes ``\\b \\f \\n \\r \\t``, ``\\u00xx`` for
    the other control characters, ``\\u2028``/``\\u2029``, everything else as it is (a
    lone surrogate becomes U+FFFD, as Go's decoder makes it). That is Go 1.22 and later,
    as current OPA releases are built; an OPA built with Go 1.21 or earlier wrote
    ``\\u0008``/``\\u000c`` for ``\\b``/``\\f``, so a string holding those hashes
    differently there."""
    return '"' + _GO_SPECIAL.sub(_go_escape, value) + '"'


def _go_escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _GO_ESCAPES:
        return _GO_ESCAPES[char]
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    return f"\\u{ord(char):04x}"


def _go_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object as Go decodes it: lone surrogates in keys become U+FFFD, last one wins."""
    return {_SURROGATE.sub("\ufffd", key): value for key, value in pairs}


# -- reading --------------------------------------------------------------------------------


def read_bundle(
    source: bytes | str | Path,
    *,
    verification_key: bytes | None = None,
    key_id: str | None = None,
    scope: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> PolicyBundle:
    """The policy bundle in the archive ``source`` (its bytes, or a path to it), its
    ``bundle_revision`` the manifest's.

    With ``verification_key`` (a PEM public key or certificate: RSA, or EC P-256/P-384/
    P-521) the archive must carry exactly one signature by that key, naming ``key_id``
    when given and carrying ``scope`` (absent on both sides counts as equal), and the
    signature must cover every member, each with its digest. Without it any signature
    is ignored: the caller chose not to verify (a bundle from its own build, say).

    ``max_bytes`` bounds the uncompressed archive (files and tar headers), counted while
    decompressing, so a small archive that inflates without end is refused early.

    Raises:
        ConfigurationError: the verification key is not a supported PEM public key, or
            the path cannot be read.
        PolicyBundleInvalid: the archive is not a gzip'd tar, is too large, holds a
            member that is not a regular file or has an unsafe or duplicate name, lacks
            a valid manifest or a module, has a module or data outside its roots or data
            that is not a JSON object, or fails its signature check.
    """
    key = _verification_key(verification_key) if verification_key is not None else None
    members = _members(_decompressed(source, max_bytes))
    if key is not None:
        _verify(members, key, key_id=key_id, scope=scope)
    return _bundle_from(members)


def _decompressed(source: bytes | str | Path, max_bytes: int) -> bytes:
    """The tar stream, at most ``max_bytes`` of it."""
    if isinstance(source, bytes):
        compressed = source
    else:
        try:
            compressed = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"policy bundle {source} cannot be read: {exc.strerror}"
            ) from exc
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(compressed), mode="rb") as stream:
            raw = stream.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise _invalid(f"not a gzip archive ({exc})") from exc
    if len(raw) > max_bytes:
        raise _invalid(f"larger than {max_bytes} bytes uncompressed")
    return raw


def _members(raw: bytes) -> dict[str, bytes]:
    """Every regular file of the tar stream, by name without its leading "/"."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            for info in archive:
                if info.isdir():
                    continue
                name = _member_name(info)
                if name in members:
                    raise _invalid(f"{name} appears twice")
                extracted = archive.extractfile(info)
                if extracted is None:  # pragma: no cover - regular files always extract
                    raise _invalid(f"{name} cannot be read")
                members[name] = extracted.read()
            end = archive.offset
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise _invalid(f"not a tar archive ({exc})") from exc
    # tarfile ends quietly at a damaged header; only zeros may follow the last member.
    if raw[end:].strip(b"\0"):
        raise _invalid("a damaged tar header or data after the end of the archive")
    return members


def _member_name(info: tarfile.TarInfo) -> str:
    name = info.name.removeprefix("/")
    problem = _unsafe_name(name)
    if problem is not None:
        raise _invalid(f"member {info.name!r} {problem}")
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
        raise _invalid(f"member {name} is not a regular file (a link or device)")
    return name


def _unsafe_name(name: str) -> str | None:
    """Why ``name`` (no leading "/") is no safe relative path, or None."""
    if not name:
        return "has no name"
    if name.startswith("/"):
        return "is an absolute path"
    if "\\" in name:
        return "contains a backslash"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "has an empty, '.' or '..' path segment"
    return None


def _bundle_from(members: Mapping[str, bytes]) -> PolicyBundle:
    revision, roots = _manifest(members)
    modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for name, content in members.items():
        path = PurePosixPath(name)
        if name in (MANIFEST, SIGNATURES):
            continue
        if path.name in _UNSUPPORTED:
            raise _invalid(f"{name}: {_UNSUPPORTED[path.name]} is not supported")
        if path.name == MANIFEST or name.endswith("signatures.json"):
            raise _invalid(f"{name}: a manifest or signature belongs at the archive root")
        if path.name == DATA:
            _insert(data, path.parent.parts, _data_file(name, content), name)
        elif name.endswith(".rego") and not name.endswith("_test.rego"):
            modules[name] = _text(name, content)
    if not modules:
        raise _invalid("no Rego module")
    _check_roots(roots, modules, data)
    return PolicyBundle(modules, data, bundle_revision=revision)


def _manifest(members: Mapping[str, bytes]) -> tuple[str, list[tuple[str, ...]]]:
    """The manifest's revision and roots (each a data path; () owns everything)."""
    if MANIFEST not in members:
        raise _invalid("no .manifest")
    manifest = _load_json(MANIFEST, members[MANIFEST])
    if not isinstance(manifest, dict) or not isinstance(manifest.get("revision"), str):
        raise _invalid(".manifest must be a JSON object with a string revision")
    roots = manifest.get("roots")
    if roots is None:
        roots = [""]  # OPA's default: the bundle owns all of data
    if not isinstance(roots, list) or not all(isinstance(root, str) for root in roots):
        raise _invalid(".manifest roots must be a list of strings")
    if manifest.get("wasm"):
        raise _invalid(".manifest: Wasm modules are not supported")
    paths = [tuple(root.strip("/").split("/")) if root.strip("/") else () for root in roots]
    for index, first in enumerate(paths):
        for second in paths[index + 1 :]:
            if _within(first, second) or _within(second, first):
                raise _invalid(f".manifest roots overlap: {roots}")
    return manifest["revision"], paths


def _check_roots(
    roots: list[tuple[str, ...]], modules: Mapping[str, str], data: dict[str, Any]
) -> None:
    """OPA's rule: every package and every data path lies under a root."""
    for name, source in modules.items():
        try:
            package = _package_path(name, source)
        except ConfigurationError as exc:
            raise _invalid(str(exc)) from exc
        if not any(_within(package, root) for root in roots):
            raise _invalid(f"module {name} (package {'.'.join(package)}) is outside the roots")
    _check_data_roots(roots, data, ())


def _check_data_roots(roots: list[tuple[str, ...]], node: Any, path: tuple[str, ...]) -> None:
    if any(_within(path, root) for root in roots):
        return
    if isinstance(node, dict) and any(_within(root, path) for root in roots):
        for key, value in node.items():
            _check_data_roots(roots, value, (*path, key))
        return
    raise _invalid(f"data at /{'/'.join(path)} is outside the roots")


def _within(path: tuple[str, ...], root: tuple[str, ...]) -> bool:
    return path[: len(root)] == root


def _data_file(name: str, content: bytes) -> dict[str, Any]:
    value = _load_json(name, content)
    if not isinstance(value, dict):
        raise _invalid(f"{name} must hold a JSON object")
    return value


def _insert(data: dict[str, Any], where: tuple[str, ...], value: dict[str, Any], name: str) -> None:
    """Lay ``value`` at the path ``where`` of ``data``: objects merge, and a key defined
    by two files is refused, as OPA merges data files."""
    node = data
    for key in where:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise _invalid(f"{name} overlaps data defined by another file")
    _merge(node, value, name)


def _merge(into: dict[str, Any], more: Mapping[str, Any], name: str) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, name)
        elif key in into:
            raise _invalid(f"{name} defines data key {key!r} that another file defines")
        else:
            into[key] = value


def _text(name: str, content: bytes) -> str:
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid(f"{name} is not UTF-8") from exc


def _load_json(name: str, content: bytes, *, literal_numbers: bool = False) -> Any:
    """Strict JSON (no NaN or Infinity, as Go); numbers kept as written when asked."""
    number: Callable[[str], Any] | None = _Number if literal_numbers else None
    try:
        return json.loads(
            _text(name, content),
            parse_int=number,
            parse_float=number,
            parse_constant=_no_constant,
            object_pairs_hook=_go_keys if literal_numbers else None,
        )
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"{name} is not valid JSON ({exc})") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# -- signatures --------------------------------------------------------------------------------


def _verify(
    members: Mapping[str, bytes],
    key: tuple[_VerificationKey, str],
    *,
    key_id: str | None,
    scope: str | None,
) -> None:
    """OPA's check of a signed bundle: one JWS by ``key``; then every member (but the
    signatures) listed with its digest, and every listed file present."""
    if SIGNATURES not in members:
        raise _invalid("signature missing: no .signatures.json, and a key was given")
    token = _single_token(members[SIGNATURES])
    header, claims = _verified(token, key)
    if key_id is not None and header.get("kid") != key_id:
        raise _invalid(f"signature key id {header.get('kid')!r} is not {key_id!r}")
    if (claims.get("scope") or "") != (scope or ""):
        raise _invalid("signature scope mismatch")
    _check_files(members, _signed_files(claims))


def _single_token(content: bytes) -> str:
    document = _load_json(SIGNATURES, content)
    if not isinstance(document, dict) or document.get("plugin"):
        raise _invalid("signature file is not a plain .signatures.json (or names a plugin)")
    tokens = document.get("signatures")
    if not isinstance(tokens, list) or len(tokens) != 1 or not isinstance(tokens[0], str):
        raise _invalid("signature: .signatures.json must hold exactly one JWS")
    return tokens[0]


def _verified(
    token: str, key: tuple[_VerificationKey, str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``token`` once its signature checks out: a JWS check
    only, as OPA makes (no expiry or audience)."""
    public_key, algorithm = key
    try:
        decoded = jwt.PyJWS().decode_complete(token, public_key, algorithms=[algorithm])
    except jwt.PyJWTError as exc:
        raise _invalid(f"signature does not verify ({exc})") from exc
    header: dict[str, Any] = decoded["header"]
    claims = _load_json("signature payload", decoded["payload"])
    if not isinstance(claims, dict):
        raise _invalid("signature payload is not a JSON object")
    for claim in ("scope", "iss", "keyid"):
        if claims.get(claim) is not None and not isinstance(claims[claim], str):
            raise _invalid(f"signature claim {claim} is not a string")
    iat = claims.get("iat")
    if iat is not None and (isinstance(iat, bool) or not isinstance(iat, int)):
        raise _invalid("signature claim iat is not an integer")
    return header, claims


def _signed_files(claims: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The signature's file list: name -> (algorithm, hex digest)."""
    entries = claims.get("files")
    if not isinstance(entries, list):
        raise _invalid("signature lists no files")
    signed: dict[str, tuple[str, str]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise _invalid("signature file entry is not an object")
        name, algorithm, digest = (entry.get(k) for k in ("name", "algorithm", "hash"))
        if not (isinstance(name, str) and isinstance(algorithm, str) and isinstance(digest, str)):
            raise _invalid("signature file entry lacks a string name, hash or algorithm")
        if name in signed:
            raise _invalid(f"signature lists {name} twice")
        signed[name] = (algorithm, digest)
    return signed


def _check_files(members: Mapping[str, bytes], signed: dict[str, tuple[str, str]]) -> None:
    for name, content in members.items():
        if name == SIGNATURES:
            continue
        if name not in signed:
            raise _invalid(f"file {name} not in the signature")
        algorithm, digest = signed.pop(name)
        if algorithm != HASH_ALGORITHM:
            raise _invalid(f"{name}: hashing algorithm {algorithm!r} (only {HASH_ALGORITHM})")
        try:
            expected = bytes.fromhex(digest)
        except ValueError as exc:
            raise _invalid(f"{name}: the signed digest is not hex") from exc
        if bytes.fromhex(file_digest(name, content)) != expected:
            raise _invalid(f"{name}: digest mismatch")
    if signed:
        raise _invalid(f"{', '.join(sorted(signed))} listed in the signature but missing")


# -- keys ------------------------------------------------------------------------------------


def _signing_key(pem: bytes) -> tuple[_SigningKey, str]:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigurationError("the signing key is not an unencrypted PEM private key") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise _unsupported_key("signing")
    return key, _algorithm(key.public_key(), "signing")


def _verification_key(pem: bytes) -> tuple[_VerificationKey, str]:
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        try:
            key = x509.load_pem_x509_certificate(pem).public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ConfigurationError(
                "the verification key is not a PEM public key or certificate"
            ) from exc
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise _unsupported_key("verification")
    return key, _algorithm(key, "verification")


def _algorithm(key: _VerificationKey, role: str) -> str:
    """The one JWS algorithm OPA verifies with for this key type."""
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigurationError(f"the {role} key is RSA of {key.key_size} bits (< 2048)")
        return "RS256"
    algorithm = _EC_ALGORITHMS.get(key.curve.name)
    if algorithm is None:
        raise _unsupported_key(role)
    return algorithm


def _unsupported_key(role: str) -> ConfigurationError:
    return ConfigurationError(
        f"the {role} key type is not supported: OPA verifies bundle signatures made with "
        "RSA (RS256) or EC P-256/P-384/P-521 (ES256/ES384/ES512) keys"
    )


def _invalid(problem: str) -> PolicyBundleInvalid:
    return PolicyBundleInvalid(f"policy bundle: {problem}")
