"""Prometheus metrics and Latch's own access log (path only: query strings hold link tokens)."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import NotFoundError
from service.logs import event_of, request_id
from service.settings.fields import LOOPBACK, Network
from service.web.security import client_ip

access_log = logging.getLogger("latch.access")
log = logging.getLogger("latch.metrics")

EVENTS = (
    "login.started",
    "login.resent",
    "login.succeeded",
    "login.failed",
    "mail.sent",
    "mail.failed",
    "mail.retry",
    # No "mail.suppress": a mail withheld for an address without an account (ALLOW_SIGNUP=false)
    # is counted as mail.sent, so that no counter tells known addresses from unknown ones.
    "mail.skip",
    "session.refreshed",
    "session.revoked",
    "refresh.refused",
    "limit.hit",
    # Second factors (docs/design.md §11).
    "login.step_due",
    "step.failed",
    "factor.added",
    "factor.removed",
    "factor.recovery_code_used",
    "step_up.passed",
    "step_up.failed",
    "mail.notice",
    "mail.notice_failed",
)


class Metrics:
    """One registry per app (tests run many apps in one process)."""

    def __init__(
        self, *, allow: tuple[Network, ...] = LOOPBACK, trusted_proxies: tuple[Network, ...] = ()
    ) -> None:
        self.allow, self.trusted_proxies = allow, trusted_proxies
        self.registry = CollectorRegistry()
        self.events = Counter(
            "latch_events", "Latch events by name", ["event"], registry=self.registry
        )
        for event in EVENTS:
            self.events.labels(event=event)
        self.requests = Histogram(
            "latch_request_seconds",
            "Request latency by route",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.mail_queue = Gauge(
            "latch_mail_queue_depth", "Mails accepted and not finished", registry=self.registry
        )
        self.handler = _EventCounter(self)

    def watch_queue(self, depth: Callable[[], float]) -> None:
        """Report the mail queue depth from the mailer at scrape time."""
        self.mail_queue.set_function(depth)

    def install(self) -> None:
        """Count events from the `latch` loggers (so the counters match the log lines)."""
        latch = logging.getLogger("latch")
        # Events are counted whatever LOG_LEVEL says; the output handler filters by level.
        if latch.getEffectiveLevel() > logging.INFO:
            latch.setLevel(logging.INFO)
        latch.addHandler(self.handler)

    def uninstall(self) -> None:
        """Stop counting (app shutdown)."""
        logging.getLogger("latch").removeHandler(self.handler)

    async def endpoint(self, request: Request) -> Response:
        """GET /metrics in the Prometheus text format, for clients in METRICS_ALLOW only.

        Metrics are for operators: counters and the queue depth move with what other people
        do (sign-ins, mails, failures), which is nobody else's business. Anyone else gets the
        404 of a path that does not exist (not a 403, which would confirm there is something
        to get): a scanner learns nothing. The client IP is the one every limit uses
        (X-Forwarded-For only from TRUSTED_PROXIES), so a forged header cannot get in.
        """
        ip = client_ip(request.scope, self.trusted_proxies)
        if not _allowed(ip, self.allow):
            log.info("metrics.refused ip=%s (not in METRICS_ALLOW)", ip)
            raise NotFoundError()
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _allowed(ip: str, networks: tuple[Network, ...]) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class _EventCounter(logging.Handler):
    def __init__(self, metrics: Metrics) -> None:
        super().__init__(level=logging.DEBUG)
        self.metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        event = event_of(record)
        if event in EVENTS:
            self.metrics.events.labels(event=event).inc()


class AccessLogMiddleware:
    """A request id per request, one access line (method, path, status, ms), latency metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # Unique per process and cheap: a random prefix and a counter (ids are not secrets).
        self._prefix = secrets.token_hex(4) + "-"
        self._counter = itertools.count(1)
        self._observers: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = request_id.set(f"{self._prefix}{next(self._counter):x}")
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            key = (name, scope["method"], status)
            observer = self._observers.get(key)
            if observer is None:
                # Route templates, methods and statuses are few: the cache stays small.
                observer = self.metrics.requests.labels(name, scope["method"], str(status))
                self._observers[key] = observer
            observer.observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "http.request %s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                )
            request_id.reset(token)
