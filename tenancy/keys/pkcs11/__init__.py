"""Customer-managed KEKs in an HSM over PKCS#11 (SoftHSM2 in tests).

Every KEK version is generated on the token and never leaves it; every wrap and unwrap
runs inside it as AES-GCM with the wrap context as associated data. What the provider
needs to remember (versions, ``disabled`` and ``destroyed`` markers) lives on the token
too, so that any process holding the PIN sees the same state. The modules, each with the
rules that bite there written down:

- :mod:`.provider`: ``Pkcs11KeyProvider``, the operations and the wrapped-key format;
- :mod:`.session`: one provider's session behind a lock, reopened after device errors;
- :mod:`.login`: the process's one login per token, shared by its providers (PKCS#11 logs
  in per application, not per session);
- :mod:`.objects`: the labels and templates of what is kept on the token.
"""

from tenancy.keys.pkcs11.objects import KEY_BITS, LABEL_PREFIX
from tenancy.keys.pkcs11.provider import IV_BYTES, NAME, TAG_BITS, Pkcs11KeyProvider

__all__ = ["IV_BYTES", "KEY_BITS", "LABEL_PREFIX", "NAME", "TAG_BITS", "Pkcs11KeyProvider"]
