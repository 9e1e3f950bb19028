"""A replay guard shared by every replica through Redis (``pip install tenancy[redis]``).

One command per token, atomic on the server::

    SET <prefix>:<jti> 1 NX EXAT <ceil(expires_at)>   -> OK: first use; nil: a replay

Redis forgets the id when the token could no longer verify anyway, so nothing needs
pruning. Expiry follows the Redis server's clock: keep it in sync with the replicas'
(a server clock ahead of theirs would forget an id early).

**Fail closed.** Any error (unreachable, timeout, refused write, a bug) refuses the token:
it is logged on ``tenancy.propagation`` and emitted as ``replay_guard.unavailable`` when
an event sink is given. A reply lost after Redis recorded the id also refuses it, and so
does redis-py retrying that ``SET`` (the retry answers nil): a refused legitimate call,
never an accepted replay.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from tenancy.clock import SYSTEM_CLOCK
from tenancy.errors import ConfigurationError
from tenancy.events import EventSink, SecurityEvent

if TYPE_CHECKING:
    import redis

logger = logging.getLogger("tenancy.propagation")


class RedisReplayGuard:
    """Seen context-token ids in Redis, shared by every replica that names the same server.

    Args:
        client: a ``redis.Redis`` client (its timeouts and retries are used as they are;
            the caller closes it), or a ``redis://``/``rediss://``/``unix://`` URL (a
            client with ``timeout`` is built, and :meth:`close` closes it).
        prefix: namespaces the keys (``<prefix>:<jti>``); replicas that must refuse each
            other's replays use the same one.
        timeout: for a client built from a URL: connecting and each answer, seconds. A
            token waits at most this long (twice, with the one retry) before it is refused.
        events: where a failure to record is emitted (it is always logged).

    Raises:
        ConfigurationError: redis-py is not installed, or the URL or prefix is unusable.
    """

    def __init__(
        self,
        client: redis.Redis | str,
        *,
        prefix: str = "tenancy:jti",
        timeout: float = 0.5,
        events: EventSink | None = None,
    ) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ConfigurationError("the replay-guard prefix must be non-empty, without spaces")
        if timeout <= 0:
            raise ConfigurationError("timeout must be positive")
        self.prefix = prefix
        self._events = events
        self._owned = isinstance(client, str)
        self._client = _client_from(client, timeout) if isinstance(client, str) else client

    def first_use(self, jti: str, *, expires_at: float, now: float) -> bool:
        """Record ``jti`` until ``expires_at`` and return True, or return False when Redis
        already holds it (a replay, on this replica or any other) or cannot record it."""
        try:
            first = self._client.set(f"{self.prefix}:{jti}", 1, nx=True, exat=math.ceil(expires_at))
        except Exception as exc:  # any failure to record refuses the token
            self._unavailable(exc)
            return False
        return first is True

    def _unavailable(self, exc: Exception) -> None:
        reason = type(exc).__name__
        logger.warning("replay guard: Redis did not record a token id (%s): refused", reason)
        if self._events is not None:
            self._events.emit(
                SecurityEvent(
                    action="replay_guard.unavailable",
                    at=SYSTEM_CLOCK.now(),
                    reason=reason,
                    details={"store": "redis"},
                )
            )

    def close(self) -> None:
        """Close the client if this guard built it from a URL (a given client is the
        caller's). Idempotent."""
        if self._owned:
            self._client.close()

    def __enter__(self) -> RedisReplayGuard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # A URL may carry a password: only the prefix is shown.
        return f"RedisReplayGuard(prefix={self.prefix!r})"


def _client_from(url: str, timeout: float) -> redis.Redis:
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # the optional extra
        raise ConfigurationError(
            "RedisReplayGuard needs redis-py: pip install 'tenancy[redis]'"
        ) from exc
    try:
        # One retry: a connection dropped while idle is reopened, at most 2 x timeout.
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
    except ValueError as exc:
        raise ConfigurationError("not a Redis URL") from exc
