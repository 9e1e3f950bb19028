"""Customer-managed KEKs in an HSM over PKCS#11 (SoftHSM2 in tests).

Each KEK version is an AES-256 secret key object generated *on* the token (``TOKEN``,
``SENSITIVE``, not ``EXTRACTABLE``, not ``COPYABLE``, usable only to encrypt and decrypt):
its value never leaves the HSM, and every wrap and unwrap runs inside it as AES-GCM
with the wrap context (``context_bytes``) as associated data. A wrapped data key is
``iv (12 bytes) || ciphertext || tag (16 bytes)``.

What the provider needs to remember lives on the token too, so that any process holding
the PIN sees the same state:

- a KEK version is the secret key whose ``CKA_ID`` is the key id and whose label is
  ``tenancy:<key_id>:<version>``; the current version is the highest;
- ``disable`` clears ``CKA_ENCRYPT``/``CKA_DECRYPT`` on every version, so the HSM itself
  refuses to use the key; a token that does not let those attributes change gets a
  private ``DATA`` object ``tenancy:<key_id>:disabled`` instead, checked before each use;
- ``destroy`` first leaves a private ``DATA`` object ``tenancy:<key_id>:destroyed``, then
  destroys every version, so a later provider reports ``KeyDestroyed`` and not "missing".

PKCS#11 logs in per application, not per session: a second provider on a token that this
process already logged into cannot log in again (``CKR_USER_ALREADY_LOGGED_IN``), and
logging out one session logs out all. The providers of a process therefore share one
login per token (see ``_Login``), and a later provider's PIN is checked against the one
the token accepted, so a wrong PIN still fails at construction.

python-pkcs11 sessions are not thread-safe: each provider keeps one session behind a lock
and reopens it after a session or device error (reported as ``ProviderUnavailable``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.types import DecryptMixin, EncryptMixin, Object, Session, Token

from tenancy.errors import (
    ConfigurationError,
    DecryptionFailed,
    KeyDestroyed,
    KeyManagementError,
    KeyUnavailable,
    ProviderUnavailable,
)
from tenancy.keys.provider import KeyInfo, KeyRef, context_bytes

NAME = "pkcs11"
LABEL_PREFIX = "tenancy"
IV_BYTES = 12
TAG_BITS = 128
KEY_BITS = 256
_MARKER_APPLICATION = "tenancy"

# The session or the device is gone: drop the session, report a transient failure, and
# open a new session on the next call.
_SESSION_LOST: tuple[type[p11.PKCS11Error], ...] = (
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.DeviceMemory,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.UserNotLoggedIn,
    p11.HostMemory,
    p11.FunctionFailed,
)
# The PIN is wrong or unusable: a configuration problem, not a transient one.
_PIN_ERRORS: tuple[type[p11.PKCS11Error], ...] = (
    p11.PinIncorrect,
    p11.PinInvalid,
    p11.PinLenRange,
    p11.PinLocked,
    p11.PinExpired,
    p11.UserPinNotInitialized,
)
# What a token answers to a GCM tag that does not verify (SoftHSM2: CKR_GENERAL_ERROR;
# others: CKR_ENCRYPTED_DATA_INVALID), or to a blob of the wrong length.
_AUTH_FAILED: tuple[type[p11.PKCS11Error], ...] = (
    p11.GeneralError,
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
)
# The token will not change ENCRYPT/DECRYPT on an existing key: fall back to a marker.
_ATTRIBUTE_REFUSED: tuple[type[p11.PKCS11Error], ...] = (
    p11.AttributeReadOnly,
    p11.AttributeValueInvalid,
    p11.AttributeTypeInvalid,
    p11.TemplateInconsistent,
    p11.FunctionNotSupported,
)


# -- process-wide login bookkeeping ----------------------------------------------------


@dataclass(eq=False)
class _Login:
    """The process's login to one token, shared by every provider on it.

    PKCS#11 logs in per application, and python-pkcs11 logs out (``C_Logout``) when the
    session that logged in closes: were each provider to log in with its own session,
    closing one would log out all the others. So one *holder* session logs in and stays
    open while any provider uses the token; providers open sessions without a PIN, which
    inherit the login. ``digest`` (salted) is the PIN the token accepted, compared with
    the PIN of each later provider, since the token cannot be asked again.
    """

    holder: Session | None  # None: logged in by code other than this module
    digest: bytes | None  # None: the PIN of that foreign login is unknown
    users: int = 0


_PIN_SALT = os.urandom(16)
_logins: dict[tuple[str, bytes], _Login] = {}
_logins_lock = threading.Lock()
# Serialises key-management changes (create, rotate, disable, enable, destroy) across the
# providers of this process, so two rotations cannot both create the same version.
_admin_lock = threading.Lock()


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(_PIN_SALT + pin.encode()).digest()


def _acquire_login(token: Token, login_key: tuple[str, bytes], pin: str) -> _Login:
    """Join the process's login to ``token``, logging in first if there is none.

    Raises ``ConfigurationError`` for a PIN the token (or the earlier login) refuses,
    ``ProviderUnavailable`` when the token does not answer.
    """
    with _logins_lock:
        entry = _logins.get(login_key)
        if entry is not None and not _alive(entry):
            del _logins[login_key]  # the device was reset: log in again
            _close_quietly(entry.holder)
            entry = None
        if entry is None:
            entry = _logins[login_key] = _login(token, pin)
        elif entry.digest is not None and not hmac.compare_digest(entry.digest, _pin_digest(pin)):
            raise ConfigurationError("the PKCS#11 user PIN is incorrect")
        entry.users += 1
        return entry


def _login(token: Token, pin: str) -> _Login:
    try:
        holder = token.open(user_pin=pin)
    except p11.UserAlreadyLoggedIn:
        # Another library in this process logged in: the login is the process's, and
        # there is no PIN to compare with.
        return _Login(holder=None, digest=None)
    except _PIN_ERRORS as exc:
        raise ConfigurationError(
            f"the PKCS#11 user PIN was refused ({type(exc).__name__})"
        ) from exc
    except p11.PKCS11Error as exc:
        raise ProviderUnavailable(f"cannot log in to the PKCS#11 token: {exc!r}") from exc
    return _Login(holder=holder, digest=_pin_digest(pin))


def _alive(entry: _Login) -> bool:
    """Whether the holder session still works (checked only when a provider (re)joins)."""
    if entry.holder is None:
        return True
    try:
        entry.holder.generate_random(64)
    except (p11.FunctionNotSupported, p11.RandomNoRNG):
        return True
    except p11.PKCS11Error:
        return False
    return True


def _release_login(entry: _Login) -> None:
    """Leave a login; the last provider to leave logs the process out."""
    with _logins_lock:
        entry.users -= 1
        if entry.users > 0:
            return
        for key, registered in list(_logins.items()):
            if registered is entry:
                del _logins[key]
        _close_quietly(entry.holder)


def _close_quietly(session: Session | None) -> None:
    if session is not None:
        with contextlib.suppress(p11.PKCS11Error):  # the session or device is gone already
            session.close()


# -- the provider ----------------------------------------------------------------------


@dataclass
class _KeyState:
    """What the token holds for one key id, read fresh for each operation."""

    versions: dict[str, Object] = field(default_factory=dict)
    usable: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # (encrypt, decrypt)
    disabled_marker: bool = False

    @property
    def current(self) -> str:
        return max(self.versions, key=int)

    @property
    def attributes_usable(self) -> bool:
        """Every version may encrypt and decrypt, as far as the token's attributes say."""
        return all(e and d for e, d in self.usable.values())

    @property
    def enabled(self) -> bool:
        return not self.disabled_marker and self.attributes_usable


