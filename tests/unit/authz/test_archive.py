"""OPA bundle archives: written reproducibly in OPA's layout, signed and verified with
OPA's digest rule, and refused whole when unsafe, malformed or tampered with."""

from __future__ import annotations

import datetime
import functools
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from tenancy.authz import EmbeddedRego, PolicyBundle, default_policy_dir
from tenancy.authz.archive import file_digest, go_json_string, read_bundle, write_bundle
from tenancy.authz.policytests import fixture_bundle, policy_cases
from tenancy.errors import ConfigurationError, PolicyBundleInvalid

APP_DATA: dict[str, Any] = json.loads(
    (default_policy_dir() / "cases" / "app.json").read_text(encoding="utf-8")
)
MODULE = b'package tenancy.authz\n\ndecision := {"allow": false}\n'
MODULE_NAME = "/tenancy/authz/authz.rego"
SIGNATURES = "/.signatures.json"


# -- keys --------------------------------------------------------------------------------


@functools.cache
def private_key(kind: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    curves = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1(), "ec-p521": ec.SECP521R1()}
    return ec.generate_private_key(curves[kind])


def private_pem(kind: str) -> bytes:
    return private_key(kind).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(kind: str) -> bytes:
    return (
        private_key(kind)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


# -- archives ------------------------------------------------------------------------------


def members_of(archive: bytes) -> dict[str, bytes]:
    """Every member by its name as stored, in archive order."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {info.name: tar.extractfile(info).read() for info in tar}  # type: ignore[union-attr]


def tar_gz(files: Mapping[str, bytes], *, special: Sequence[tarfile.TarInfo] = ()) -> bytes:
    """A gzip'd tar of ``files`` (names as given) followed by the ``special`` entries."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for info in special:
            tar.addfile(info)
    return gzip.compress(buffer.getvalue())


def changed(archive: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    """The archive rebuilt with ``change`` applied to its members (signature kept as is)."""
    files = members_of(archive)
    change(files)
    return tar_gz(files)


def hand_built(
    files: Mapping[str, bytes | None] | None = None, *, manifest: Any = None, data: Any = None
) -> bytes:
    """A minimal archive: a manifest, one module, data; each replaceable (None drops it)."""
    manifest = {"revision": "hand", "roots": ["tenancy"]} if manifest is None else manifest
    content: dict[str, bytes | None] = {
        "/.manifest": json.dumps(manifest).encode(),
        "/data.json": json.dumps({"tenancy": {}} if data is None else data).encode(),
        MODULE_NAME: MODULE,
    }
    content.update(files or {})
    return tar_gz({name: value for name, value in content.items() if value is not None})


def signed(kind: str = "rsa", bundle: PolicyBundle | None = None, **options: Any) -> bytes:
    options = {"issued_at": 1, **options}
    return write_bundle(bundle or fixture_bundle(), signing_key=private_pem(kind), **options)


def claims_of(archive: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    [token] = json.loads(members_of(archive)[SIGNATURES])["signatures"]
    payload = jwt.decode(token, options={"verify_signature": False})
    return jwt.get_unverified_header(token), payload


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def laid_over() -> PolicyBundle:
    extra = {"tenancy": {"sensitive_scopes": ["worklogs:export"]}}
    unusual = {"odd": {"é😀": ["<&>", "\b\f\x1f\u2028", 1.5, -0.25, 10**20, None, True]}}
    return PolicyBundle.from_directory(data=[APP_DATA, extra, unusual])


# -- writing and reading back ------------------------------------------------------------------


@pytest.mark.parametrize("make", [PolicyBundle.from_directory, laid_over], ids=["shipped", "laid"])
def test_a_bundle_reads_back_as_it_was_written(make: Callable[[], PolicyBundle]) -> None:
    bundle = make()
    archive = write_bundle(bundle)

    back = read_bundle(archive)

    assert back.modules == bundle.modules and list(back.modules) == ["tenancy/authz/authz.rego"]
    assert back.data() == bundle.data()
    manifest = json.loads(members_of(archive)["/.manifest"])
    assert back.bundle_revision == manifest["revision"] == bundle.bundle_revision


def test_an_explicit_revision_is_the_manifest_revision() -> None:
    archive = write_bundle(fixture_bundle(), revision="r7")
    assert json.loads(members_of(archive)["/.manifest"])["revision"] == "r7"
    assert read_bundle(archive).bundle_revision == "r7"


def test_a_path_to_the_archive_reads_like_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(write_bundle(fixture_bundle(), revision="on-disk"))
    assert read_bundle(path).bundle_revision == "on-disk"
    assert read_bundle(str(path)).bundle_revision == "on-disk"
    with pytest.raises(ConfigurationError, match="cannot be read"):
        read_bundle(tmp_path / "missing.tar.gz")


def test_the_archive_is_reproducible() -> None:
    bundle = laid_over()
    assert write_bundle(bundle) == write_bundle(laid_over())
    assert signed("rsa", bundle) == signed("rsa", laid_over())
    assert signed("rsa", bundle) != signed("rsa", bundle, issued_at=2)
    # ECDSA signatures are randomised: everything but the signature bytes is the same.
    first, second = (
        json.loads(members_of(signed("ec-p256", bundle))[SIGNATURES])["signatures"][0]
        for _ in range(2)
    )
    assert first.rsplit(".", 1)[0] == second.rsplit(".", 1)[0]


def test_the_archive_is_laid_out_as_opa_expects() -> None:
    bundle = laid_over()
    archive = signed("rsa", bundle, revision="v3")

    assert archive[:2] == b"\x1f\x8b" and archive[4:8] == b"\0\0\0\0"  # gzip, no mtime
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        infos = tar.getmembers()
    names = [info.name for info in infos]
    assert names == [SIGNATURES, "/.manifest", "/data.json", MODULE_NAME]
    for info in infos:
        assert info.isreg() and (info.mtime, info.mode, info.uid, info.gid) == (0, 0o644, 0, 0)
        assert (info.uname, info.gname) == ("", "")

    files = members_of(archive)
    manifest = json.loads(files["/.manifest"])
    assert manifest == {"revision": "v3", "roots": ["odd", "tenancy"]}
    packages = [
        line.split()[1]
        for source in bundle.modules.values()
        for line in source.splitlines()
        if line.startswith("package ")
    ]
    owned = [*packages, *bundle.data()]
    assert all(path.split(".")[0] in manifest["roots"] for path in owned)
    expected = json.dumps(
        bundle.data(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert files["/data.json"] == expected


def test_the_read_back_bundle_decides_as_the_original() -> None:
    original = fixture_bundle()
    back = read_bundle(write_bundle(original, revision="r1"))
    cases = [case for case in policy_cases() if not case.get("data")]
    assert {case["allow"] for case in cases} == {True, False}
    ours, theirs = EmbeddedRego(original), EmbeddedRego(back)

    for case in cases:
        want, got = ours.decide(case["input"]), theirs.decide(case["input"])
        assert (got.allow, got.reasons, got.scopes, got.valid_until) == (
            want.allow,
            want.reasons,
            want.scopes,
            want.valid_until,
        ), case["name"]
        assert got.allow == case["allow"] and got.bundle == "r1"


def test_nested_data_files_sit_at_their_directory_and_tests_are_skipped() -> None:
    archive = hand_built(
        {
            "/tenancy/roles/data.json": b'{"admin": ["x"]}',
            "/tenancy/routes/api/data.json": b'{"get": 1}',
            "/tenancy/authz/authz_test.rego": b"package tenancy.authz_test\n",
            "/README.md": b"ignored",
        },
        data={"tenancy": {"routes": {"web": 2}}},
    )

    back = read_bundle(archive)

    assert back.data() == {
        "tenancy": {"roles": {"admin": ["x"]}, "routes": {"web": 2, "api": {"get": 1}}}
    }
    assert list(back.modules) == ["tenancy/authz/authz.rego"]
    assert back.bundle_revision == "hand"


def test_a_manifest_without_roots_owns_everything() -> None:
    back = read_bundle(hand_built(manifest={"revision": "r"}, data={"anything": 1}))
    assert back.data() == {"anything": 1}


def test_a_root_deeper_than_a_data_key_is_followed_into_it() -> None:
    manifest = {"revision": "r", "roots": ["tenancy/authz", "x"]}
    back = read_bundle(hand_built(manifest=manifest, data={"tenancy": {"authz": {"k": 1}}}))
    assert back.data() == {"tenancy": {"authz": {"k": 1}}}
    with pytest.raises(PolicyBundleInvalid, match="/tenancy/other is outside the roots"):
        read_bundle(hand_built(manifest=manifest, data={"tenancy": {"other": 1}}))


# -- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ec-p256", "ec-p384", "ec-p521"])
def test_a_signed_archive_verifies(kind: str) -> None:
    archive = signed(kind, scope="prod")

    back = read_bundle(archive, verification_key=public_pem(kind), key_id="tenancy", scope="prod")

    assert back.modules == fixture_bundle().modules
    header, claims = claims_of(archive)
    algorithm = {"rsa": "RS256", "ec-p256": "ES256", "ec-p384": "ES384", "ec-p521": "ES512"}
    assert header["alg"] == algorithm[kind] and header["kid"] == "tenancy"
    assert (claims["iat"], claims["iss"], claims["scope"]) == (1, "tenancy", "prod")
    assert "keyid" not in claims
    files = members_of(archive)
    assert [entry["name"] for entry in claims["files"]] == sorted(
        name.lstrip("/") for name in files if name != SIGNATURES
    )
    for entry in claims["files"]:
        assert entry["algorithm"] == "SHA-256"
        assert entry["hash"] == file_digest(entry["name"], files["/" + entry["name"]])
    assert [e["hash"] for e in claims["files"] if e["name"].endswith(".rego")] == [
        sha256(files[MODULE_NAME])
    ]


def test_a_certificate_verifies_like_its_public_key() -> None:
    key = private_key("ec-p256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bundle signer")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    assert read_bundle(signed("ec-p256"), verification_key=pem).modules


def test_without_a_key_the_signature_is_not_checked() -> None:
    def tamper(files: dict[str, bytes]) -> None:
        files[MODULE_NAME] += b"\n# changed\n"

    archive = changed(signed(), tamper)

    assert read_bundle(archive).modules["tenancy/authz/authz.rego"].endswith("# changed\n")


def _edit_module(files: dict[str, bytes]) -> None:
    files[MODULE_NAME] = files[MODULE_NAME].replace(b"default allow := false", b"")


def _edit_data(files: dict[str, bytes]) -> None:
    data = json.loads(files["/data.json"])
    data["tenancy"]["role_bindings"] = {"t-acme": {"mallory": ["admin"]}}
    files["/data.json"] = json.dumps(data).encode()


def _edit_manifest(files: dict[str, bytes]) -> None:
    files["/.manifest"] = json.dumps({"revision": "forged", "roots": ["tenancy"]}).encode()


def _add_member(files: dict[str, bytes]) -> None:
    files["/tenancy/extra.rego"] = b"package tenancy.extra\n"


def _remove_member(files: dict[str, bytes]) -> None:
    del files[MODULE_NAME]


def _second_signature(files: dict[str, bytes]) -> None:
    [token] = json.loads(files[SIGNATURES])["signatures"]
    files[SIGNATURES] = json.dumps({"signatures": [token, token]}).encode()


def _drop_signature(files: dict[str, bytes]) -> None:
    del files[SIGNATURES]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_edit_module, "tenancy/authz/authz.rego: digest mismatch"),
        (_edit_data, "data.json: digest mismatch"),
        (_edit_manifest, ".manifest: digest mismatch"),
        (_add_member, "file tenancy/extra.rego not in the signature"),
        (_remove_member, "tenancy/authz/authz.rego listed in the signature but missing"),
        (_second_signature, "exactly one JWS"),
        (_drop_signature, "signature missing"),
    ],
    ids=["module", "data", "manifest", "added", "removed", "two-jws", "unsigned"],
)
def test_a_tampered_archive_is_refused(
    tamper: Callable[[dict[str, bytes]], None], message: str
) -> None:
    archive = changed(signed(), tamper)
    with pytest.raises(PolicyBundleInvalid, match=message):
        read_bundle(archive, verification_key=public_pem("rsa"))


@pytest.mark.parametrize(
    ("archive", "options", "message"),
    [
        (lambda: signed("rsa"), {"verification_key": "ec-p256"}, "signature does not verify"),
        (lambda: signed("ec-p256"), {"verification_key": "ec-p384"}, "signature does not verify"),
        (lambda: write_bundle(fixture_bundle()), {}, "signature missing"),
        (lambda: signed(key_id="other"), {"key_id": "tenancy"}, "key id 'other'"),
        (lambda: signed(), {"scope": "prod"}, "scope mismatch"),
        (lambda: signed(scope="test"), {"scope": "prod"}, "scope mismatch"),
        (lambda: signed(scope="test"), {}, "scope mismatch"),
    ],
    ids=["rsa-wrong-key", "ec-wrong-curve", "unsigned", "kid", "scope", "scope-other", "scope-x"],
)
def test_a_signature_for_something_else_is_refused(
    archive: Callable[[], bytes], options: dict[str, str], message: str
) -> None:
    key = public_pem(options.pop("verification_key", "rsa"))
    with pytest.raises(PolicyBundleInvalid, match=message):
        read_bundle(archive(), verification_key=key, **options)


def test_a_wrong_key_of_the_same_kind_is_refused() -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(PolicyBundleInvalid, match="signature does not verify"):
        read_bundle(signed("rsa"), verification_key=pem)


def test_a_digest_algorithm_other_than_sha256_is_refused() -> None:
    archive = signed()
    _, claims = claims_of(archive)
    for entry in claims["files"]:
        entry["algorithm"] = "MD5"
    token = jwt.encode(claims, private_key("rsa"), algorithm="RS256", headers={"kid": "tenancy"})

    def resign(files: dict[str, bytes]) -> None:
        files[SIGNATURES] = json.dumps({"signatures": [token]}).encode()

    with pytest.raises(PolicyBundleInvalid, match="hashing algorithm 'MD5'"):
        read_bundle(changed(archive, resign), verification_key=public_pem("rsa"))


def test_layout_of_structured_files_is_not_signed() -> None:
    """OPA hashes data.json and .manifest in canonical form: an archive re-packed with
    them pretty-printed, keys reversed and unicode escaped still verifies."""
    bundle = laid_over()
    archive = signed("rsa", bundle)

    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: reverse(value[key]) for key in reversed(list(value))}
        return [reverse(item) for item in value] if isinstance(value, list) else value

    def reformat(files: dict[str, bytes]) -> None:
        for name in ("/data.json", "/.manifest"):
            document = reverse(json.loads(files[name]))
            files[name] = json.dumps(document, indent=3, ensure_ascii=True).encode()

    repacked = changed(archive, reformat)

    assert members_of(repacked)["/data.json"] != members_of(archive)["/data.json"]
    back = read_bundle(repacked, verification_key=public_pem("rsa"))
    assert back.data() == bundle.data()


# -- OPA's digest rule ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["data.json", ".manifest", "a/b/data.json", ".signatures.json"])
def test_a_structured_file_is_hashed_in_canonical_form(name: str) -> None:
    assert file_digest(name, b'{"b":[1,"x"],"a":true}') == sha256(b'{"a":true,"b":[1,"x"]}')
    # Numbers stay as written; strings are re-escaped the Go way; whitespace goes.
    document = (
        b'{ "z": [1.0, 1e3, -0, null, {"y": false, "x": 100000000000000000001}],\n'
        b' "s": "\\u00e9\\b\\u0001<&>\\u2028\\/" }'
    )
    canonical = (
        '{"s":"é\\b\\u0001<&>\\u2028/","z":[1.0,1e3,-0,null,{"x":100000000000000000001,"y":false}]}'
    )
    assert file_digest(name, document) == sha256(canonical.encode())


def test_any_other_file_is_hashed_byte_for_byte() -> None:
    content = b'{"b":[1,"x"],"a":true}'
    for name in ("policy.rego", "data.json.bak", "x/data.jsonx", "README"):
        assert file_digest(name, content) == sha256(content)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("plain", '"plain"'),
        ('"\\', '"\\"\\\\"'),
        ("\n\r\t", '"\\n\\r\\t"'),
        ("\b\f", '"\\b\\f"'),
        ("\x00\x07\x1b\x1f", '"\\u0000\\u0007\\u001b\\u001f"'),
        ("\u2028\u2029", '"\\u2028\\u2029"'),
        ("<&>", '"<&>"'),
        ("é😀\x7f/", '"é😀\x7f/"'),
        ("a\ud800b", '"a\ufffdb"'),
    ],
    ids=["plain", "quote-backslash", "nrt", "bf", "controls", "separators", "html", "utf8", "lone"],
)
def test_strings_are_escaped_as_go_escapes_them(value: str, encoded: str) -> None:
    assert go_json_string(value) == encoded


