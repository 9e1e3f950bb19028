"""``AwsKmsKeyProvider`` against an AWS KMS emulator (moto), over real HTTP through botocore.

moto is an emulator, not AWS KMS. There is no AWS account and no network here, and what
these tests check is our use of the KMS API: that the wrap context travels as the KMS
encryption context and binds the blob, that ``Decrypt`` names the key, how KMS answers map
onto the provider protocol, and the key lifecycle (create, disable, enable, rotate,
schedule deletion, describe). moto runs in this process as an HTTP server
(``ThreadedMotoServer`` on 127.0.0.1), so every request goes through botocore's real
serialisation, signing, HTTP and error parsing.

What they do not prove: anything about real KMS's HSM boundary, IAM policies and grants
(a customer revoking our grant), CloudTrail, quotas, throttling or latency. Where moto
does not behave as KMS documents, the test expects the real behaviour and is marked
``xfail(strict=True)`` with the gap as its reason (found with moto 5.2.5):

- moto does not enforce key state on Encrypt/Decrypt: a disabled key, or one pending
  deletion, still wraps and unwraps (KMS: DisabledException, KMSInvalidStateException);
- moto's EnableKey revives a key pending deletion (KMS: KMSInvalidStateException);
- moto reads the key id from a blob's first bytes, so a blob tampered there is answered
  with AccessDeniedException (KMS: InvalidCiphertextException for any tampering);
- moto answers a Decrypt naming another key than the blob's with AccessDeniedException
  (KMS: IncorrectKeyException);
- moto's DisableKey, EnableKey and ScheduleKeyDeletion fail (HTTP 500) when given a key
  ARN; the provider sends the key id for those same-account calls anyway;
- moto's rotation only records a rotation, it makes no new key material, so "old blobs
  still unwrap after rotation" holds trivially there (KMS guarantees it).

The error codes moto cannot produce at all are checked at the end with botocore's
``Stubber``, which feeds the client KMS's documented error shapes without any HTTP.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

# moto is an emulator of AWS KMS (see the module docstring for why and what it does not
# prove); its in-process server mode puts a real HTTP hop between botocore and it.
from moto.server import ThreadedMotoServer

from tenancy.errors import DecryptionFailed, KeyDestroyed, KeyManagementError, KeyUnavailable
from tenancy.keys.aws import AwsKmsKeyProvider
from tenancy.keys.provider import KeyInfo, KeyProvider, KeyRef, ProviderUnavailable

REGION = "eu-central-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
DEK = bytes(range(32))
# pytest.raises(...) that sees no exception fails with this: the xfails below expect
# exactly that (moto let the call through), and any other error is a real failure.
DID_NOT_RAISE = pytest.fail.Exception


def context(tenant: str, **extra: str) -> dict[str, str]:
    return {"tenant": tenant, "purpose": "dek", "dek_version": "1", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def kms_client(endpoint: str | None, **config: Any) -> Any:
    return boto3.client(
        "kms",
        region_name=REGION,
        endpoint_url=endpoint,
        config=Config(**{"retries": {"max_attempts": 0}, **config}),
        **CREDENTIALS,
    )


@pytest.fixture(scope="module")
def kms_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def kms(kms_endpoint: str) -> Iterator[Any]:
    client = kms_client(kms_endpoint, connect_timeout=2, read_timeout=10)
    yield client
    client.close()


@pytest.fixture
def provider(kms: Any) -> AwsKmsKeyProvider:
    return AwsKmsKeyProvider(kms)


@pytest.fixture
def key_a(provider: AwsKmsKeyProvider) -> KeyRef:
    return provider.create_key(tenant_id="tenant-a")


@pytest.fixture
def key_b(provider: AwsKmsKeyProvider) -> KeyRef:
    return provider.create_key(tenant_id="tenant-b")


def raises_exactly(exc_type: type[Exception], call: Any, *args: Any, **kwargs: Any) -> None:
    """``call`` raises ``exc_type`` itself, not a subclass (KeyDestroyed is a
    KeyUnavailable, DecryptionFailed and ProviderUnavailable are KeyManagementErrors)."""
    with pytest.raises(exc_type) as info:
        call(*args, **kwargs)
    assert type(info.value) is exc_type, f"{type(info.value).__name__}: {info.value}"


# -- the emulator: create, wrap, unwrap --------------------------------------------------


def test_provider_satisfies_the_key_provider_protocol(provider: AwsKmsKeyProvider) -> None:
    assert isinstance(provider, KeyProvider)
    assert provider.name == "aws-kms"
    assert provider.region == REGION


def test_create_key_makes_a_symmetric_customer_key_named_for_the_tenant(
    provider: AwsKmsKeyProvider, kms: Any
) -> None:
    ref = provider.create_key(tenant_id="tenant-a")

    assert ref.provider == "aws-kms"
    assert ref.version is None
    assert ref.key_id.startswith(f"arn:aws:kms:{REGION}:")
    metadata = kms.describe_key(KeyId=ref.key_id)["KeyMetadata"]
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert metadata["KeyManager"] == "CUSTOMER"
    assert metadata["KeyState"] == "Enabled"
    assert "tenant-a" in metadata["Description"]
    tags = kms.list_resource_tags(KeyId=metadata["KeyId"])["Tags"]
    assert {"TagKey": "tenancy:tenant-id", "TagValue": "tenant-a"} in tags


def test_wrap_then_unwrap_returns_the_data_key(provider: AwsKmsKeyProvider, key_a: KeyRef) -> None:
    blob, used = provider.wrap(key_a, DEK, context=context("tenant-a"))

    assert used == KeyRef("aws-kms", key_a.key_id, None)
    assert DEK not in blob
    assert provider.unwrap(used, blob, context=context("tenant-a")) == DEK


@pytest.mark.parametrize(
    "other",
    [
        context("tenant-b"),
        context("tenant-a", purpose="search-index"),
        {**context("tenant-a"), "dek_version": "2"},
        context("tenant-a", extra="x"),
        {"tenant": "tenant-a"},
        {},
    ],
    ids=[
        "other-tenant",
        "other-purpose",
        "other-version",
        "extra-entry",
        "missing-entries",
        "empty",
    ],
)
def test_blob_does_not_unwrap_in_another_context(
    provider: AwsKmsKeyProvider, key_a: KeyRef, other: dict[str, str]
) -> None:
    blob, used = provider.wrap(key_a, DEK, context=context("tenant-a"))

    raises_exactly(DecryptionFailed, provider.unwrap, used, blob, context=other)


@pytest.mark.parametrize(
    "position",
    [
        pytest.param(
            0,
            marks=pytest.mark.xfail(
                strict=True,
                raises=KeyUnavailable,
                reason="moto reads the key id from a blob's first 36 bytes and answers a changed "
                "one with AccessDeniedException; KMS answers InvalidCiphertextException",
            ),
        ),
        -17,  # inside the authentication tag (moto) / the blob's body (KMS)
        -1,
    ],
    ids=["first-byte", "near-end", "last-byte"],
)
def test_tampered_blob_does_not_unwrap(
    provider: AwsKmsKeyProvider, key_a: KeyRef, position: int
) -> None:
    blob, used = provider.wrap(key_a, DEK, context=context("tenant-a"))
    tampered = bytearray(blob)
    tampered[position] ^= 0x01

    raises_exactly(
        DecryptionFailed, provider.unwrap, used, bytes(tampered), context=context("tenant-a")
    )


def test_truncated_or_empty_blob_does_not_unwrap(
    provider: AwsKmsKeyProvider, key_a: KeyRef
) -> None:
    blob, used = provider.wrap(key_a, DEK, context=context("tenant-a"))

    raises_exactly(DecryptionFailed, provider.unwrap, used, blob[:-1], context=context("tenant-a"))
    raises_exactly(DecryptionFailed, provider.unwrap, used, b"", context=context("tenant-a"))


def test_blob_is_refused_under_another_tenants_key_id(
    provider: AwsKmsKeyProvider, key_a: KeyRef, key_b: KeyRef
) -> None:
    # Tenant A's blob, with tenant A's own context (so the context cannot be what refuses
    # it), presented under tenant B's key. Decrypt names KeyId, so KMS checks the blob
    # was made by that key. moto answers AccessDeniedException, which the provider maps to
    # KeyUnavailable, asserted exactly here; real KMS answers IncorrectKeyException, which
    # maps to DecryptionFailed (checked with Stubber below). Either way: no plaintext.
    blob, _ = provider.wrap(key_a, DEK, context=context("tenant-a"))

    raises_exactly(KeyUnavailable, provider.unwrap, key_b, blob, context=context("tenant-a"))


def test_wrap_refuses_malformed_input_without_calling_kms(
    provider: AwsKmsKeyProvider, key_a: KeyRef
) -> None:
    raises_exactly(KeyManagementError, provider.wrap, key_a, b"", context=context("tenant-a"))
    raises_exactly(
        KeyManagementError, provider.wrap, key_a, b"x" * 4097, context=context("tenant-a")
    )
    raises_exactly(KeyManagementError, provider.wrap, key_a, DEK, context={"tenant": 1})  # type: ignore[dict-item]


def test_refs_of_another_provider_or_region_are_refused_without_a_call() -> None:
    client = kms_client(None)
    provider = AwsKmsKeyProvider(client)
    elsewhere = KeyRef(
        "aws-kms", "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
    )
    with Stubber(client) as stub:  # no response queued: any call would fail the test
        raises_exactly(
            KeyUnavailable,
            provider.unwrap,
            KeyRef("local", "kek-1", "1"),
            b"blob",
            context=context("tenant-a"),
        )
        raises_exactly(
            KeyUnavailable, provider.unwrap, elsewhere, b"blob", context=context("tenant-a")
        )
        raises_exactly(KeyUnavailable, provider.describe, elsewhere)
        stub.assert_no_pending_responses()
    client.close()


# -- the emulator: describe, disable, enable, destroy, rotate ---------------------------


def test_describe_reports_enabled_and_location(provider: AwsKmsKeyProvider, key_a: KeyRef) -> None:
    assert provider.describe(key_a) == KeyInfo(
        key_a, enabled=True, versions=(), managed_by="customer", location=f"aws-kms:{REGION}"
    )


@pytest.mark.xfail(
    strict=True,
    raises=DID_NOT_RAISE,
    reason="moto does not enforce key state on Decrypt: a disabled key still "
    "decrypts (KMS: DisabledException)",
)
def test_disabled_key_refuses_unwrap(provider: AwsKmsKeyProvider, key_a: KeyRef) -> None:
    blob, used = provider.wrap(key_a, DEK, context=context("tenant-a"))
    provider.disable(key_a)

    raises_exactly(KeyUnavailable, provider.unwrap, used, blob, context=context("tenant-a"))


@pytest.mark.xfail(
    strict=True,
    raises=DID_NOT_RAISE,
    reason="moto does not enforce key state on Encrypt: a disabled key still "
    "encrypts (KMS: DisabledException)",
)
def test_disabled_key_refuses_wrap(provider: AwsKmsKeyProvider, key_a: KeyRef) -> None:
    provider.disable(key_a)

    raises_exactly(KeyUnavailable, provider.wrap, key_a, DEK, context=context("tenant-a"))


def test_disabled_then_enabled_key_is_reported_and_works_again(
    provider: AwsKmsKeyProvider, key_a: KeyRef
) -> None:
    blob, used = provider.wrap(key_a, DEK, context=context("tenant-a"))

    provider.disable(key_a)
    assert provider.describe(key_a).enabled is False

    provider.enable(key_a)
    assert provider.describe(key_a).enabled is True
    assert provider.unwrap(used, blob, context=context("tenant-a")) == DEK
    new_blob, new_used = provider.wrap(key_a, DEK, context=context("tenant-a"))
    assert provider.unwrap(new_used, new_blob, context=context("tenant-a")) == DEK


def test_destroy_schedules_deletion_after_the_minimum_window(
    provider: AwsKmsKeyProvider, key_a: KeyRef, kms: Any
) -> None:
    provider.destroy(key_a)

    assert provider.describe(key_a).enabled is False
    metadata = kms.describe_key(KeyId=key_a.key_id)["KeyMetadata"]
    assert metadata["KeyState"] == "PendingDeletion"
    window = metadata["DeletionDate"] - datetime.now(UTC)
    assert timedelta(days=6, hours=23) < window <= timedelta(days=7)


def test_destroy_twice_is_a_no_op(provider: AwsKmsKeyProvider, key_a: KeyRef) -> None:
    provider.destroy(key_a)
    provider.destroy(key_a)

    assert provider.describe(key_a).enabled is False


@pytest.mark.xfail(
    strict=True,
    raises=DID_NOT_RAISE,
    reason="moto does not enforce key state on Decrypt: a key pending "
    "deletion still decrypts (KMS: KMSInvalidStateException)",
)
def test_destroyed_key_refuses_unwrap(provider: AwsKmsKeyProvider, key_a: KeyRef) -> None:
    blob, used = provider.wrap(key_a, DEK, context=context("tenant-a"))
    provider.destroy(key_a)

    raises_exactly(KeyDestroyed, provider.unwrap, used, blob, context=context("tenant-a"))


@pytest.mark.xfail(
    strict=True,
    raises=DID_NOT_RAISE,
    reason="moto does not enforce key state on Encrypt: a key pending "
    "deletion still encrypts (KMS: KMSInvalidStateException)",
)
def test_destroyed_key_refuses_wrap(provider: AwsKmsKeyProvider, key_a: KeyRef) -> None:
    provider.destroy(key_a)

    raises_exactly(KeyDestroyed, provider.wrap, key_a, DEK, context=context("tenant-a"))


@pytest.mark.xfail(
    strict=True,
    raises=DID_NOT_RAISE,
    reason="moto's EnableKey turns a key pending deletion back to Enabled "
    "(KMS: KMSInvalidStateException; only CancelKeyDeletion undoes it)",
)
def test_destroyed_key_cannot_be_enabled_again(provider: AwsKmsKeyProvider, key_a: KeyRef) -> None:
    provider.destroy(key_a)

    raises_exactly(KeyDestroyed, provider.enable, key_a)


def test_key_kms_no_longer_knows_is_reported_destroyed(
    provider: AwsKmsKeyProvider, key_a: KeyRef
) -> None:
    # Once the deletion window has run, KMS answers NotFoundException for the key. moto
    # cannot fast-forward a deletion, so a key id that never existed (same answer) stands
    # in for it.
    blob, _ = provider.wrap(key_a, DEK, context=context("tenant-a"))
    gone = KeyRef(
        "aws-kms", key_a.key_id.rsplit("/", 1)[0] + "/00000000-0000-4000-8000-000000000000"
    )

    raises_exactly(KeyDestroyed, provider.unwrap, gone, blob, context=context("tenant-a"))
    raises_exactly(KeyDestroyed, provider.describe, gone)


def test_rotation_keeps_old_blobs_and_new_wraps_work(
    provider: AwsKmsKeyProvider, key_a: KeyRef, kms: Any
) -> None:
    old_blob, old_used = provider.wrap(key_a, DEK, context=context("tenant-a"))

    assert provider.rotate(key_a) == key_a  # KMS versions inside its blobs: same ref

    # moto records the rotation but makes no new key material (module docstring), so the
    # first assertion is trivially true here; on KMS it is the documented guarantee.
    assert provider.unwrap(old_used, old_blob, context=context("tenant-a")) == DEK
    new_blob, new_used = provider.wrap(key_a, DEK, context=context("tenant-a"))
    assert new_used == key_a
    assert provider.unwrap(new_used, new_blob, context=context("tenant-a")) == DEK
    rotations = kms.list_key_rotations(KeyId=key_a.key_id)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]


class WithoutOnDemandRotation:
    """A KMS client as botocore had it before RotateKeyOnDemand (June 2024)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "rotate_key_on_demand":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_rotation_turns_on_automatic_rotation_without_the_on_demand_api(
    kms: Any, key_a: KeyRef
) -> None:
    provider = AwsKmsKeyProvider(WithoutOnDemandRotation(kms))  # type: ignore[arg-type]

    assert provider.rotate(key_a) == key_a

    assert kms.get_key_rotation_status(KeyId=key_a.key_id)["KeyRotationEnabled"] is True
    assert kms.list_key_rotations(KeyId=key_a.key_id)["Rotations"] == []


