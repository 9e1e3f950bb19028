"""Key state across hosts: changes announced over Redis, generations kept in each process.

Replicas on several hosts cannot map one counter file (``SharedKeyState``), so
:class:`RedisKeyState` announces each change on a Redis channel, and a daemon thread in
every process listens and moves the tenant's generation on. ``generation()`` runs on
every encrypt and decrypt, so it is one dict lookup and never touches the network.

**How a change travels.** ``changed(tenant)`` (``announce``, which also returns the
count of subscribers reached) runs one Lua script, atomically::

    INCR    <prefix>:<tenant>                      -> n
    PUBLISH <prefix>        "<tenant>:<n>"         -> subscribers reached

Each listener gives the tenant a new local generation and acknowledges with ``PUBLISH
<prefix>:ack "<tenant>:<n>"``. Generations are never compared between processes: each
process draws its own from one strictly increasing sequence, so a number once handed out
never comes back, not after a reconnect, not after Redis lost its data (it keeps nothing
on disk here). The counter ``n`` only orders a tenant's changes and matches the acks.

**Fail closed.** The listener is *healthy* from Redis's confirmation of its ``SUBSCRIBE``
for as long as it hears from Redis (it sends ``PING`` on the subscription every
``heartbeat``; nothing heard for two heartbeats means the connection is dead). At every
other moment (before the confirmation, disconnected, reconnecting, after ``close()``)
``generation()`` returns a new number on *every call*: each use is a cache miss that
re-reads the database and unwraps through the provider, slower but never stale. When the
listener is healthy again every tenant starts at a new number, because the changes made
during the gap were not heard: nothing cached before it is used again. A message that
does not parse does the same for this process. Reconnection backs off from 0.1 s to
2 s, with jitter, so that replicas do not all return to a restarted Redis at once.

**When** ``changed()`` **returns** (the bound ``KeyStateSignal`` promises):

- With ``ack_timeout`` (default 1 s): once every subscriber that ``PUBLISH`` reached
  has acknowledged, so the next use in each of them misses. One that does not answer in
  time (a process paused or starved, a subscriber that is no ``RedisKeyState``) is
  counted in a warning, never raised: the change is made. ``announce()`` is
  ``changed()`` that returns how many ``PUBLISH`` reached.
- Without (``ack_timeout=None``): once Redis has queued the message to every
  subscriber; each listener applies it within its thread's scheduling latency, which
  ``bench/keys.py`` measures between two processes: about 0.5 ms (p99 ~2 ms) when the
  other process is mostly idle, 1-6 ms (p99 ~15 ms) when it is busy, because its
  listener then waits for the GIL (the 5 ms switch interval, at each read). With acks a
  change took about 1 ms here (p99 ~6 ms).
- This process sees its own change at once, whatever its listener is doing.
- A process that is not subscribed at that moment is failing closed already.
- A process whose connection died *silently* (a partition that no reset crossed) is the
  exception: it may use keys cached before the change until it notices, at most two
  heartbeats after it last heard from Redis (0.5 s by default), or until the cache TTL,
  whichever comes first. Redis may not have noticed either and count it as reached:
  then its ack is missing from the warning's count.

**Failure modes.** Redis unreachable, or no subscription confirmed within
``connect_timeout``, at construction: ``ConfigurationError``. Redis lost later: every
process fails closed until it returns (its key provider takes every use meanwhile).
``changed()`` unable to reach Redis after redis-py's retries: ``KeyManagementError``;
the change itself is already committed, so other processes keep their cached keys until
their TTL unless the announcement is repeated. Each listener's Redis client name is
``<prefix>:listener:<host>:<pid>``, so ``CLIENT LIST TYPE pubsub`` shows who listens.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import socket
import threading
import time

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.client import PubSub
from redis.exceptions import RedisError
from redis.retry import Retry

from tenancy.errors import ConfigurationError, KeyManagementError

logger = logging.getLogger("tenancy.keys")

_ANNOUNCE = """
local value = redis.call('INCR', KEYS[1])
return {value, redis.call('PUBLISH', ARGV[1], ARGV[2] .. ':' .. value)}
"""
_PING = "tenancy-keystate"


class _Silent(Exception):
    """Redis did not answer in time, or said something a subscription never says."""


class RedisKeyState:
    """Key-state generations for replicas on several hosts, kept current over Redis.

    Args:
        url: the Redis server (``redis://``, ``rediss://`` or ``unix://``); every
            process that uses or changes the same tenants' keys names the same server.
        prefix: namespaces the counters (``<prefix>:<tenant>``) and the channels
            (``<prefix>``, ``<prefix>:ack``); processes with another prefix hear nothing.
        heartbeat: seconds between PINGs on the subscription; two without an answer and
            the process fails closed (the bound for a connection that died silently).
        ack_timeout: how long ``changed()`` waits for the reached subscribers to
            acknowledge (None: it does not wait).
        connect_timeout: for connecting, and for the first subscription.

    Raises:
        ConfigurationError: bad settings, Redis unreachable, or no subscription.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tenancy:keystate",
        heartbeat: float = 0.25,
        ack_timeout: float | None = 1.0,
        connect_timeout: float = 2.0,
    ) -> None:
        if not prefix or any(c.isspace() for c in prefix):
            raise ConfigurationError("the key-state prefix must be non-empty, without spaces")
        if heartbeat <= 0 or connect_timeout <= 0 or (ack_timeout is not None and ack_timeout <= 0):
            raise ConfigurationError("heartbeat, ack_timeout and connect_timeout are positive")
        self.prefix = prefix
        self._ack_channel = f"{prefix}:ack"
        self._heartbeat = heartbeat
        self._ack_timeout = ack_timeout
        self._connect_timeout = connect_timeout
        self._url = url
        # Its Redis client name: CLIENT LIST shows which process listens, from where.
        self.listener_name = f"{prefix}:listener:{socket.gethostname()}:{os.getpid()}"
        # Every generation this process hands out comes from here, so none repeats.
        self._sequence = itertools.count(1)
        self._floor = 0
        self._view: dict[str, int] | None = None  # None: not healthy, fail closed
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._failures = 0
        try:
            self._client = redis.Redis.from_url(
                url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=connect_timeout,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
            )
        except ValueError as exc:
            raise ConfigurationError("not a Redis URL") from exc
        self._where = _where(self._client)
        try:
            self._client.ping()
        except (RedisError, OSError) as exc:
            raise ConfigurationError(
                f"Redis is not reachable at {self._where} ({type(exc).__name__})"
            ) from exc
        self._announce = self._client.register_script(_ANNOUNCE)
        self._thread = threading.Thread(
            target=self._listen_forever, daemon=True, name=f"{prefix}:listener"
        )
        self._thread.start()
        if not self._subscribed.wait(connect_timeout):
            self.close()
            raise ConfigurationError(
                f"no key-state subscription confirmed by Redis at "
                f"{self._where} within {connect_timeout:g} s"
            )

    # -- the hot path ---------------------------------------------------------------

    def generation(self, tenant_id: str) -> int:
        """The tenant's generation in this process: a dict lookup while healthy, else a
        number never handed out before (every use a miss)."""
        view = self._view
        if view is None:
            return next(self._sequence)  # never handed out before: a miss, every time
        return view.get(tenant_id, self._floor)

    @property
    def healthy(self) -> bool:
        """Subscribed and heard from lately: cached keys may be used (a readiness probe)."""
        return self._view is not None

    # -- changes ----------------------------------------------------------------------

    def changed(self, tenant_id: str) -> None:
        """``KeyStateSignal.changed``: :meth:`announce`, without the count."""
        self.announce(tenant_id)

    def announce(self, tenant_id: str) -> int:
        """Announce a change to every process; returns how many subscribers PUBLISH
        reached (with ``ack_timeout``: once they acknowledged, or the timeout passed).

        Raises:
            KeyManagementError: Redis did not take the announcement (after retries).
        """
        waiter = self._ack_listener() if self._ack_timeout is not None else None
        try:
            try:
                value, reached = self._announce(
                    keys=[f"{self.prefix}:{tenant_id}"], args=[self.prefix, tenant_id]
                )
            except RedisError as exc:
                raise KeyManagementError(
                    "the key change is made but could not be announced: other processes "
                    "keep their cached keys until the TTL; announce it again"
                ) from exc
            view = self._view
            if view is not None:
                view[tenant_id] = next(self._sequence)
            if waiter is not None and self._ack_timeout is not None:
                self._await_acks(waiter, f"{tenant_id}:{value}", int(reached), self._ack_timeout)
        finally:
            if waiter is not None:
                waiter.close()
        return int(reached)

    def _ack_listener(self) -> PubSub | None:
        """Listen for acks before announcing, or an early ack would be missed."""
        waiter = self._client.pubsub()
        try:
            waiter.subscribe(self._ack_channel)
            _await_confirmation(waiter, self._connect_timeout)
        except (RedisError, _Silent) as exc:
            waiter.close()
            logger.warning("key-state change announced without waiting for acks (%s)", exc)
            return None
        return waiter

    def _await_acks(self, waiter: PubSub, payload: str, reached: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        acked, expected = 0, payload.encode()
        try:
            while acked < reached and (left := deadline - time.monotonic()) > 0:
                message = waiter.get_message(timeout=left)
                if (
                    message is not None
                    and message["type"] == "message"
                    and message["data"] == expected
                ):
                    acked += 1
        except RedisError as exc:
            logger.warning("key-state acks lost (%s)", type(exc).__name__)
        if acked < reached:
            logger.warning(
                "key-state change %s: %d of %d subscribers did not acknowledge within %g s",
                payload,
                reached - acked,
                reached,
                timeout,
            )

    # -- the listener ---------------------------------------------------------------

    def _listen_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # any failure: fail closed, then reconnect
                self._fail_closed()
                self._failures += 1
                if not self._stop.is_set():
                    logger.warning(
                        "key-state subscription to %s lost (%s): failing closed until it is back",
                        self._where,
                        type(exc).__name__,
                    )
                self._stop.wait(_reconnect_delay(self._failures))
        self._fail_closed()

    def _listen(self) -> None:
        # redis-py must not reconnect behind our back (messages sent meanwhile would be
        # lost unnoticed), nor even try before raising (with zero retries it still
        # reconnects first, while this process looks healthy): no error is "supported",
        # so every failure reaches _listen_forever at once.
        client = redis.Redis.from_url(
            self._url,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._connect_timeout,
            retry=Retry(NoBackoff(), 0, supported_errors=()),
            client_name=self.listener_name,
        )
        # Acks go out on their own connection, bounded by a heartbeat, so that a slow ack
        # cannot hold the listener past the bound its heartbeats keep.
        acker = redis.Redis.from_url(
            self._url,
            socket_connect_timeout=self._heartbeat,
            socket_timeout=self._heartbeat,
            retry=Retry(NoBackoff(), 0, supported_errors=()),
        )
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(self.prefix)
            _await_confirmation(pubsub, self._connect_timeout)
            self._floor = next(self._sequence)  # before the view: see generation()
            self._view = {}
            self._failures = 0
            self._subscribed.set()
            heard = next_ping = time.monotonic()
            while not self._stop.is_set():
                now = time.monotonic()
                if now - heard > 2 * self._heartbeat:
                    raise _Silent("no answer to two heartbeats")
                if now >= next_ping:
                    pubsub.ping(_PING)
                    next_ping = now + self._heartbeat
                message = pubsub.get_message(timeout=max(0.0, next_ping - now))
                if message is None:
                    continue
                heard = time.monotonic()
                if message["type"] == "message":
                    self._apply(message["data"], acker)
                elif message["type"] != "pong":
                    raise _Silent(f"unexpected {message['type']!r} on the subscription")
        finally:
            self._fail_closed()
            pubsub.close()
            client.close()
            acker.close()

    def _apply(self, data: bytes, acker: redis.Redis) -> None:
        tenant_id, sep, value = data.decode("utf-8", "replace").rpartition(":")
        view = self._view
        if view is None:  # closing
            return
        if not sep or not value.isdigit():
            # Unreadable: whatever changed, nothing cached before it is used again.
            self._floor = next(self._sequence)
            self._view = {}
            return
        view[tenant_id] = next(self._sequence)
        acker.publish(self._ack_channel, f"{tenant_id}:{value}")

    def _fail_closed(self) -> None:
        self._view = None

    # -- life -------------------------------------------------------------------------

    def close(self) -> None:
        """Stop listening; from now on every use is a miss. Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2 * self._heartbeat + self._connect_timeout)
        self._fail_closed()
        self._client.close()

    def __enter__(self) -> RedisKeyState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # The URL may carry a password: only where it points is shown.
        return f"RedisKeyState({self._where!r}, prefix={self.prefix!r})"


def _await_confirmation(pubsub: PubSub, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        message = pubsub.get_message(timeout=left)
        if message is not None and message["type"] == "subscribe":
            return
    raise _Silent("no subscription confirmed")


def _where(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


# Reconnect jitter draws from its own generator: the module-level one belongs to the
# application (a listener thread must not move a seeded or test-controlled global state).
_jitter = random.Random()  # noqa: S311 (timing jitter, not a secret)


def _reconnect_delay(failures: int, *, base: float = 0.1, cap: float = 2.0) -> float:
    """Equal-jitter exponential backoff: half the capped delay fixed, half drawn."""
    delay = min(cap, base * 2.0 ** min(failures, 16))
    return delay / 2 + _jitter.uniform(0, delay / 2)
