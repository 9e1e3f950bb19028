"""Demonstrates the tenant admin console: a tenant's admin decides support access.

Server-rendered (Starlette + Jinja2, no JavaScript). The admin signs in by pasting an
access token, which the same ``TokenVerifier`` as the API checks, on login and again on
every page; only a user holding the admin role of an active tenant of this region gets
in, and sees and acts on that tenant's grants only (any other grant id is a 404). Every
POST carries the session's CSRF token and answers with a redirect (POST-redirect-GET);
refusals of ``SupportAccess`` are shown on the page.

Routes: ``GET/POST /login``, ``POST /logout``, ``GET /`` (pending requests, active
grants, history), ``POST /grants/{id}/approve|deny|revoke``, ``GET /grants/{id}`` (trail).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from tenancy.clock import SYSTEM_CLOCK, Clock
from tenancy.context import Principal, PrincipalKind
from tenancy.errors import AuthenticationError, ConsentRefused, NotFound, TenancyError
from tenancy.identity import TokenVerifier
from tenancy.support import Grant, SupportAccess, is_write_scope
from tenancy.tenants import Tenant, TenantRegistry
from tenancy_examples.console import web
from tenancy_examples.console.web import Refused, Session, SignInAgain

HERE = Path(__file__).parent
LOGIN_COOKIE = "console_login"
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class Admin:
    sid: str
    session: Session
    principal: Principal
    tenant: Tenant


def create_app(
    *,
    verifier: TokenVerifier,
    support: SupportAccess,
    tenants: TenantRegistry,
    region: str,
    clock: Clock = SYSTEM_CLOCK,
    cookie_secure: bool = False,
) -> Starlette:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.filters.update(duration=web.human_duration, when=web.when, details=web.details)
    sessions, guard = web.SessionStore(), web.LoginGuard()
    secure, longest = cookie_secure, support.max_duration
    cookie = "__Host-console" if secure else "console"  # __Host-: Secure, Path=/, no Domain
    css = (HERE / "static" / "console.css").read_bytes()

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, context, status_code=status)

    def admitted(principal: Principal) -> Tenant:
        """The admin's own tenant, if this principal may use the console at all."""
        if principal.kind is not PrincipalKind.USER or support.admin_role not in principal.roles:
            raise Refused(403, "This console is for your organisation's administrators.")
        try:
            tenant = tenants.get(principal.tenant_id)
            tenant.ensure_servable(region=region)
        except TenancyError as exc:
            raise Refused(403, "Your organisation cannot be served here.") from exc
        return tenant

    async def admin(request: Request) -> Admin:
        sid = request.cookies.get(cookie)
        session = sessions.get(sid)
        if sid is None or session is None:
            raise SignInAgain
        try:
            verified = await verifier.verify_async(session.token)
        except AuthenticationError as exc:
            sessions.drop(sid)
            raise SignInAgain from exc
        except TenancyError as exc:
            raise Refused(503, "Sign-in cannot be checked right now; try again.") from exc
        principal = verified.principal
        return Admin(sid, session, principal, await run_in_threadpool(admitted, principal))

    async def login_page(request: Request, status: int = 200, error: str = "") -> Response:
        nonce, csrf = guard.issue()
        ended = request.query_params.get("ended") == "1"
        response = page(request, "login.html", status, csrf=csrf, error=error, ended=ended)
        web.set_cookie(response, LOGIN_COOKIE, nonce, path="/login", secure=secure, max_age=900)
        return response

    async def login(request: Request) -> Response:
        form = await web.read_form(request)
        if not guard.check(request.cookies.get(LOGIN_COOKIE), form.get("csrf", "")):
            raise Refused(403, "The sign-in form expired. Reload the page and try again.")
        token = form.get("token", "").strip()
        try:
            verified = await verifier.verify_async(token)
        except AuthenticationError:
            return await login_page(
                request,
                401,
                "That token was not accepted: it is not "
                "valid, not for this console, or it has expired.",
            )
        await run_in_threadpool(admitted, verified.principal)
        sessions.drop(request.cookies.get(cookie))  # a fresh session id on every sign-in
        sid = sessions.create(token, expires_at=verified.expires_at, now=clock.timestamp())
        response = RedirectResponse("/", status_code=303)
        web.set_cookie(response, cookie, sid, path="/", secure=secure)
        web.clear_cookie(response, LOGIN_COOKIE, path="/login", secure=secure)
        return response

    async def checked_form(request: Request, me: Admin) -> dict[str, str]:
        form = await web.read_form(request)
        if not me.session.csrf_ok(form.get("csrf", "")):
            raise Refused(403, "The form expired. Reload the page and try again.")
        return form

    async def logout(request: Request) -> Response:
        me = await admin(request)
        await checked_form(request, me)
        sessions.drop(me.sid)
        response = RedirectResponse("/login", status_code=303)
        web.clear_cookie(response, cookie, path="/", secure=secure)
        return response

    async def home(request: Request) -> Response:
        me = await admin(request)
        now = clock.now()
        grants = [
            (g, g.status_at(now)) for g in await run_in_threadpool(support.grants, me.tenant.id)
        ]
        return page(
            request,
            "home.html",
            me=me,
            flashes=me.session.take_flashes(),
            pending=[g for g, s in grants if s == "pending"],
            active=[g for g, s in grants if s == "active"],
            history=[(g, s) for g, s in grants if s not in ("pending", "active")],
            choices=lambda g: web.durations_for(g.requested_duration, longest),
            writes=lambda g: sorted(s for s in g.requested_scopes if is_write_scope(s)),
        )

    async def grant_of(me: Admin, grant_id: str) -> Grant:
        try:
            return await run_in_threadpool(support.get, me.tenant.id, grant_id)
        except NotFound as exc:  # another tenant's grant looks exactly like none at all
            raise Refused(404, "There is no such request in your organisation.") from exc

    async def decide(request: Request) -> Response:
        me = await admin(request)
        if request.path_params["action"] not in ("approve", "deny", "revoke"):
            raise Refused(404, "There is no such page.")
        form = await checked_form(request, me)
        grant = await grant_of(me, request.path_params["id"])
        action, reason = request.path_params["action"], form.get("reason", "").strip()
        try:
            if action == "approve":
                chosen = web.chosen_duration(
                    form.get("duration", ""), grant.requested_duration, longest
                )
                if chosen is None:
                    raise ConsentRefused("choose one of the offered durations")
                done = await run_in_threadpool(
                    lambda: support.approve(
                        me.tenant.id,
                        grant.id,
                        me.principal,
                        duration=chosen,
                        allow_write=form.get("allow_write") == "yes",
                    )
                )
                text = f"Approved ticket {grant.ticket_id} until {web.when(done.expires_at())}."
            elif not reason or len(reason) > MAX_REASON:
                raise ConsentRefused(f"give a reason (at most {MAX_REASON} characters)")
            elif action == "deny":
                await run_in_threadpool(
                    lambda: support.deny(me.tenant.id, grant.id, me.principal, reason=reason)
                )
                text = f"Denied the request for ticket {grant.ticket_id}."
            else:
                await run_in_threadpool(
                    lambda: support.revoke(me.tenant.id, grant.id, me.principal, reason=reason)
                )
                text = f"Revoked access for ticket {grant.ticket_id}."
        except ConsentRefused as exc:
            me.session.flash("error", f"Ticket {grant.ticket_id}: refused: {exc.reason}.")
        else:
            me.session.flash("done", text)
        return RedirectResponse("/", status_code=303)

    async def trail(request: Request) -> Response:
        me = await admin(request)
        grant = await grant_of(me, request.path_params["id"])
        entries = await run_in_threadpool(support.trail, me.tenant.id, grant.id)
        return page(
            request,
            "trail.html",
            me=me,
            grant=grant,
            entries=entries,
            state=grant.status_at(clock.now()),
        )

    async def stylesheet(request: Request) -> Response:
        return Response(css, media_type="text/css")

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return page(request, "refused.html", exc.status, message=exc.message, code=exc.status)

    async def sign_in_again(request: Request, exc: Exception) -> Response:
        response = RedirectResponse("/login?ended=1", status_code=303)
        web.clear_cookie(response, cookie, path="/", secure=secure)
        return response

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", home, methods=["GET"]),
        Route("/grants/{id}", trail, methods=["GET"]),
        Route("/grants/{id}/{action:str}", decide, methods=["POST"]),
        Route("/static/console.css", stylesheet, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(web.SecurityHeaders)],
        exception_handlers={Refused: refused, SignInAgain: sign_in_again},
    )
