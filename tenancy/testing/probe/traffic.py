"""What goes over the wire: every request the probe sends (counted, with its bearer
token), and the canaries it plants in request bodies and looks for in responses.

Its own module because a canary is the probe's only evidence of whose data a response
holds: the registry that hands them out and the search that finds them belong together,
next to the one place requests are sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import httpx


class Traffic:
    """The probe's requests and canaries, for one run."""

    def __init__(self) -> None:
        self.requests = 0
        self._canaries: dict[str, str] = {}  # canary -> tenant

    def canary(self, tenant: str) -> str:
        """A new canary, registered as ``tenant``'s (``attack``: planted by attacks, never
        anyone's data)."""
        canary = f"tnc{secrets.token_hex(8)}"
        self._canaries[canary] = tenant
        return canary

    def tenants_in(self, text: str) -> set[str]:
        """The tenants whose canaries ``text`` holds."""
        return {
            tenant
            for canary, tenant in self._canaries.items()
            if tenant != "attack" and canary in text
        }

    async def send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> httpx.Response | Exception:
        """Send one request (``token`` as a bearer token, ``body`` as JSON except on GET);
        returns the response, or the transport error instead of raising it."""
        self.requests += 1
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        try:
            return await client.request(
                method,
                path,
                headers=sent,
                params=params or None,
                json=body if method != "GET" else None,
            )
        except httpx.HTTPError as exc:
            return exc