def test_from_region_builds_a_working_provider(kms_endpoint: str) -> None:
    provider = AwsKmsKeyProvider.from_region(REGION, endpoint_url=kms_endpoint, **CREDENTIALS)
    ref = provider.create_key(tenant_id="tenant-c")
    blob, used = provider.wrap(ref, DEK, context=context("tenant-c"))

    assert provider.unwrap(used, blob, context=context("tenant-c")) == DEK
    assert provider.describe(ref).location == f"aws-kms:{REGION}"
    provider._client.close()


# -- outages: nothing listening, nothing answering ---------------------------------------


def test_unreachable_endpoint_is_provider_unavailable() -> None:
    # A free port nobody listens on: the connection is refused (EndpointConnectionError).
    client = kms_client(f"http://127.0.0.1:{free_port()}", connect_timeout=0.5, read_timeout=0.5)
    provider = AwsKmsKeyProvider(client)
    ref = KeyRef(
        "aws-kms", f"arn:aws:kms:{REGION}:123456789012:key/11111111-2222-3333-4444-555555555555"
    )

    raises_exactly(ProviderUnavailable, provider.unwrap, ref, b"blob", context=context("tenant-a"))
    raises_exactly(ProviderUnavailable, provider.wrap, ref, DEK, context=context("tenant-a"))
    raises_exactly(ProviderUnavailable, provider.create_key, tenant_id="tenant-a")
    client.close()


