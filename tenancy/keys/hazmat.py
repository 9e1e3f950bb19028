"""Hazardous materials: the raw envelope, for those who manage data keys themselves.

``seal`` and ``open_`` encrypt and decrypt with a ``DataKey`` you hold, bound to a
``Binding``: no tenant check, no key cache, no rotation by age or message count, no
key-state signal, no audit event. Everything :class:`~tenancy.keys.TenantKeys` does
around them is then yours to do. Like ``cryptography.hazmat``, this layer is kept apart
from the package's public face (``tenancy.keys``) so that the safe recipe is the
obvious one; the wire format is documented in ``tenancy.keys.envelope``.
"""

from tenancy.keys.envelope import (
    DEK_BYTES,
    HEADER_BYTES,
    NONCE_BYTES,
    DataKey,
    header_version,
    open_,
    seal,
)

__all__ = ["DEK_BYTES", "HEADER_BYTES", "NONCE_BYTES", "DataKey", "header_version", "open_", "seal"]