class Pkcs11KeyProvider:
    """Customer-managed KEKs on a PKCS#11 token; implements ``KeyProvider``."""

    def __init__(self, library: str, *, token_label: str, user_pin: str, name: str = NAME) -> None:
        """Load ``library``, find the token labelled ``token_label`` and log in.

        Fails here, with ``ConfigurationError``, on a missing library, an unknown token or
        a wrong PIN, so that a misconfigured service does not start. ``name`` is the
        provider name its ``KeyRef``s carry (another one per token when there are several).
        """
        self.name = name
        self._library = library
        self._token_label = token_label
        self._pin = user_pin
        self._lock = threading.RLock()
        self._session: Session | None = None
        self._login: _Login | None = None
        if not Path(library).is_file():
            raise ConfigurationError(f"PKCS#11 library {library} does not exist")
        try:
            lib = pkcs11.lib(library)
        except p11.PKCS11Error as exc:
            raise ConfigurationError(f"cannot load PKCS#11 library {library}: {exc}") from exc
        try:
            self._token = lib.get_token(token_label=token_label)
        except p11.NoSuchToken as exc:
            raise ConfigurationError(f"no PKCS#11 token labelled {token_label!r}") from exc
        except p11.MultipleTokensReturned as exc:
            raise ConfigurationError(
                f"several PKCS#11 tokens are labelled {token_label!r}"
            ) from exc
        except p11.PKCS11Error as exc:
            raise ConfigurationError(f"cannot list PKCS#11 tokens: {exc!r}") from exc
        self._login_key = (os.path.realpath(library), bytes(self._token.serial))
        self._session = self._open_session()

    def __repr__(self) -> str:
        return f"Pkcs11KeyProvider(token={self._token_label!r}, pin=***)"

    def close(self) -> None:
        """Close the session; the last provider on a token logs the process out."""
        with self._lock:
            self._drop_session()

    def __enter__(self) -> Pkcs11KeyProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- KeyProvider ---------------------------------------------------------------------

    def create_key(self, *, tenant_id: str) -> KeyRef:
        """Generate version 1 of a new KEK for ``tenant_id`` on the token (non-extractable,
        sensitive) under a fresh random key id; returns its ref.

        Raises:
            ProviderUnavailable: the token failed or refused to generate the key.
        """
        key_id = f"kek-{tenant_id}-{os.urandom(4).hex()}"
        with _admin_lock, self._using() as session:
            self._generate(session, key_id, "1", usable=True)
        return KeyRef(self.name, key_id, "1")

    def wrap(self, key: KeyRef, dek: bytes, *, context: Mapping[str, str]) -> tuple[bytes, KeyRef]:
        """Wrap ``dek`` inside the HSM with AES-GCM under the KEK's current version (a fresh
        random IV, the canonical ``context`` as associated data); ``key.version`` is
        ignored. Returns ``iv || ciphertext || tag`` and the versioned ref. The key's state
        is read from the token first, never from memory.

        Raises:
            KeyUnavailable: the key is unknown, not this provider's, or disabled.
            KeyDestroyed: the key was destroyed.
            ProviderUnavailable: the session or device failed, or the HSM refused to
                encrypt.
        """
        aad = context_bytes(context)
        with self._using() as session:
            state = self._usable_state(session, key)
            version = state.current
            obj = state.versions[version]
            if not isinstance(obj, EncryptMixin):
                raise KeyUnavailable("the tenant's key is disabled")
            iv = os.urandom(IV_BYTES)
            try:
                sealed = obj.encrypt(
                    dek,
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=pkcs11.GCMParams(iv, aad, TAG_BITS),
                )
            except _SESSION_LOST:
                raise
            except p11.PKCS11Error as exc:
                # Disabled or destroyed since we looked (another process)? Say so.
                self._usable_state(session, key)
                raise ProviderUnavailable(f"the HSM did not wrap: {exc!r}") from exc
            assert isinstance(sealed, bytes)
            return iv + sealed, KeyRef(self.name, key.key_id, version)

    def unwrap(self, key: KeyRef, wrapped: bytes, *, context: Mapping[str, str]) -> bytes:
        """Unwrap a data key inside the HSM under ``key.version`` (the current version if
        None).

        Raises:
            KeyUnavailable: the key is unknown, not this provider's, disabled, or the
                version does not exist (a version destroyed alone reads like this too).
            KeyDestroyed: the key was destroyed.
            DecryptionFailed: the blob is too short, was altered, or ``context`` differs
                from the one it was wrapped with.
            ProviderUnavailable: the session or device failed, or the HSM refused otherwise.
        """
        aad = context_bytes(context)
        with self._using() as session:
            state = self._usable_state(session, key)
            version = key.version or state.current
            obj = state.versions.get(version)
            if obj is None:
                raise KeyUnavailable("KEK version does not exist")
            if not isinstance(obj, DecryptMixin):
                raise KeyUnavailable("the tenant's key is disabled")
            if len(wrapped) < IV_BYTES + TAG_BITS // 8:
                raise DecryptionFailed("wrapped data key is too short")
            params = pkcs11.GCMParams(wrapped[:IV_BYTES], aad, TAG_BITS)
            try:
                dek = obj.decrypt(
                    wrapped[IV_BYTES:], mechanism=Mechanism.AES_GCM, mechanism_param=params
                )
            except _SESSION_LOST:
                raise
            except p11.PKCS11Error as exc:
                # Re-reading the key both tells "disabled/destroyed meanwhile" apart and
                # proves the session works, so the error was the tag that did not verify.
                self._usable_state(session, key)
                if isinstance(exc, _AUTH_FAILED):
                    raise DecryptionFailed(
                        "wrapped data key does not open in this context"
                    ) from exc
                raise ProviderUnavailable(f"the HSM did not unwrap: {exc!r}") from exc
            assert isinstance(dek, bytes)
            return dek

    def rotate(self, key: KeyRef) -> KeyRef:
        """Generate a new current version (the highest plus one); older versions still
        unwrap. A key disabled through its attributes gets a new version that is disabled
        too. Rotations are serialised within this process only: two processes rotating one
        key at once are not coordinated.

        Raises:
            KeyUnavailable: the key is unknown or not this provider's.
            KeyDestroyed: the key was destroyed.
        """
        with _admin_lock, self._using() as session:
            state = self._state(session, key)
            version = str(int(state.current) + 1)
            # A key disabled through its attributes stays so: the new version is born
            # unusable too. (One disabled by a marker stays disabled by the marker.)
            self._generate(session, key.key_id, version, usable=state.attributes_usable)
        return KeyRef(self.name, key.key_id, version)

    def describe(self, key: KeyRef) -> KeyInfo:
        """The key's current version, versions and whether it is enabled, read from the
        token. A destroyed key is described (disabled, no versions, the last current version
        in its ref) rather than refused. ``managed_by`` is always "customer".

        Raises:
            KeyUnavailable: the key is unknown or not this provider's.
        """
        self._check_provider(key)
        with self._using() as session:
            destroyed = self._marker(session, key, "destroyed")
            if destroyed is not None:
                last = bytes(destroyed[Attribute.VALUE]).decode() or None
                return KeyInfo(
                    KeyRef(self.name, key.key_id, last),
                    enabled=False,
                    versions=(),
                    managed_by="customer",
                    location=self._location,
                )
            state = self._state(session, key)
            return KeyInfo(
                KeyRef(self.name, key.key_id, state.current),
                enabled=state.enabled,
                versions=tuple(sorted(state.versions, key=int)),
                managed_by="customer",
                location=self._location,
            )

    def disable(self, key: KeyRef) -> None:
        """Disable the key (reversible) by clearing ENCRYPT/DECRYPT on every version, so the
        HSM itself refuses it; on a token that will not change those attributes, by leaving
        a private ``disabled`` marker that every use checks first.

        Raises:
            KeyUnavailable: the key is unknown or not this provider's.
            KeyDestroyed: the key was destroyed.
        """
        with _admin_lock, self._using() as session:
            state = self._state(session, key)
            if not self._set_usable(state, False) and not state.disabled_marker:
                self._create_marker(session, key, "disabled")

    def enable(self, key: KeyRef) -> None:
        """Re-enable the key: set ENCRYPT/DECRYPT on every version again, then remove any
        ``disabled`` marker.

        Raises:
            KeyUnavailable: the key is unknown or not this provider's, or the token refuses
                to change the attributes back.
            KeyDestroyed: the key was destroyed.
        """
        with _admin_lock, self._using() as session:
            state = self._state(session, key)
            if not self._set_usable(state, True):
                raise KeyUnavailable("the token refuses to re-enable the tenant's key")
            # Only once every version is usable again does the marker go.
            marker = self._marker(session, key, "disabled")
            if marker is not None:
                marker.destroy()

    def destroy(self, key: KeyRef) -> None:
        """Crypto-shred: leave a private ``destroyed`` marker, then destroy every version on
        the token (irreversible). Interrupted half-way, the key already reads as destroyed,
        and calling again finishes the job; on a destroyed key it is otherwise a no-op.

        Raises:
            KeyUnavailable: the key is unknown or not this provider's.
        """
        self._check_provider(key)
        with _admin_lock, self._using() as session:
            state = self._versions(session, key)
            if self._marker(session, key, "destroyed") is None:
                if not state.versions:
                    raise KeyUnavailable("no such key")
                # The marker first: should we stop half-way, the key already reads as
                # destroyed, and destroying again finishes the job.
                self._create_marker(session, key, "destroyed", value=state.current.encode())
            for obj in state.versions.values():
                obj.destroy()
            marker = self._marker(session, key, "disabled")
            if marker is not None:
                marker.destroy()

    def destroy_version(self, key: KeyRef, version: str) -> None:
        """Destroy one replaced version on the token (never the current one)."""
        with _admin_lock, self._using() as session:
            state = self._versions(session, key)
            if state.versions and version == state.current:
                raise KeyManagementError("the current KEK version cannot be destroyed alone")
            obj = state.versions.get(version)
            if obj is not None:
                obj.destroy()

    # -- internals -------------------------------------------------------------------

    @property
    def _location(self) -> str:
        return f"pkcs11:{self._token_label}"

    @contextlib.contextmanager
    def _using(self) -> Iterator[Session]:
        """The provider's session, under its lock; device and session errors become
        ``ProviderUnavailable`` (and drop the session, reopened on the next call)."""
        with self._lock:
            if self._session is None:
                try:
                    self._session = self._open_session()
                except ConfigurationError as exc:  # the PIN was changed under us
                    raise ProviderUnavailable(str(exc)) from exc
            try:
                yield self._session
            except _SESSION_LOST as exc:
                self._drop_session()
                raise ProviderUnavailable(f"the PKCS#11 session failed: {exc!r}") from exc
            except p11.PKCS11Error as exc:
                raise ProviderUnavailable(f"the HSM refused: {exc!r}") from exc

    def _open_session(self) -> Session:
        """A read/write session without a PIN of its own: it inherits the shared login,
        and closing it does not log anyone out."""
        if self._login is None:
            self._login = _acquire_login(self._token, self._login_key, self._pin)
        try:
            return self._token.open(rw=True)
        except p11.PKCS11Error as exc:
            self._leave_login()
            raise ProviderUnavailable(f"cannot open a PKCS#11 session: {exc!r}") from exc

    def _drop_session(self) -> None:
        """Close the session and leave the login, so that the next call rejoins it (and
        logs in again if the device was reset)."""
        session, self._session = self._session, None
        _close_quietly(session)
        self._leave_login()

    def _leave_login(self) -> None:
        login, self._login = self._login, None
        if login is not None:
            _release_login(login)

    def _usable_state(self, session: Session, key: KeyRef) -> _KeyState:
        """The key's state if it may be used now, else ``KeyDestroyed``/``KeyUnavailable``."""
        state = self._state(session, key)
        if not state.enabled:
            raise KeyUnavailable("the tenant's key is disabled")
        return state

    def _check_provider(self, key: KeyRef) -> None:
        if key.provider != self.name:
            raise KeyUnavailable("no such key")

    def _state(self, session: Session, key: KeyRef) -> _KeyState:
        """Read the key's versions and markers from the token (never cached: another
        process may have disabled or destroyed it)."""
        self._check_provider(key)
        if self._marker(session, key, "destroyed") is not None:
            raise KeyDestroyed("the tenant's key was destroyed")
        state = self._versions(session, key)
        if not state.versions:
            raise KeyUnavailable("no such key")
        state.disabled_marker = self._marker(session, key, "disabled") is not None
        return state

    @staticmethod
    def _versions(session: Session, key: KeyRef) -> _KeyState:
        """The key's version objects on the token, with their ENCRYPT/DECRYPT flags."""
        state = _KeyState()
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

    def _generate(self, session: Session, key_id: str, version: str, *, usable: bool) -> None:
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

    @staticmethod
    def _set_usable(state: _KeyState, usable: bool) -> bool:
        """Set ENCRYPT and DECRYPT on every version; False if the token refuses.

        Only attributes that differ are written, so that enabling a key that was disabled
        by a marker (on a token that refuses the change) does not ask for it at all.
        """
        try:
            for version, obj in state.versions.items():
                can_encrypt, can_decrypt = state.usable[version]
                if can_encrypt != usable:
                    obj[Attribute.ENCRYPT] = usable
                if can_decrypt != usable:
                    obj[Attribute.DECRYPT] = usable
        except _ATTRIBUTE_REFUSED:
            return False
        return True

    @staticmethod
    def _marker(session: Session, key: KeyRef, kind: str) -> Object | None:
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

    @staticmethod
    def _create_marker(session: Session, key: KeyRef, kind: str, *, value: bytes = b"") -> None:
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
