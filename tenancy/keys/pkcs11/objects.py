"""What a provider keeps on the token, so that any process holding the PIN sees the same
state:

- a KEK version is the secret key whose ``CKA_ID`` is the key id and whose label is
  ``tenancy:<key_id>:<version>``; the current version is the highest;
- ``disable`` clears ``CKA_ENCRYPT``/``CKA_DECRYPT`` on every version, so the HSM itself
  refuses to use the key; a token that does not let those attributes change gets a
  private ``DATA`` object ``tenancy:<key_id>:disabled`` instead, checked before each use;
- ``destroy`` first leaves a private ``DATA`` object ``tenancy:<key_id>:destroyed``, then
  destroys every version, so a later provider reports ``KeyDestroyed`` and not "missing".

Its own module because these templates and labels are the on-token format: every object
the provider creates or looks for is spelled here, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11.types import Object, Session

from tenancy.keys.provider import KeyRef

LABEL_PREFIX = "tenancy"
KEY_BITS = 256
_MARKER_APPLICATION = "tenancy"


@dataclass
class KeyState:
    """What the token holds for one key id, read fresh for each operation."""

    versions: dict[str, Object] = field(default_factory=dict)
    usable: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # (encrypt, decrypt)
    disabled_marker: bool = False

    @property
    def current(self) -> str:
        """The current version: the highest."""
        return max(self.versions, key=int)

    @property
    def attributes_usable(self) -> bool:
        """Every version may encrypt and decrypt, as far as the token's attributes say."""
        return all(e and d for e, d in self.usable.values())

    @property
    def enabled(self) -> bool:
        """Usable now: no ``disabled`` marker, and every version's attributes allow it."""
        return not self.disabled_marker and self.attributes_usable


def read_versions(session: Session, key: KeyRef) -> KeyState:
    """The key's version objects on the token, with their ENCRYPT/DECRYPT flags."""
    state = KeyState()
    prefix = f"{LABEL_PREFIX}:{key.key_id}:"
    template = {
        Attribute.CLASS: ObjectClass.SECRET_KEY,
        Attribute.KEY_TYPE: KeyType.AES,
        Attribute.ID: key.key_id.encode(),
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
    }
    for obj in list(session.get_objects(template)):
        attrs = obj.get_attributes([Attribute.LABEL, Attribute.ENCRYPT, Attribute.DECRYPT])
        label = str(attrs[Attribute.LABEL])
        version = label.removeprefix(prefix)
        if label.startswith(prefix) and version.isdigit():
            state.versions[version] = obj
            state.usable[version] = (
                bool(attrs[Attribute.ENCRYPT]),
                bool(attrs[Attribute.DECRYPT]),
            )
    return state


def generate_version(session: Session, key_id: str, version: str, *, usable: bool) -> None:
    """Generate one KEK version on the token; its value never leaves it."""
    session.generate_key(
        KeyType.AES,
        KEY_BITS,
        id=key_id.encode(),
        label=f"{LABEL_PREFIX}:{key_id}:{version}",
        store=True,
        capabilities=MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT,
        template={
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.COPYABLE: False,
            Attribute.MODIFIABLE: True,  # so that disable/enable can flip usage
            Attribute.ENCRYPT: usable,
            Attribute.DECRYPT: usable,
        },
    )


def find_marker(session: Session, key: KeyRef, kind: str) -> Object | None:
    """The private DATA object ``tenancy:<key_id>:<kind>``, if the token has one.

    Only private objects count: they need the user PIN to create, so a public session
    cannot plant a marker that makes a key look destroyed.
    """
    template: dict[Attribute, Any] = {
        Attribute.CLASS: ObjectClass.DATA,
        Attribute.TOKEN: True,
        Attribute.PRIVATE: True,
        Attribute.APPLICATION: _MARKER_APPLICATION,
        Attribute.LABEL: f"{LABEL_PREFIX}:{key.key_id}:{kind}",
    }
    return next(iter(list(session.get_objects(template))), None)


def create_marker(session: Session, key: KeyRef, kind: str, *, value: bytes = b"") -> None:
    """Leave the private, unmodifiable DATA object ``tenancy:<key_id>:<kind>`` (holding
    ``value``) on the token."""
    session.create_object(
        {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.MODIFIABLE: False,
            Attribute.APPLICATION: _MARKER_APPLICATION,
            Attribute.LABEL: f"{LABEL_PREFIX}:{key.key_id}:{kind}",
            Attribute.VALUE: value,
        }
    )