def test_endpoint_that_never_answers_is_provider_unavailable() -> None:
    # A socket that listens but never accepts: the TCP connection completes in the
    # backlog, the request is sent, no answer comes (ReadTimeoutError).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        client = kms_client(
            f"http://127.0.0.1:{sock.getsockname()[1]}", connect_timeout=0.5, read_timeout=0.3
        )
        ref = KeyRef(
            "aws-kms", f"arn:aws:kms:{REGION}:123456789012:key/11111111-2222-3333-4444-555555555555"
        )

        raises_exactly(
            ProviderUnavailable,
            AwsKmsKeyProvider(client).unwrap,
            ref,
            b"blob",
            context=context("tenant-a"),
        )
        client.close()


# -- KMS answers moto cannot give: botocore's Stubber, KMS's documented error shapes ----

ARN = f"arn:aws:kms:{REGION}:123456789012:key/11111111-2222-3333-4444-555555555555"
REF = KeyRef("aws-kms", ARN)
PENDING = f"{ARN} is pending deletion."


@pytest.fixture
def stubbed() -> Iterator[tuple[AwsKmsKeyProvider, Stubber]]:
    client = kms_client(None)
    with Stubber(client) as stub:
        yield AwsKmsKeyProvider(client), stub
        stub.assert_no_pending_responses()
    client.close()


