"""Per-tenant keys: envelope encryption under each tenant's own key-encryption key.

Data is sealed with AES-256-GCM under a data key per tenant and purpose; data keys are
wrapped by the tenant's platform KEK (a local key file sealed by a root key, or an HSM
over PKCS#11) and, for customer-managed tenants, wrapped again by the customer's key (an
HSM, AWS KMS). The customer's revocation makes the tenant's data unreadable within the
tenant's cache TTL; the platform's shred destroys the KEK it holds, which makes every copy
of every wrapped data key useless. Every platform-side change is seen by every process on
its next use (``tenancy.keys.state``).

The raw envelope (``seal``, ``open_``, ``DataKey``) lives in :mod:`tenancy.keys.hazmat`:
it skips every check this package's recipes make.
"""

from tenancy.keys.cache import DataKeyCache
from tenancy.keys.columns import EncryptedBytes, EncryptedJSON, EncryptedString
from tenancy.keys.envelope import Binding
from tenancy.keys.lifecycle import DEFAULT_PURPOSE, KeyStatus
from tenancy.keys.local import LocalKeyProvider, RootKey
from tenancy.keys.provider import (
    KeyInfo,
    KeyProvider,
    KeyRef,
    PlatformKeyProvider,
    ProviderUnavailable,
)
from tenancy.keys.reencrypt import ReencryptionJob
from tenancy.keys.service import TenantKeys
from tenancy.keys.state import KeyStateSignal, ProcessKeyState, SharedKeyState

__all__ = [
    "DEFAULT_PURPOSE",
    "Binding",
    "DataKeyCache",
    "EncryptedBytes",
    "EncryptedJSON",
    "EncryptedString",
    "KeyInfo",
    "KeyProvider",
    "KeyRef",
    "KeyStateSignal",
    "KeyStatus",
    "LocalKeyProvider",
    "PlatformKeyProvider",
    "ProcessKeyState",
    "ProviderUnavailable",
    "ReencryptionJob",
    "RootKey",
    "SharedKeyState",
    "TenantKeys",
]
