"""Tenant context on queue messages: inject on publish, verify and bind on consume.

The publisher mints a context token bound to the message body (``bdy``: its SHA-256)
and puts it in one header, ``tenancy-context``. The consumer verifies it exactly like an
HTTP context token (trusted publisher, audience = the consumer, lifetime, scopes),
checks the body digest, resolves the tenant in the registry (status, region) and only
then runs the callback inside that context. A message whose header is missing,
tampered, expired or moved to another body is refused and its callback never runs.

Brokers deliver at least once, so a redelivered message repeats its token: build the
consumer's verifier with ``check_replay=False`` and make handlers idempotent; the body
binding still stops a token from being lifted onto another message.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, MutableMapping
from typing import Any, TypeVar

from tenancy.authn import build_context
from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import TenantContext, run_in_context
from tenancy.errors import InvalidToken, TenancyError, UnknownTenant
from tenancy.events import EventSink, LoggingSink, SecurityEvent
from tenancy.headers import names_tenant
from tenancy.propagation.tokens import ContextTokenMinter
from tenancy.propagation.verify import ContextTokenVerifier
from tenancy.tenants.model import validate_region
from tenancy.tenants.registry import TenantRegistry

CONTEXT_HEADER = "tenancy-context"
DEFAULT_MESSAGE_TTL = 900
T = TypeVar("T")


def inject(
    headers: MutableMapping[str, Any],
    *,
    minter: ContextTokenMinter,
    audience: str,
    body: bytes,
    scopes: Collection[str],
    ttl: int = DEFAULT_MESSAGE_TTL,
) -> None:
    """Put the bound context, bound to ``body``, into ``headers`` for ``audience``.

    Headers that name a tenant are removed: only the signed token speaks for it.

    Raises:
        NoTenantContext: nothing is bound; nothing is added.
        InsufficientScope: the caller lacks one of ``scopes``.
    """
    token = minter.mint(audience=audience, scopes=scopes, ttl=ttl, body=body)
    for name in [n for n in headers if n != CONTEXT_HEADER and names_tenant(n.encode())]:
        del headers[name]
    headers[CONTEXT_HEADER] = token


class MessageConsumer:
    """Verifies a message's context and runs its handler inside it.

    Args:
        verifier: a :class:`ContextTokenVerifier` whose audience is this consumer.
        tenants: the registry the tenant is resolved in (suspended tenants are refused).
        region: this consumer's region; messages of tenants homed elsewhere are refused.
    """

    def __init__(
        self,
        *,
        verifier: ContextTokenVerifier,
        tenants: TenantRegistry,
        region: str,
        events: EventSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._verifier = verifier
        self._tenants = tenants
        self._region = validate_region(region)
        self._events = events if events is not None else LoggingSink()
        self._clock = clock

    def context_for(self, headers: Mapping[str, Any], body: bytes) -> TenantContext:
        """The verified context of a message.

        Raises:
            InvalidToken: header missing, malformed, tampered, expired, for another
                consumer, from an untrusted publisher, or bound to another body.
            TenantSuspended, TenantOffboarded, WrongRegion: the tenant may not be served.
        """
        try:
            token = headers.get(CONTEXT_HEADER)
            if isinstance(token, bytes):
                token = token.decode("ascii", "replace")
            if not isinstance(token, str) or not token:
                raise InvalidToken("message has no context header")
            verified = self._verifier.verify(token, body=body)
            try:
                tenant = self._tenants.get(verified.principal.tenant_id)
            except UnknownTenant as exc:
                raise InvalidToken("message names an unknown tenant") from exc
            return build_context(
                verified, tenant, region=self._region, request_id=verified.request_id
            )
        except TenancyError as exc:
            self._events.emit(
                SecurityEvent(
                    action="message.refused",
                    at=self._clock.now(),
                    reason=exc.reason,
                    details={"code": exc.code},
                )
            )
            raise

    def consume(self, headers: Mapping[str, Any], body: bytes, handler: Callable[[bytes], T]) -> T:
        """Run ``handler(body)`` inside the message's verified context.

        Raises whatever :meth:`context_for` raises, before ``handler`` runs.
        """
        ctx = self.context_for(headers, body)
        return run_in_context(ctx, handler, body)