def _call(provider: AwsKmsKeyProvider, operation: str) -> Any:
    return {
        "decrypt": lambda: provider.unwrap(REF, b"blob", context=context("tenant-a")),
        "encrypt": lambda: provider.wrap(REF, DEK, context=context("tenant-a")),
        "enable_key": lambda: provider.enable(REF),
        "disable_key": lambda: provider.disable(REF),
        "rotate_key_on_demand": lambda: provider.rotate(REF),
        "describe_key": lambda: provider.describe(REF),
    }[operation]()


@pytest.mark.parametrize(
    ("operation", "code", "status", "message", "expected"),
    [
        ("decrypt", "DisabledException", 400, "", KeyUnavailable),
        ("decrypt", "KMSInvalidStateException", 400, PENDING, KeyDestroyed),
        ("decrypt", "NotFoundException", 400, "", KeyDestroyed),
        ("decrypt", "InvalidCiphertextException", 400, "", DecryptionFailed),
        ("decrypt", "IncorrectKeyException", 400, "", DecryptionFailed),
        ("decrypt", "AccessDeniedException", 400, "", KeyUnavailable),
        ("decrypt", "ThrottlingException", 400, "Rate exceeded", ProviderUnavailable),
        ("decrypt", "KMSInternalException", 500, "", ProviderUnavailable),
        ("decrypt", "DependencyTimeoutException", 503, "", ProviderUnavailable),
        ("decrypt", "KeyUnavailableException", 500, "", ProviderUnavailable),
        ("decrypt", "InternalFailure", 500, "", ProviderUnavailable),
        ("encrypt", "DisabledException", 400, "", KeyUnavailable),
        ("encrypt", "KMSInvalidStateException", 400, PENDING, KeyDestroyed),
        ("encrypt", "AccessDeniedException", 400, "", KeyUnavailable),
        ("enable_key", "KMSInvalidStateException", 400, PENDING, KeyDestroyed),
        ("disable_key", "KMSInvalidStateException", 400, PENDING, KeyDestroyed),
        ("rotate_key_on_demand", "DisabledException", 400, "", KeyUnavailable),
        ("rotate_key_on_demand", "LimitExceededException", 400, "", KeyManagementError),
        ("rotate_key_on_demand", "ConflictException", 400, "", ProviderUnavailable),
        ("describe_key", "NotFoundException", 400, "", KeyDestroyed),
    ],
)
def test_kms_errors_map_onto_the_provider_protocol(
    stubbed: tuple[AwsKmsKeyProvider, Stubber],
    operation: str,
    code: str,
    status: int,
    message: str,
    expected: type[Exception],
) -> None:
    provider, stub = stubbed
    stub.add_client_error(
        operation, service_error_code=code, service_message=message, http_status_code=status
    )

    raises_exactly(expected, _call, provider, operation)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("PendingDeletion", KeyDestroyed),
        ("PendingReplicaDeletion", KeyDestroyed),
        ("Unavailable", KeyUnavailable),  # e.g. its custom key store is disconnected
        ("PendingImport", KeyUnavailable),
    ],
)
def test_invalid_state_without_a_telling_message_asks_for_the_key_state(
    stubbed: tuple[AwsKmsKeyProvider, Stubber], state: str, expected: type[Exception]
) -> None:
    provider, stub = stubbed
    stub.add_client_error(
        "decrypt",
        service_error_code="KMSInvalidStateException",
        service_message=f"{ARN} is not usable.",
    )
    stub.add_response(
        "describe_key", {"KeyMetadata": {"KeyId": ARN, "KeyState": state}}, {"KeyId": ARN}
    )

    raises_exactly(expected, provider.unwrap, REF, b"blob", context=context("tenant-a"))


