"""FastAPI dependencies over the context :class:`~tenancy.middleware.TenancyMiddleware` binds.

The middleware stays the one place a tenant is established: it verifies the token,
resolves the tenant and binds a :class:`~tenancy.context.TenantContext` for the request.
These dependencies only *read* that binding, so FastAPI's dependency injection, its
OpenAPI document and its handlers see the same verified tenant as every other layer, and
a route that runs without the middleware is refused (``NoTenantContext``, a 500 problem),
never served for a tenant guessed from the request::

    app = FastAPI()
    install(app)                                  # problem+json for every error
    app.add_middleware(TenancyMiddleware, verifier=..., tenants=..., region=...,
                       authorizer=authorizer, routes=app.routes)
    Sessions = async_sessionmaker(engine, class_=AsyncTenantSession,
                                  info={"tenancy_keys": keys})

    @app.delete("/notes/{note_id}", status_code=204)
    async def delete_note(
        note_id: str,
        session: Annotated[AsyncTenantSession, Depends(tenant_session(Sessions))],
        _: Annotated[TenantContext, Security(require_scopes, scopes=["notes:write"])],
        __: Annotated[Decision, Depends(authorize("notes.delete", resource=note))],
    ) -> None: ...

Importing :mod:`tenancy` never imports FastAPI; this module needs the ``fastapi`` extra.
"""

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from tenancy import authz
from tenancy.authz import Decision, Resource
from tenancy.context import TenantContext, current_or_none
from tenancy.errors import (
    ConfigurationError,
    InternalError,
    InvalidRequest,
    NoTenantContext,
    TenantContextConflict,
)
from tenancy.problems import exception_handlers, problem_response
from tenancy.scoping import AsyncTenantSession

__all__ = [
    "TenancyBearer",
    "authorize",
    "bearer",
    "install",
    "require_scopes",
    "tenant_context",
    "tenant_session",
]

ResourceDependency = Callable[..., Resource | Awaitable[Resource]]


def bound_context(connection: HTTPConnection) -> TenantContext:
    """The context the middleware bound for this connection.

    Both the ASGI scope and the context variable must hold it, and the same one: a
    context bound by other code (no middleware in front) is not a verified one.

    Raises:
        NoTenantContext: the middleware did not admit this request (a public path, or
            no ``TenancyMiddleware`` in front of the app).
        TenantContextConflict: the bound context is not the one the middleware set.
    """
    admitted = connection.scope.get("tenancy")  # where the middleware put it
    if not isinstance(admitted, TenantContext):
        admitted = None
    bound = current_or_none()
    if admitted is None or bound is None:
        raise NoTenantContext("no tenant context: TenancyMiddleware did not admit this request")
    if bound != admitted:
        raise TenantContextConflict("the bound context is not the middleware's")
    return admitted


class TenancyBearer(SecurityBase):
    """The bearer token :class:`~tenancy.middleware.TenancyMiddleware` verifies, declared
    for OpenAPI (an HTTP ``bearer`` scheme, JWT) so every operation lists it with the
    scopes it needs. It reads no header itself: calling it returns the context the
    middleware bound, or refuses."""

    def __init__(
        self,
        *,
        scheme_name: str = "tenancy",
        description: str = "An access token verified by TenancyMiddleware.",
    ) -> None:
        self.model = HTTPBearerModel(bearerFormat="JWT", description=description)
        self.scheme_name = scheme_name

    async def __call__(self, connection: HTTPConnection) -> TenantContext:
        """The middleware's context for this request.

        Raises:
            NoTenantContext: the middleware did not admit this request.
        """
        return bound_context(connection)


bearer = TenancyBearer()
"""The scheme every dependency here declares (``tenancy`` in the OpenAPI document)."""


async def tenant_context(
    ctx: Annotated[TenantContext, Security(bearer)],
) -> TenantContext:
    """``Depends(tenant_context)``: the request's verified context; the operation is
    documented as needing the bearer token.

    Raises:
        NoTenantContext: the middleware did not admit this request (500 problem).
    """
    return ctx


