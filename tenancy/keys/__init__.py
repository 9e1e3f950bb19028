"""Per-tenant keys: envelope encryption under each tenant's own key-encryption key.

Data is sealed with AES-256-GCM under a data key per tenant and purpose; data keys are
wrapped by the tenant's KEK, held by a provider (a local key file sealed by a root key,
an HSM over PKCS#11, or the customer's AWS KMS key). Revoking the KEK makes the tenant's
data unreadable within the data-key cache's TTL; destroying it shreds the data for good.
"""

from tenancy.keys.cache import DataKeyCache
from tenancy.keys.columns import EncryptedBytes, EncryptedJSON, EncryptedString
from tenancy.keys.envelope import Binding, DataKey, open_, seal
from tenancy.keys.local import LocalKeyProvider, RootKey
from tenancy.keys.provider import KeyInfo, KeyProvider, KeyRef, ProviderUnavailable
from tenancy.keys.reencrypt import ReencryptionJob
from tenancy.keys.service import DEFAULT_PURPOSE, KeyStatus, TenantKeys

__all__ = [
    "DEFAULT_PURPOSE",
    "Binding",
    "DataKey",
    "DataKeyCache",
    "EncryptedBytes",
    "EncryptedJSON",
    "EncryptedString",
    "KeyInfo",
    "KeyProvider",
    "KeyRef",
    "KeyStatus",
    "LocalKeyProvider",
    "ProviderUnavailable",
    "ReencryptionJob",
    "RootKey",
    "TenantKeys",
    "open_",
    "seal",
]