def test_destroy_of_a_key_already_pending_deletion_is_a_no_op(
    stubbed: tuple[AwsKmsKeyProvider, Stubber],
) -> None:
    # What KMS answers a second ScheduleKeyDeletion (moto reschedules instead).
    provider, stub = stubbed
    stub.add_client_error(
        "schedule_key_deletion",
        service_error_code="KMSInvalidStateException",
        service_message=PENDING,
    )

    provider.destroy(REF)


def test_requests_name_the_key_the_context_and_the_minimum_window(
    stubbed: tuple[AwsKmsKeyProvider, Stubber],
) -> None:
    provider, stub = stubbed
    key_id = ARN.rsplit("/", 1)[1]
    stub.add_response(
        "encrypt",
        {"CiphertextBlob": b"blob", "KeyId": ARN},
        {"KeyId": ARN, "Plaintext": DEK, "EncryptionContext": context("tenant-a")},
    )
    stub.add_response(
        "decrypt",
        {"Plaintext": DEK, "KeyId": ARN},
        {
            "KeyId": ARN,
            "CiphertextBlob": b"blob",
            "EncryptionContext": context("tenant-a"),
            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
        },
    )
    stub.add_response(
        "schedule_key_deletion", {"KeyId": ARN}, {"KeyId": key_id, "PendingWindowInDays": 7}
    )

    assert provider.wrap(REF, DEK, context=context("tenant-a")) == (b"blob", REF)
    assert provider.unwrap(REF, b"blob", context=context("tenant-a")) == DEK
    provider.destroy(REF)


def test_decrypt_answered_under_another_key_is_refused(
    stubbed: tuple[AwsKmsKeyProvider, Stubber],
) -> None:
    # Defence in depth: should KMS ever answer for another key than the one named.
    provider, stub = stubbed
    stub.add_response("decrypt", {"Plaintext": DEK, "KeyId": ARN[:-1] + "6"})

    raises_exactly(DecryptionFailed, provider.unwrap, REF, b"blob", context=context("tenant-a"))