async def require_scopes(
    security_scopes: SecurityScopes,
    ctx: Annotated[TenantContext, Security(bearer)],
) -> TenantContext:
    """``Security(require_scopes, scopes=[...])``: the context, if its principal holds
    every scope; OpenAPI lists those scopes under the operation's ``tenancy`` requirement.

    Raises:
        NoTenantContext: the middleware did not admit this request.
        InsufficientScope: a scope is missing (403 problem naming it).
    """
    for scope in security_scopes.scopes:
        ctx.require_scope(scope)
    return ctx


def authorize(
    action: str, *, resource: ResourceDependency | None = None
) -> Callable[..., Awaitable[Decision]]:
    """``Depends(authorize("notes.delete", resource=note))``: the policy's decision that
    the principal may do the named ``action`` (from ``data.tenancy.actions``) to the
    resource the ``resource`` dependency returns (default: the tenant itself), asked of
    the authorizer the middleware was given. Anything but an allow refuses.

    Raises (from the dependency, per request):
        AccessDenied: the policy said no (403 problem).
        DecisionUnavailable: no authorizer on the middleware, or no valid decision
            (engine error, timeout, undefined): 503 problem, never an allow.
        ConfigurationError: ``resource`` returned something other than a ``Resource``.
    """
    if not isinstance(action, str) or not action:
        raise ConfigurationError("authorize needs the name of a policy action")

    if resource is None:

        async def decide(
            ctx: Annotated[TenantContext, Depends(tenant_context)],
        ) -> Decision:
            return await authz.authorize(action)

        return decide

    async def decide_on(
        ctx: Annotated[TenantContext, Depends(tenant_context)],
        target: Annotated[Any, Depends(resource)],
    ) -> Decision:
        if inspect.isawaitable(target):  # a resource dependency that returned a coroutine
            target = await target
        if not isinstance(target, Resource):
            raise ConfigurationError(
                f"the resource dependency of {action!r} returned "
                f"{type(target).__name__}, not a Resource"
            )
        return await authz.authorize(action, target)

    return decide_on


def tenant_session(
    sessions: async_sessionmaker[AsyncTenantSession],
) -> Callable[..., AsyncIterator[AsyncTenantSession]]:
    """``Depends(tenant_session(Sessions))``: one :class:`~tenancy.scoping.AsyncTenantSession`
    per request, opened only once the middleware's context is there, closed (and anything
    not committed rolled back) when the request is done.

    Raises:
        ConfigurationError: ``sessions`` does not make ``AsyncTenantSession`` objects (an
            unscoped session would read every tenant's rows).
    """
    made = getattr(sessions, "class_", None)
    if not (isinstance(made, type) and issubclass(made, AsyncTenantSession)):
        raise ConfigurationError(
            "tenant_session needs async_sessionmaker(..., class_=AsyncTenantSession)"
        )

    async def session(
        ctx: Annotated[TenantContext, Depends(tenant_context)],
    ) -> AsyncIterator[AsyncTenantSession]:
        async with sessions() as opened:
            yield opened

    return session


def install(app: FastAPI) -> FastAPI:
    """Answer every error as RFC 9457 problem+json: the library's errors and routing's
    HTTP errors (``tenancy.problems.exception_handlers``), request validation (422, the
    fields named in ``errors``) and anything unhandled (500, nothing of it shown)."""
    for exc_class, handler in exception_handlers().items():
        app.add_exception_handler(exc_class, handler)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(Exception, _internal_problem)
    return app


async def _validation_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    fields: dict[str, str] = {}
    for error in exc.errors():
        where = [str(part) for part in error.get("loc", ())]
        name = ".".join(where[1:]) or (where[0] if where else "request")
        fields.setdefault(name, str(error.get("msg", "invalid")))
    return problem_response(
        InvalidRequest("the request is invalid", errors=fields), instance=request.url.path
    )


async def _internal_problem(request: Request, exc: Exception) -> Response:
    # The exception is re-raised by Starlette after this response, so it is still logged.
    return problem_response(InternalError(), instance=request.url.path)
