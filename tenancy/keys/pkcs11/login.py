"""The process's logins to PKCS#11 tokens, shared by every provider on a token.

PKCS#11 logs in per application, not per session: a second provider on a token that this
process already logged into cannot log in again (``CKR_USER_ALREADY_LOGGED_IN``), and
logging out one session logs out all. The providers of a process therefore share one
login per token (see ``Login``), and a later provider's PIN is checked against the one
the token accepted, so a wrong PIN still fails at construction.

Its own module because this bookkeeping is process-wide (module state under a lock),
while everything else in the package belongs to one provider.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass

from pkcs11 import exceptions as p11
from pkcs11.types import Session, Token

from tenancy.errors import ConfigurationError, ProviderUnavailable

# The PIN is wrong or unusable: a configuration problem, not a transient one.
_PIN_ERRORS: tuple[type[p11.PKCS11Error], ...] = (
    p11.PinIncorrect,
    p11.PinInvalid,
    p11.PinLenRange,
    p11.PinLocked,
    p11.PinExpired,
    p11.UserPinNotInitialized,
)


@dataclass(eq=False)
class Login:
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
_logins: dict[tuple[str, bytes], Login] = {}
_logins_lock = threading.Lock()


def _pin_digest(pin: str) -> bytes:
    return hashlib.sha256(_PIN_SALT + pin.encode()).digest()


def acquire_login(token: Token, login_key: tuple[str, bytes], pin: str) -> Login:
    """Join the process's login to ``token``, logging in first if there is none.

    Raises ``ConfigurationError`` for a PIN the token (or the earlier login) refuses,
    ``ProviderUnavailable`` when the token does not answer.
    """
    with _logins_lock:
        entry = _logins.get(login_key)
        if entry is not None and not _alive(entry):
            del _logins[login_key]  # the device was reset: log in again
            close_quietly(entry.holder)
            entry = None
        if entry is None:
            entry = _logins[login_key] = _login(token, pin)
        elif entry.digest is not None and not hmac.compare_digest(entry.digest, _pin_digest(pin)):
            raise ConfigurationError("the PKCS#11 user PIN is incorrect")
        entry.users += 1
        return entry


def _login(token: Token, pin: str) -> Login:
    try:
        holder = token.open(user_pin=pin)
    except p11.UserAlreadyLoggedIn:
        # Another library in this process logged in: the login is the process's, and
        # there is no PIN to compare with.
        return Login(holder=None, digest=None)
    except _PIN_ERRORS as exc:
        raise ConfigurationError(
            f"the PKCS#11 user PIN was refused ({type(exc).__name__})"
        ) from exc
    except p11.PKCS11Error as exc:
        raise ProviderUnavailable(f"cannot log in to the PKCS#11 token: {exc!r}") from exc
    return Login(holder=holder, digest=_pin_digest(pin))


def _alive(entry: Login) -> bool:
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


def release_login(entry: Login) -> None:
    """Leave a login; the last provider to leave logs the process out."""
    with _logins_lock:
        entry.users -= 1
        if entry.users > 0:
            return
        for key, registered in list(_logins.items()):
            if registered is entry:
                del _logins[key]
        close_quietly(entry.holder)


def close_quietly(session: Session | None) -> None:
    """Close ``session`` (if any), ignoring that it or its device is gone already."""
    if session is not None:
        with contextlib.suppress(p11.PKCS11Error):  # the session or device is gone already
            session.close()
