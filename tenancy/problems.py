"""RFC 9457 problem responses: the one table from library errors to HTTP.

Library code raises ``TenancyError`` subclasses and knows nothing of HTTP; this module
alone decides status codes. Bodies carry a stable ``type`` and ``code``, and a ``detail``
only for errors whose message is safe to show (never for token failures, whose reason
would help an attacker, and never anything that tells whether another tenant's object
exists).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from tenancy import errors

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:tenancy:problem:"
DATABASE_RETRY_AFTER = 1  # seconds: a lost connection is usually back by then


@dataclass(frozen=True, slots=True)
class ProblemSpec:
    """How one error class is answered over HTTP: its status, a fixed title, and whether the
    exception's message may be shown as ``detail`` (off unless the message is known to be
    safe for the client)."""

    status: int
    title: str
    show_detail: bool = False


# Looked up along the exception's MRO, so the most specific entry wins.
PROBLEMS: dict[type[errors.TenancyError], ProblemSpec] = {
    errors.MissingCredentials: ProblemSpec(401, "Authentication required"),
    errors.InvalidToken: ProblemSpec(401, "Invalid credentials"),
    errors.AuthenticationError: ProblemSpec(401, "Authentication failed"),
    errors.KeySourceUnavailable: ProblemSpec(503, "Identity keys unavailable"),
    errors.AccessDenied: ProblemSpec(403, "Forbidden"),
    errors.DecisionUnavailable: ProblemSpec(503, "Authorization decision unavailable"),
    errors.ConsentRefused: ProblemSpec(403, "Consent refused", show_detail=True),
    errors.NoActiveGrant: ProblemSpec(403, "No active support grant"),
    errors.ExportLinkExpired: ProblemSpec(410, "Export link expired"),
    errors.ExportGone: ProblemSpec(410, "Export deleted"),
    errors.KeyDestroyed: ProblemSpec(410, "Data destroyed"),
    errors.KeyUnavailable: ProblemSpec(503, "Tenant key unavailable"),
    errors.DatabaseUnavailable: ProblemSpec(503, "Database unavailable"),
    errors.InternalError: ProblemSpec(500, "Internal error"),
    errors.DecryptionFailed: ProblemSpec(500, "Stored data failed its integrity check"),
    errors.UnsealedWrite: ProblemSpec(500, "Server misconfigured"),
    errors.DownstreamUnavailable: ProblemSpec(502, "Downstream service unavailable"),
    errors.TenantSuspended: ProblemSpec(403, "Tenant suspended"),
    errors.TenantOffboarded: ProblemSpec(403, "Tenant offboarded"),
    errors.WrongRegion: ProblemSpec(403, "Tenant is served in another region"),
    errors.InsufficientScope: ProblemSpec(403, "Insufficient scope", show_detail=True),
    errors.UnknownTenant: ProblemSpec(404, "Not found"),
    errors.NotFound: ProblemSpec(404, "Not found"),
    errors.PayloadTooLarge: ProblemSpec(413, "Payload too large", show_detail=True),
    errors.UnsupportedMediaType: ProblemSpec(415, "Unsupported media type", show_detail=True),
    errors.InvalidRequest: ProblemSpec(422, "Invalid request", show_detail=True),
    errors.InvalidTenantField: ProblemSpec(422, "Invalid tenant field", show_detail=True),
    errors.DuplicateSlug: ProblemSpec(409, "Slug already taken", show_detail=True),
    errors.InvalidTransition: ProblemSpec(409, "Invalid lifecycle change", show_detail=True),
    errors.NoTenantContext: ProblemSpec(500, "Tenant context missing"),
    errors.TenantContextConflict: ProblemSpec(500, "Tenant context conflict"),
    errors.LayerMismatch: ProblemSpec(500, "Tenant layers disagree"),
    errors.ConfigurationError: ProblemSpec(500, "Server misconfigured"),
    errors.TenancyError: ProblemSpec(500, "Internal error"),
}


def spec_for(exc: errors.TenancyError) -> ProblemSpec:
    """The ``ProblemSpec`` of the most specific class of ``exc`` listed in ``PROBLEMS`` (500
    "Internal error" for any ``TenancyError`` not listed more specifically)."""
    for cls in type(exc).__mro__:
        spec = PROBLEMS.get(cls)
        if spec is not None:
            return spec
    return PROBLEMS[errors.TenancyError]


def problem_body(exc: errors.TenancyError, *, instance: str | None = None) -> dict[str, Any]:
    """The RFC 9457 body for ``exc``: ``type``, ``title``, ``status`` and the stable
    ``code``; ``detail`` only where ``show_detail`` allows it (never for token failures or
    anything that could reveal another tenant's data), field ``errors`` for
    ``InvalidRequest``, and ``instance`` if given."""
    spec = spec_for(exc)
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + exc.code,
        "title": spec.title,
        "status": spec.status,
        "code": exc.code,
    }
    if spec.show_detail and str(exc):
        body["detail"] = str(exc)
    if isinstance(exc, errors.InvalidRequest) and exc.errors:
        body["errors"] = exc.errors
    if instance:
        body["instance"] = instance
    return body


def problem_response(
    exc: errors.TenancyError,
    *,
    instance: str | None = None,
    realm: str = "tenancy",
    headers: dict[str, str] | None = None,
) -> Response:
    """The problem+json response for ``exc``; 401s carry ``WWW-Authenticate`` (RFC 6750)."""
    body = problem_body(exc, instance=instance)
    extra = dict(headers or {})
    if isinstance(exc, errors.DatabaseUnavailable):
        extra.setdefault("Retry-After", str(DATABASE_RETRY_AFTER))
    if body["status"] == 401:
        challenge = f'Bearer realm="{realm}"'
        if isinstance(exc, errors.InvalidToken):
            challenge += ', error="invalid_token"'
        extra["WWW-Authenticate"] = challenge
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=body["status"],
        media_type=PROBLEM_MEDIA_TYPE,
        headers=extra,
    )


async def _tenancy_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.TenancyError)
    return problem_response(exc, instance=request.url.path)


async def _http_exception_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    body = {"type": "about:blank", "title": exc.detail, "status": exc.status_code}
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=exc.status_code,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=exc.headers,
    )


def exception_handlers() -> dict[Any, Any]:
    """Starlette ``exception_handlers=`` that render library and routing errors as
    problem+json."""
    return {
        errors.TenancyError: _tenancy_error_handler,
        HTTPException: _http_exception_handler,
    }
