"""OPA as a server: decisions over its REST Data API through ``opa-python-client``.

Only fixed, configured paths are ever queried: the request's facts travel in the JSON
``input``, never in the URL (a request-derived path segment would let a caller choose
which rule answers: Rego injection, CVE-2025-46569). OPA answers an undefined decision
with 200 and no ``result``; that, any HTTP error, a timeout, or a malformed result is
``DecisionUnavailable``, which the middleware turns into a 503 and never into an allow.

The client comes with the ``opa`` extra (``pip install 'tenancy[opa]'``): it pulls in
aiohttp, which the library does not otherwise need. Without it, :class:`OPAServer`
refuses to construct (``ConfigurationError``); the embedded engine needs nothing more.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from tenancy.authz.bundle import PolicyBundle
from tenancy.authz.decision import Decision, decision_from
from tenancy.errors import ConfigurationError, DecisionUnavailable

DECISION_PACKAGE = "tenancy/authz"
DECISION_RULE = "decision"
_PATH_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class OPAServer:
    """A :class:`PolicyDecisionPoint` that asks an OPA server.

    Args:
        url: OPA's base URL, e.g. ``http://127.0.0.1:8181``.
        bundle: if given, its policies and data are pushed at construction and its data
            again on every change (``bundle.set``), so revisions match.
        bundle_name: instead of ``bundle``, when OPA loads a bundle itself (a ``bundles:``
            entry in OPA's configuration, e.g. one ``tenancy authz bundle build`` wrote):
            nothing is pushed; every decision asks OPA for its provenance and records the
            revision of that bundle; a decision made before OPA activated it is refused,
            and a new revision moves ``revision``, so no decision cached under the old one
            is served again.
        timeout: seconds for each HTTP call; the session keeps connections alive.
        retries: retries of the policy and data pushes on connection errors and
            500/502/504. Decisions are never retried: a failed one is refused at once.

    Raises:
        ConfigurationError: a malformed URL, decision path or timeout; the policies
            cannot be pushed; or opa-python-client is not installed (the ``opa`` extra).
    """

    name = "opa-server"

    def __init__(
        self,
        url: str,
        *,
        bundle: PolicyBundle | None = None,
        timeout: float = 1.0,
        retries: int = 0,
        token: str | None = None,
        revision: int = 1,
        bundle_name: str | None = None,
        package: str = DECISION_PACKAGE,
        rule: str = DECISION_RULE,
    ) -> None:
        try:
            from opa_client.opa import OpaClient
        except ImportError as exc:  # the client (and its aiohttp) is an extra, not core
            raise ConfigurationError(
                "an OPA server needs opa-python-client: pip install 'tenancy[opa]'"
            ) from exc

        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"OPA url has an invalid port: {url!r}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"OPA url must be http(s)://host[:port], got {url!r}")
        for segment in [*package.split("/"), rule]:
            if not _PATH_SEGMENT.fullmatch(segment):
                raise ConfigurationError(f"decision path segment {segment!r} is not an identifier")
        if not 0 < timeout <= 30:
            raise ConfigurationError("timeout must be between 0 and 30 seconds")
        if bundle is not None and bundle_name is not None:
            raise ConfigurationError(
                "OPAServer takes a bundle to push or the name of one OPA loads, not both"
            )
        if bundle_name is not None and not bundle_name:
            raise ConfigurationError("bundle_name is empty")
        self._bundle_name = bundle_name
        self._bundle_revision: str | None = None
        self._client = OpaClient(
            host=parts.hostname,
            port=port or (443 if parts.scheme == "https" else 80),
            ssl=parts.scheme == "https",
            timeout=timeout,
            retries=retries,
            token=token,
        )
        self._package = package
        self._rule = rule
        self._revision = revision
        self._push_lock = threading.Lock()
        if bundle is not None:
            self._revision = 0
            self._bundle_revision = bundle.bundle_revision
            try:
                self.push(bundle)
            except ConfigurationError:
                self.close()
                raise
            bundle.subscribe(self._push_data)

    @property
    def revision(self) -> int:
        """The data revision OPA holds (decisions record it)."""
        return self._revision

    def push(self, bundle: PolicyBundle) -> None:
        """Upload every module and the data document (PUT /v1/policies, /v1/data)."""
        try:
            for name, source in bundle.modules.items():
                self._client.update_policy_from_string(source, _policy_id(name))
        except Exception as exc:
            raise ConfigurationError(f"cannot push policies to OPA: {exc}") from exc
        try:
            self._push_data(bundle)
        except DecisionUnavailable as exc:
            raise ConfigurationError(str(exc)) from exc

    def _push_data(self, bundle: PolicyBundle) -> None:
        """PUT the data document; changes may race, so pushes are serialised and one
        older than what OPA already holds is skipped (a revoked role must stay revoked).
        Top-level keys removed from the bundle are not deleted in OPA."""
        revision, data = bundle.snapshot()
        with self._push_lock:
            if revision <= self._revision:
                return
            try:
                for key, value in data.items():
                    self._client.update_or_create_data(value, key)
            except Exception as exc:
                raise DecisionUnavailable(f"cannot push policy data to OPA: {exc}") from exc
            self._revision = revision

    def decide(self, input: Mapping[str, Any]) -> Decision:
        """Ask the OPA server; any failure or undefined result is ``DecisionUnavailable``."""
        revision = self._revision
        query = {"provenance": True} if self._bundle_name is not None else None
        try:
            answer = self._client.query_rule(
                dict(input), self._package, self._rule, query_params=query
            )
        except requests.Timeout as exc:
            raise DecisionUnavailable("opa timed out") from exc
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise DecisionUnavailable(f"opa answered HTTP {status}") from exc
        except (requests.RequestException, OSError, ValueError) as exc:
            raise DecisionUnavailable(f"opa unreachable: {type(exc).__name__}") from exc
        if not isinstance(answer, dict):
            raise DecisionUnavailable("opa answered something other than an object")
        bundle = self._bundle_revision
        if self._bundle_name is not None:
            revision, bundle = self._observe(answer)
        # No "result" member: the decision is undefined (OPA's 200 for a missing rule).
        return decision_from(
            answer.get("result"), revision=revision, engine=self.name, bundle=bundle
        )

    def _observe(self, answer: Mapping[str, Any]) -> tuple[int, str]:
        """The revision of the named bundle the answer was made under (from its
        provenance); a new one moves ``revision``.

        Raises:
            DecisionUnavailable: OPA has not activated the bundle (no revision for it).
        """
        provenance = answer.get("provenance")
        bundles = provenance.get("bundles") if isinstance(provenance, dict) else None
        entry = bundles.get(self._bundle_name) if isinstance(bundles, dict) else None
        seen = entry.get("revision") if isinstance(entry, dict) else None
        if not isinstance(seen, str) or not seen:
            raise DecisionUnavailable(f"opa has not activated bundle {self._bundle_name!r}")
        with self._push_lock:
            if seen != self._bundle_revision:
                self._bundle_revision = seen
                self._revision += 1
            return self._revision, seen

    def close(self) -> None:
        """Close the HTTP connection to the OPA server."""
        self._client.close_connection()


def _policy_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", name.removesuffix(".rego"))
