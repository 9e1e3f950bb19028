"""One provider's session on a PKCS#11 token, and what it reads there.

python-pkcs11 sessions are not thread-safe: each provider keeps one session behind a lock
and reopens it after a session or device error (reported as ``ProviderUnavailable``). The
session joins the process's login to the token (:mod:`.login`) instead of logging in.

Its own module because this is the plumbing every operation runs inside: finding the
token, holding the session, turning device errors into ``ProviderUnavailable``, and
reading a key's state fresh from the token; :mod:`.provider` holds the operations.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
from pkcs11 import exceptions as p11
from pkcs11.types import Session

from tenancy.errors import ConfigurationError, KeyDestroyed, KeyUnavailable, ProviderUnavailable
from tenancy.keys.pkcs11.login import Login, acquire_login, close_quietly, release_login
from tenancy.keys.pkcs11.objects import KeyState, find_marker, read_versions
from tenancy.keys.provider import KeyRef

# The session or the device is gone: drop the session, report a transient failure, and
# open a new session on the next call.
SESSION_LOST: tuple[type[p11.PKCS11Error], ...] = (
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


class TokenSession:
    """A provider's connection to one token: its name, the shared login, one session behind
    a lock, and the reading of a key's state (never cached: another process may have
    disabled or destroyed the key)."""

    def __init__(self, library: str, *, token_label: str, user_pin: str, name: str) -> None:
        """Load ``library``, find the token and log in (see ``Pkcs11KeyProvider``)."""
        self.name = name
        self._library = library
        self._token_label = token_label
        self._pin = user_pin
        self._lock = threading.RLock()
        self._session: Session | None = None
        self._login: Login | None = None
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
            except SESSION_LOST as exc:
                self._drop_session()
                raise ProviderUnavailable(f"the PKCS#11 session failed: {exc!r}") from exc
            except p11.PKCS11Error as exc:
                raise ProviderUnavailable(f"the HSM refused: {exc!r}") from exc

    def _open_session(self) -> Session:
        """A read/write session without a PIN of its own: it inherits the shared login,
        and closing it does not log anyone out."""
        if self._login is None:
            self._login = acquire_login(self._token, self._login_key, self._pin)
        try:
            return self._token.open(rw=True)
        except p11.PKCS11Error as exc:
            self._leave_login()
            raise ProviderUnavailable(f"cannot open a PKCS#11 session: {exc!r}") from exc

    def _drop_session(self) -> None:
        """Close the session and leave the login, so that the next call rejoins it (and
        logs in again if the device was reset)."""
        session, self._session = self._session, None
        close_quietly(session)
        self._leave_login()

    def _leave_login(self) -> None:
        login, self._login = self._login, None
        if login is not None:
            release_login(login)

    def _usable_state(self, session: Session, key: KeyRef) -> KeyState:
        """The key's state if it may be used now, else ``KeyDestroyed``/``KeyUnavailable``."""
        state = self._state(session, key)
        if not state.enabled:
            raise KeyUnavailable("the tenant's key is disabled")
        return state

    def _check_provider(self, key: KeyRef) -> None:
        if key.provider != self.name:
            raise KeyUnavailable("no such key")

    def _state(self, session: Session, key: KeyRef) -> KeyState:
        """Read the key's versions and markers from the token (never cached: another
        process may have disabled or destroyed it)."""
        self._check_provider(key)
        if find_marker(session, key, "destroyed") is not None:
            raise KeyDestroyed("the tenant's key was destroyed")
        state = read_versions(session, key)
        if not state.versions:
            raise KeyUnavailable("no such key")
        state.disabled_marker = find_marker(session, key, "disabled") is not None
        return state