def test_a_structured_file_that_is_not_json_has_no_digest() -> None:
    for content in (b"{", b'{"n": NaN}', b"\xff"):
        with pytest.raises(PolicyBundleInvalid, match=r"not valid JSON|not UTF-8"):
            file_digest("data.json", content)


# -- unsafe or malformed archives ---------------------------------------------------------------


def _link(kind: bytes, name: str = "/tenancy/link.rego") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd"
    return info


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        (lambda: hand_built({"../x.rego": MODULE}), "'..' path segment"),
        (lambda: hand_built({"/tenancy/../../x.rego": MODULE}), "'..' path segment"),
        (lambda: hand_built({"//etc/x.rego": MODULE}), "absolute path"),
        (lambda: hand_built({"/tenancy\\x.rego": MODULE}), "backslash"),
        (lambda: hand_built({"tenancy/authz/authz.rego": MODULE}), "appears twice"),
        (lambda: tar_gz({}, special=[_link(tarfile.SYMTYPE)]), "not a regular file"),
        (lambda: tar_gz({}, special=[_link(tarfile.LNKTYPE)]), "not a regular file"),
        (lambda: tar_gz({}, special=[_link(tarfile.CHRTYPE, "/dev.rego")]), "not a regular"),
        (lambda: hand_built({"/.manifest": None}), "no .manifest"),
        (lambda: hand_built(manifest={"roots": ["tenancy"]}), "string revision"),
        (lambda: hand_built(manifest={"revision": 7}), "string revision"),
        (lambda: hand_built(manifest=["r"]), "JSON object with a string revision"),
        (lambda: hand_built(manifest={"revision": "r", "roots": "tenancy"}), "list of strings"),
        (lambda: hand_built(manifest={"revision": "r", "roots": [1]}), "list of strings"),
        (lambda: hand_built(manifest={"revision": "r", "roots": ["a", "a/b"]}), "roots overlap"),
        (lambda: hand_built(manifest={"revision": "r", "roots": ["other"]}), "outside the roots"),
        (lambda: hand_built(data={"tenancy": {}, "other": 1}), "/other is outside the roots"),
        (lambda: hand_built({MODULE_NAME: None}), "no Rego module"),
        (lambda: hand_built({MODULE_NAME: b"# no package\n"}), "declares no package"),
        (lambda: hand_built({MODULE_NAME: b"package \xff\n"}), "not UTF-8"),
        (lambda: hand_built(data=[1]), "data.json must hold a JSON object"),
        (lambda: hand_built({"/tenancy/data.json": b"[]"}), "must hold a JSON object"),
        (lambda: hand_built({"/data.json": b'{"n": NaN}'}), "not valid JSON"),
        (
            lambda: hand_built({"/tenancy/data.json": b'{"k": 2}'}, data={"tenancy": {"k": 1}}),
            "defines data key 'k'",
        ),
        (lambda: hand_built({"/tenancy/data.yaml": b"k: 1\n"}), "YAML data is not supported"),
        (lambda: hand_built({"/policy.wasm": b"\0asm"}), "Wasm policy is not supported"),
        (lambda: hand_built({"/x/.manifest": b"{}"}), "belongs at the archive root"),
        (lambda: b"garbage, not an archive", "not a gzip archive"),
        (lambda: gzip.compress(b"hello " * 200), "not a tar archive"),
        (lambda: write_bundle(fixture_bundle())[:200], "not a gzip archive"),
    ],
    ids=[
        "traversal",
        "inner-traversal",
        "absolute",
        "backslash",
        "duplicate",
        "symlink",
        "hardlink",
        "device",
        "no-manifest",
        "no-revision",
        "int-revision",
        "manifest-list",
        "roots-string",
        "roots-int",
        "roots-overlap",
        "module-outside-roots",
        "data-outside-roots",
        "no-module",
        "no-package",
        "not-utf8",
        "data-list",
        "nested-data-list",
        "nan",
        "data-defined-twice",
        "yaml",
        "wasm",
        "nested-manifest",
        "garbage",
        "gzip-not-tar",
        "truncated",
    ],
)
def test_an_unsafe_or_malformed_archive_is_refused(
    archive: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(PolicyBundleInvalid, match=message):
        read_bundle(archive())


def test_a_damaged_header_after_the_first_member_is_refused() -> None:
    buffer = io.BytesIO(gzip.decompress(hand_built()))
    with tarfile.open(fileobj=buffer, mode="r:") as tar:
        second = tar.getmembers()[1].offset
    raw = bytearray(buffer.getvalue())
    raw[second : second + 512] = b"x" * 512
    with pytest.raises(PolicyBundleInvalid, match="damaged tar header"):
        read_bundle(gzip.compress(bytes(raw)))


def test_an_archive_larger_than_max_bytes_is_refused() -> None:
    archive = write_bundle(PolicyBundle.from_directory(data=[{"blob": {"x": "0" * 2**20}}]))
    assert len(archive) < 2**16  # small on the wire: it is the inflated size that counts
    assert read_bundle(archive).get(("blob", "x")) == "0" * 2**20
    with pytest.raises(PolicyBundleInvalid, match="larger than 1000000 bytes uncompressed"):
        read_bundle(archive, max_bytes=1_000_000)


# -- bad arguments ---------------------------------------------------------------------------------


def _ed25519() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _short_rsa() -> bytes:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _encrypted() -> bytes:
    return private_key("ec-p256").private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def _secp256k1() -> bytes:
    return ec.generate_private_key(ec.SECP256K1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (_ed25519, "key type is not supported"),
        (_secp256k1, "key type is not supported"),
        (_short_rsa, "1024 bits"),
        (_encrypted, "not an unencrypted PEM private key"),
        (lambda: public_pem("rsa"), "not an unencrypted PEM private key"),
        (lambda: b"garbage", "not an unencrypted PEM private key"),
    ],
    ids=["ed25519", "secp256k1", "short-rsa", "encrypted", "public-key", "garbage"],
)
def test_an_unsupported_signing_key_is_a_configuration_error(
    key: Callable[[], bytes], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        write_bundle(fixture_bundle(), signing_key=key())
    assert not isinstance(raised.value, PolicyBundleInvalid)


def test_an_unsupported_verification_key_is_a_configuration_error() -> None:
    archive = signed()
    for key in (b"garbage", private_pem("rsa")):
        with pytest.raises(ConfigurationError, match="not a PEM public key") as raised:
            read_bundle(archive, verification_key=key)
        assert not isinstance(raised.value, PolicyBundleInvalid)


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        ({"tenancy/x.rego": "# nothing here\n"}, "declares no package"),
        ({"../x.rego": "package x\n"}, "'..' path segment"),
        ({"x.txt": "package x\n"}, "must end in .rego"),
        ({"x_test.rego": "package x\n"}, "must end in .rego"),
    ],
    ids=["no-package", "traversal", "not-rego", "test-module"],
)
def test_a_bundle_opa_would_not_load_is_not_written(modules: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        write_bundle(PolicyBundle(modules, {}))
