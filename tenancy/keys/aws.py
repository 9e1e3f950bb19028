"""Customer-managed KEKs in AWS KMS, through boto3.

Why KMS: the KEK never leaves KMS's HSMs, every use is logged in CloudTrail, and the key
can live in (or be granted from) the customer's own AWS account, so the customer can cut
off our access by disabling the key or revoking our grant. We only ever ask KMS to
``Encrypt`` or ``Decrypt`` a data key (at most 4 KiB) under a key id.

The tenant binding is the KMS *encryption context*: the wrap context (tenant, purpose,
data-key version) is passed as ``EncryptionContext`` on both calls, KMS authenticates it
with the ciphertext, and a blob presented with any other context fails with
``InvalidCiphertextException``. The context is logged in CloudTrail in the clear, so it
must name things, never hold secrets. ``Decrypt`` always names the ``KeyId`` too: without
it KMS would pick the key recorded inside the blob, so a blob wrapped under tenant B's key
would open when presented as tenant A's.

KMS versions keys itself: rotation adds key material behind the same key id, every
ciphertext records the material that made it, and old ciphertexts keep decrypting. So
every ``KeyRef`` here has ``version=None``.

Errors are mapped onto the provider protocol (see ``_from_client_error``): a disabled key
or a revoked grant is ``KeyUnavailable``; a key pending deletion or deleted is
``KeyDestroyed``; a wrong context, a tampered blob or a blob from another key is
``DecryptionFailed``; throttling, KMS internal errors, 5xx, timeouts and connection
failures are ``ProviderUnavailable`` (transient: the caller retries with backoff).

Destroying: KMS cannot delete a key at once. ``destroy`` schedules deletion with the
minimum waiting period, 7 days; from that moment the key is in ``PendingDeletion`` and
every cryptographic use of it is refused, which is what crypto-shredding needs. Until the
period ends, a principal allowed ``kms:CancelKeyDeletion`` can cancel it (the key then
comes back disabled); deny that permission if destroying must be final at once.

Management calls (disable, enable, rotate, schedule deletion) only work on keys in the
caller's own AWS account, so for those we send the key id part of a key ARN; data-plane
calls and ``DescribeKey`` send the ref exactly as stored (an ARN works across accounts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from tenancy.errors import (
    DecryptionFailed,
    KeyDestroyed,
    KeyManagementError,
    KeyUnavailable,
    ProviderUnavailable,
)
from tenancy.keys.provider import KeyInfo, KeyRef, context_bytes

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

NAME = "aws-kms"
PENDING_WINDOW_DAYS = 7  # the least KMS allows (7 to 30)
MAX_DEK_BYTES = 4096  # KMS Encrypt's plaintext limit
MAX_BLOB_BYTES = 6144  # KMS Decrypt's ciphertext limit

# Used by ``from_region`` unless the caller passes its own ``config``: short timeouts, so
# an unreachable KMS becomes ``ProviderUnavailable`` quickly, and botocore's standard
# retry mode (3 attempts, with backoff, on throttling and 5xx).
DEFAULT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"})

# KMS answers that mean "not now, try again": throttling, KMS's own internal failures, a
# dependency (e.g. a custom key store) timing out, or an automatic rotation in progress.
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "ConflictException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_PENDING_DELETION_STATES = frozenset({"PendingDeletion", "PendingReplicaDeletion"})
_PENDING_DELETION_MESSAGE = re.compile(r"pending (replica )?deletion", re.IGNORECASE)
_KEY_ARN = re.compile(r"^arn:[^:]+:kms:(?P<region>[^:]*):(?P<account>[^:]*):key/(?P<id>.+)$")


class AwsKmsKeyProvider:
    """KEKs as customer-managed symmetric keys in AWS KMS, one per tenant.

    ``client`` is a boto3 KMS client: the caller chooses region, endpoint, credentials,
    timeouts and retries. It is thread-safe, and so is this provider (it keeps no state).
    """

    name = NAME

    def __init__(self, client: KMSClient, *, region: str | None = None) -> None:
        self._client = client
        self.region: str = region or client.meta.region_name

    @classmethod
    def from_region(cls, region: str, **client_kwargs: Any) -> AwsKmsKeyProvider:
        """A provider with a new boto3 KMS client for ``region``; ``client_kwargs`` go to
        ``boto3.client`` (``endpoint_url``, credentials, ``config``, ...)."""
        client_kwargs.setdefault("config", DEFAULT_CONFIG)
        client: KMSClient = boto3.client("kms", region_name=region, **client_kwargs)
        return cls(client, region=region)

    def create_key(self, *, tenant_id: str) -> KeyRef:
        """Create a symmetric customer-managed KMS key for ``tenant_id`` (tagged
        ``tenancy:tenant-id``); returns its ARN as the ref, with ``version=None``. The key
        is created in the client's own account; its key policy is KMS's default.

        Raises:
            KeyManagementError: ``tenant_id`` is empty, or KMS refused (a limit,
                validation).
            ProviderUnavailable: KMS did not answer or is throttling.
        """
        if not isinstance(tenant_id, str) or not tenant_id:
            raise KeyManagementError("a key needs a tenant id")
        with self._calling("create a key"):
            response = self._client.create_key(
                KeySpec="SYMMETRIC_DEFAULT",
                KeyUsage="ENCRYPT_DECRYPT",
                Description=f"tenancy KEK for tenant {tenant_id}",
                Tags=[{"TagKey": "tenancy:tenant-id", "TagValue": tenant_id}],
            )
        metadata = response["KeyMetadata"]
        # The ARN, not the bare key id: it names region and account, so a ref handed to
        # a provider of another region is refused before any call (see ``_checked``).
        return KeyRef(NAME, metadata.get("Arn") or metadata["KeyId"], None)

    def wrap(self, key: KeyRef, dek: bytes, *, context: Mapping[str, str]) -> tuple[bytes, KeyRef]:
        """``Encrypt`` ``dek`` under the key with ``context`` as the KMS encryption context
        (logged in CloudTrail in the clear: names only). For an alias, the ref returned
        names the key KMS actually used, so moving the alias later does not change what
        unwraps the blob.

        Raises:
            KeyManagementError: ``dek`` is not 1 to 4096 bytes, or the context does not map
                strings to strings.
            KeyUnavailable: not an AWS KMS ref, a key of another region, disabled, or access
                denied.
            KeyDestroyed: the key is pending deletion or deleted.
            ProviderUnavailable: KMS did not answer, is throttling or failed.
        """
        key_id = self._checked(key)
        if not isinstance(dek, bytes) or not 1 <= len(dek) <= MAX_DEK_BYTES:
            raise KeyManagementError(f"a data key is 1 to {MAX_DEK_BYTES} bytes")
        encryption_context = _encryption_context(context)
        with self._calling("wrap a data key", key):
            response = self._client.encrypt(
                KeyId=key_id, Plaintext=dek, EncryptionContext=encryption_context
            )
        if _is_alias(key_id) and response.get("KeyId"):
            # An alias can be moved to another key later; store the key that was used.
            return response["CiphertextBlob"], KeyRef(NAME, response["KeyId"], None)
        return response["CiphertextBlob"], KeyRef(NAME, key_id, None)

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: Mapping[str, str]) -> bytes:
        """``Decrypt`` the blob naming the key id and ``context``, so a blob made under
        another key (another tenant's) or with another context is refused by KMS. For an ARN
        ref, a response naming another key is refused here too.

        Raises:
            DecryptionFailed: the blob is empty or over 6144 bytes, was altered, was made
                under another key, or ``context`` differs.
            KeyUnavailable: not an AWS KMS ref, a key of another region, disabled, or access
                denied.
            KeyDestroyed: the key is pending deletion or deleted.
            ProviderUnavailable: KMS did not answer, is throttling or failed.
        """
        key_id = self._checked(key)
        encryption_context = _encryption_context(context)
        if not isinstance(wrapped, bytes) or not 1 <= len(wrapped) <= MAX_BLOB_BYTES:
            raise DecryptionFailed("not a KMS ciphertext blob")
        with self._calling("unwrap a data key", key):
            # KeyId always: KMS then refuses a blob that another key made (IncorrectKey).
            response = self._client.decrypt(
                KeyId=key_id,
                CiphertextBlob=wrapped,
                EncryptionContext=encryption_context,
                EncryptionAlgorithm="SYMMETRIC_DEFAULT",
            )
        used = response.get("KeyId")
        if _KEY_ARN.match(key_id) and used and used != key_id:
            raise DecryptionFailed("KMS decrypted under another key than the one named")
        plaintext = response.get("Plaintext")
        if not plaintext:
            raise DecryptionFailed("KMS returned no plaintext")
        return plaintext

    def rotate(self, key: KeyRef) -> KeyRef:
        """Give the key new key material now. KMS keeps every earlier material, so blobs
        wrapped before still unwrap; the ref is unchanged (``version=None``).

        Falls back to turning on KMS's automatic (yearly) rotation when the installed
        botocore predates ``RotateKeyOnDemand`` (added in 2024). KMS limits on-demand
        rotations per key; past that this raises ``KeyManagementError``.
        """
        key_id = self._checked(key)
        rotate_now = getattr(self._client, "rotate_key_on_demand", None)
        with self._calling("rotate the key", key):
            if callable(rotate_now):
                rotate_now(KeyId=_own_key_id(key_id))
            else:
                self._client.enable_key_rotation(KeyId=_own_key_id(key_id))
        return KeyRef(NAME, key_id, None)

    def describe(self, key: KeyRef) -> KeyInfo:
        """The key's ref and whether it is enabled (KMS state ``Enabled``); ``versions`` is
        empty, since KMS versions key material itself.

        Raises:
            KeyUnavailable: not an AWS KMS ref, a key of another region, or access denied.
            KeyDestroyed: the key no longer exists.
            ProviderUnavailable: KMS did not answer.
        """
        key_id = self._checked(key)
        with self._calling("describe the key", key):
            metadata = self._client.describe_key(KeyId=key_id)["KeyMetadata"]
        return KeyInfo(
            KeyRef(NAME, key_id, None),
            enabled=metadata.get("KeyState") == "Enabled",
            versions=(),
            managed_by="customer",
            location=f"{NAME}:{self.region}",
        )

    def disable(self, key: KeyRef) -> None:
        """Disable the key in KMS (reversible): every ``Encrypt`` and ``Decrypt`` under it
        fails from then on, in every process. Only works on keys in the caller's own
        account.

        Raises:
            KeyUnavailable: not an AWS KMS ref, a key of another region, or access denied.
            KeyDestroyed: the key is pending deletion or deleted.
            ProviderUnavailable: KMS did not answer.
        """
        key_id = self._checked(key)
        with self._calling("disable the key", key):
            self._client.disable_key(KeyId=_own_key_id(key_id))

    def enable(self, key: KeyRef) -> None:
        """Re-enable the key in KMS. A key pending deletion is not brought back by this.

        Raises:
            KeyUnavailable: not an AWS KMS ref, a key of another region, or access denied.
            KeyDestroyed: the key is pending deletion or deleted.
            ProviderUnavailable: KMS did not answer.
        """
        key_id = self._checked(key)
        with self._calling("enable the key", key):
            self._client.enable_key(KeyId=_own_key_id(key_id))

    def destroy(self, key: KeyRef) -> None:
        """Schedule the key's deletion after ``PENDING_WINDOW_DAYS`` (7, the least KMS
        allows; it cannot delete sooner). The key is unusable from this call on. Calling
        it again for a key already pending deletion, or deleted, does nothing."""
        key_id = self._checked(key)
        try:
            with self._calling("destroy the key", key):
                self._client.schedule_key_deletion(
                    KeyId=_own_key_id(key_id), PendingWindowInDays=PENDING_WINDOW_DAYS
                )
        except KeyDestroyed:
            return

    # -- internals -------------------------------------------------------------------

    def _checked(self, key: KeyRef) -> str:
        """The key id to send, after refusing refs that are not ours to use."""
        if key.provider != NAME or not isinstance(key.key_id, str) or not key.key_id:
            raise KeyUnavailable("not an AWS KMS key")
        arn = _KEY_ARN.match(key.key_id)
        if arn and arn["region"] != self.region:
            # Sent anyway, KMS would answer NotFound, which reads as "destroyed".
            raise KeyUnavailable(f"the key is in {arn['region']}, this provider in {self.region}")
        return key.key_id

    @contextmanager
    def _calling(self, action: str, key: KeyRef | None = None) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            raise self._from_client_error(exc, action, key) from exc
        except ParamValidationError as exc:
            raise KeyManagementError(f"invalid AWS KMS request to {action}") from exc
        except BotoCoreError as exc:
            # EndpointConnectionError, connect and read timeouts, closed connections,
            # TLS failures, credentials that could not be fetched: KMS did not answer.
            raise ProviderUnavailable(
                f"AWS KMS did not answer ({type(exc).__name__}) to {action}"
            ) from exc

    def _from_client_error(
        self, exc: ClientError, action: str, key: KeyRef | None
    ) -> KeyManagementError:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in _TRANSIENT_CODES or status >= 500:
            return ProviderUnavailable(f"AWS KMS could not {action} now ({code or status})")
        if code == "DisabledException":
            return KeyUnavailable("the tenant's key is disabled")
        if code == "KMSInvalidStateException":
            if self._pending_deletion(error.get("Message", ""), key):
                return KeyDestroyed("the tenant's key is pending deletion")
            return KeyUnavailable(f"the tenant's key is in a state that does not allow to {action}")
        if code == "NotFoundException":
            # Refs come from create_key and were checked to be of this region, so a key
            # KMS no longer knows is one whose scheduled deletion has run.
            return KeyDestroyed("the tenant's key no longer exists")
        if code in ("InvalidCiphertextException", "IncorrectKeyException"):
            return DecryptionFailed(
                f"KMS refused the blob ({code}): wrong context, tampered, or made under another key"
            )
        if code == "AccessDeniedException":
            return KeyUnavailable(
                "access to the tenant's key is denied (key policy or grant revoked?)"
            )
        if code in (
            "ValidationException",
            "LimitExceededException",
            "UnsupportedOperationException",
        ):
            return KeyManagementError(f"AWS KMS refused to {action} ({code})")
        return KeyUnavailable(f"AWS KMS refused to {action} ({code or status})")

    def _pending_deletion(self, message: str, key: KeyRef | None) -> bool:
        """Whether a KMSInvalidStateException means "pending deletion": KMS says so in
        the message; if it does not, ask for the key's state (best effort)."""
        if _PENDING_DELETION_MESSAGE.search(message):
            return True
        if key is None:
            return False
        try:
            metadata = self._client.describe_key(KeyId=key.key_id)["KeyMetadata"]
        except (ClientError, BotoCoreError):
            return False
        return metadata.get("KeyState") in _PENDING_DELETION_STATES


def _encryption_context(context: Mapping[str, str]) -> dict[str, str]:
    context_bytes(context)  # the same rule as every provider: strings to strings
    return dict(context)


def _own_key_id(key_id: str) -> str:
    """The key id part of a key ARN, for calls KMS allows only in the key's own account
    (where the key id and the ARN name the same key)."""
    arn = _KEY_ARN.match(key_id)
    return arn["id"] if arn else key_id


def _is_alias(key_id: str) -> bool:
    return key_id.startswith("alias/") or ":alias/" in key_id
