"""Demonstrates two ways to call a backend with the caller's context token.

``AiohttpBackend`` (the edge's default) builds the headers with ``context_headers``:
aiohttp's client costs a fraction of httpx's per request (``bench/propagation.py``).
``HttpxBackend`` uses ``ContextAuth`` and takes any httpx transport, so tests can wire
the edge to an in-process backend. Both send only the allow-listed headers plus a fresh
context token for exactly the scopes of the call, and turn a backend that does not
answer into ``DownstreamUnavailable``.

A connection that carried a 5xx answer is closed, never reused: a server may close it
right after such an answer without saying so (uvicorn does once the application raised,
after its 500 was sent), and the next request sent on it, a different client's perhaps,
would fail as a 502.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from tenancy.errors import DownstreamUnavailable
from tenancy.propagation import ContextAuth, ContextTokenMinter, context_headers


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Backend(Protocol):
    async def forward(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes,
        headers: Mapping[str, str],
        scopes: Collection[str],
    ) -> Answer: ...

    async def aclose(self) -> None: ...


class AiohttpBackend:
    """Calls ``url`` with aiohttp; the session is created on first use (in the loop)."""

    def __init__(
        self, url: str, *, minter: ContextTokenMinter, audience: str, timeout: float = 10.0
    ) -> None:
        self._url = url
        self._minter = minter
        self._audience = audience
        self._timeout = timeout
        self._session: object | None = None

    async def forward(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes,
        headers: Mapping[str, str],
        scopes: Collection[str],
    ) -> Answer:
        import aiohttp

        sent = context_headers(
            self._minter, audience=self._audience, scopes=scopes, headers=list(headers.items())
        )
        if self._session is None:
            self._session = aiohttp.ClientSession(
                self._url,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                response_class=_closing_after_5xx(),
            )
        session = self._session
        assert isinstance(session, aiohttp.ClientSession)
        target = f"{path}?{query}" if query else path
        try:
            # No content type of aiohttp's own: the backend sees the client's, or none.
            async with session.request(
                method, target, data=body, headers=sent, skip_auto_headers=("Content-Type",)
            ) as answer:
                return Answer(answer.status, _lowered(answer.headers.items()), await answer.read())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DownstreamUnavailable(f"{self._audience} did not answer") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            import aiohttp

            assert isinstance(self._session, aiohttp.ClientSession)
            await self._session.close()


class HttpxBackend:
    """Calls ``url`` with httpx and ``ContextAuth`` (any transport, e.g. in-process)."""

    def __init__(
        self,
        url: str,
        *,
        minter: ContextTokenMinter,
        audience: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._client = httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout)
        self._auth = ContextAuth(minter, audience=audience, scopes=())
        self._audience = audience

    async def forward(
        self,
        method: str,
        path: str,
        query: str,
        body: bytes,
        headers: Mapping[str, str],
        scopes: Collection[str],
    ) -> Answer:
        try:
            answer = await self._client.request(
                method,
                path,
                params=query,
                content=body,
                headers=dict(headers),
                auth=self._auth.with_scopes(*scopes),
            )
        except httpx.TransportError as exc:
            raise DownstreamUnavailable(f"{self._audience} did not answer") from exc
        return Answer(answer.status_code, _lowered(answer.headers.items()), answer.content)

    async def aclose(self) -> None:
        await self._client.aclose()


def _closing_after_5xx() -> type[Any]:
    """aiohttp's response class, except that a connection which carried a 5xx is closed.

    aiohttp pools the connection as soon as a short body is complete, inside ``start``,
    before the caller sees the status: so the check is made there.
    """
    import aiohttp

    class ClosingAfter5xx(aiohttp.ClientResponse):
        async def start(self, connection: Any) -> aiohttp.ClientResponse:
            protocol = connection.protocol
            started = await super().start(connection)
            if self.status >= 500 and protocol is not None:
                protocol.force_close()  # still reading the body: closed once it is read
                if self.connection is None:
                    protocol.close()  # already back in the pool: closed there
            return started

    return ClosingAfter5xx


def _lowered(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in items}
