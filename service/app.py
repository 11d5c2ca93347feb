"""create_app: routes, middleware and lifespan, with collaborators passed in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route

from service import admin, api, crypto, db, oidc
from service.accounts.housekeeping import Purge
from service.accounts.operator import Operator, webhook_seal_key
from service.admin import openapi as admin_openapi
from service.crypto import Keys
from service.db import Database, open_database
from service.delivery.mail import Mailer
from service.delivery.transports import Transport, default_transport
from service.delivery.webhooks import WebhookSender
from service.errors import ConfigError, MethodNotAllowedError, NotFoundError, ServiceError
from service.pages import render as pages_render
from service.pages import security as pages_security
from service.pages import signin as pages_signin
from service.settings import Settings
from service.signin.sessions import Sessions
from service.signin.steps import SecondFactor
from service.signin.wiring import build_signin
from service.tokens import AlgorithmMismatchError, Keyring, ensure_key
from service.web.hot import HotPaths
from service.web.metrics import AccessLogMiddleware, Metrics
from service.web.public_cors import PublicCorsMiddleware
from service.web.security import (
    BodyLimitMiddleware,
    HostCheckMiddleware,
    SecurityHeadersMiddleware,
)
from service.web.state import AppState, attach_state
from service.web.surface import claim_prefix, surface_of, tag_routes
from service.web.timeouts import BodyTimeoutMiddleware

log = logging.getLogger("latch")
KEY_RELOAD_INTERVAL = 5.0
CLIENT_CLOSED = 499


def create_app(
    settings: Settings,
    *,
    mail_transport: Transport | None = None,
    database: Database | None = None,
    clock: Callable[[], float] = time.time,
    new_code: Callable[[], str] = crypto.new_code,
    second_factors: Iterable[SecondFactor] = (),
) -> Starlette:
    """The Latch ASGI app. Tests pass a transport, a database, a clock or the code generator;
    nothing is patched.

    `second_factors` are second-step methods this Latch can check besides its own
    authenticator apps and recovery codes (docs/design.md §11); one with the same method
    replaces the built-in one (tests bring their own).
    """
    database = database or open_database(settings.storage.resolved_database_url)
    if settings.passkeys.mode == "auto" and not settings.passkeys_enabled:
        # Browsers refuse an IP address as a passkey's relying party (docs/design.md §12).
        log.info(
            "passkeys are off: PUBLIC_URL's host %s is an IP address; use a host name "
            "(http://localhost:8000 in development) to offer them",
            settings.webauthn_rp_id,
        )
    if settings.development and settings.tokens.algorithm != "HS256":
        ensure_key(settings.tokens.keys_dir, settings.tokens.algorithm)
    try:
        keyring = Keyring(
            settings.tokens.keys_dir,
            settings.tokens.algorithm,
            Keys.from_secret(settings.secret_key).jwt_hmac,
        )
    except AlgorithmMismatchError as e:
        raise ConfigError(f"Latch will not start: {e}") from None
    mailer = Mailer(settings, mail_transport or default_transport(settings), database, clock)
    metrics = Metrics(
        allow=settings.web.metrics_allow, trusted_proxies=settings.web.trusted_proxies
    )
    metrics.watch_queue(lambda: mailer.depth)
    sessions = Sessions(settings, database, keyring, clock)
    signin = build_signin(
        settings,
        database,
        mailer,
        keyring,
        clock,
        new_code=new_code,
        second_factors=second_factors,
        forget=sessions.forget,
    )
    webhooks = WebhookSender(settings, database, webhook_seal_key(settings), clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        metrics.install()
        await database.connect()
        applied = await database.run(db.migrate(int(clock())))
        if applied:
            log.info("migrations applied: %s", applied)
        mailer.start()
        webhooks.start()
        tasks = [
            asyncio.create_task(
                _reload_keys(keyring, settings.tokens.keys_reload_interval), name="latch-keys"
            ),
        ]
        purge = Purge(database, settings, clock)
        purge.start()
        try:
            yield
        finally:
            # Notices go before the mail queue drains: a notice's send enqueues a mail.
            await signin.notices.drain(settings.runtime.shutdown_grace)
            await mailer.drain(settings.runtime.shutdown_grace)
            await webhooks.stop()
            await purge.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await database.disconnect()
            metrics.uninstall()

    app = Starlette(
        routes=[
            *tag_routes([*api.routes, Route("/metrics", metrics.endpoint)], api.surface),
            claim_prefix("/api", api.surface),
            *tag_routes(oidc.api_routes, oidc.api_surface),
            *tag_routes(oidc.page_routes, oidc.pages_surface),
            *tag_routes(admin.routes, admin.surface),
            claim_prefix(admin.PREFIX, admin.surface),
            *tag_routes([*pages_security.routes, *pages_signin.routes], pages_render.surface),
        ],
        middleware=[
            Middleware(AccessLogMiddleware, metrics=metrics),
            # The hot GETs answer here, inside the access log and outside everything else.
            Middleware(
                HotPaths,
                settings=settings,
                sessions=sessions,
                keyring=keyring,
                documents={
                    **api.wellknown.documents(settings, keyring),
                    **oidc.documents(settings),
                },
            ),
            # Outside the credentialed CORS: the public documents answer any origin.
            Middleware(PublicCorsMiddleware),
            *_cors(settings),
            Middleware(SecurityHeadersMiddleware, settings=settings),
            Middleware(HostCheckMiddleware, settings=settings),
            Middleware(BodyTimeoutMiddleware, timeout=settings.runtime.body_timeout),
            Middleware(BodyLimitMiddleware, max_bytes=settings.limits.body_bytes),
        ],
        exception_handlers={
            ClientDisconnect: _client_gone,
            ServiceError: _service_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
    attach_state(
        app,
        AppState(
            settings=settings,
            database=database,
            keyring=keyring,
            mailer=mailer,
            login=signin.login,
            refresher=signin.refresher,
            steps=signin.steps,
            factors=signin.factors,
            passkeys=signin.passkeys,
            code_page=signin.code_page,
            bindings=signin.bindings,
            sessions=sessions,
            account_factors=signin.account_factors,
            enrolment=signin.enrolment,
            notices=signin.notices,
            device_notices=signin.device_notices,
            account=signin.account,
            address=signin.address,
            metrics=metrics,
            clock=clock,
            operator=Operator(settings, database, clock, forget=sessions.forget),
            openapi_parts=(admin_openapi.part(),),
        ),
    )
    oidc.attach(app, settings, database, keyring, clock)
    return app


def _cors(settings: Settings) -> list[Middleware]:
    """CORS with credentials for ALLOWED_ORIGINS only (the JSON API still checks Origin)."""
    if not settings.web.allowed_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.web.allowed_origins),
            allow_credentials=True,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["content-type"],
            max_age=600,
        )
    ]


async def _service_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServiceError)
    # The surface the request reached renders it; an unknown path gets the pages' 404.
    surface = surface_of(request.scope, pages_render.surface)
    assert surface is not None
    response = await surface.render(request, exc)
    # The headers HTTP requires of a status (Allow on a 405, WWW-Authenticate on a 401,
    # Retry-After) belong to the error, whichever surface renders it: a renderer that forgets
    # them does not drop them.
    for name, value in exc.headers.items():
        if name not in response.headers:
            response.headers[name] = value
    return response


# Starlette's StaticFiles refuses other methods with a bare 405; it serves GET and HEAD.
_STATIC_METHODS = "GET, HEAD"


def _allow(request: Request) -> str:
    """Every method some route serves at this path.

    Starlette's own Allow names only the first route that matched the path, so GET /login and
    POST /login (two routes) would answer PUT /login with `Allow: GET, HEAD`.
    """
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match != Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods)) or _STATIC_METHODS


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: ServiceError
    if exc.status_code == 405:
        error = MethodNotAllowedError(_allow(request))
    elif exc.status_code == 404:
        error = NotFoundError()
    else:
        error = ServiceError()
        error.status = exc.status_code
    return await _service_error(request, error)


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client hung up before its body was read: nothing went wrong here, and anyone can do
    # it at will, so it must not look like an error (nor trip the 5xx alert). 499 is nginx's
    # "client closed request": the access log and metrics record it; the client never sees it
    # (uvicorn sends nothing on a closed connection).
    log.info("http.disconnect %s: the client left before its request was read", request.url.path)
    return Response(status_code=CLIENT_CLOSED)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # The cause is logged for operators (type only: a message might quote input); the client
    # gets the generic message of a 500.
    log.error("unexpected %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
    return await _service_error(request, ServiceError())


async def _reload_keys(keyring: Keyring, interval: float) -> None:
    """Pick up keys added or rotated in KEYS_DIR without a restart."""
    while True:
        await asyncio.sleep(interval or KEY_RELOAD_INTERVAL)
        try:
            keyring.reload()
        except Exception as e:  # a half-written folder must not stop the service
            log.error("signing keys not reloaded: %s", e)
