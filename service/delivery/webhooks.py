"""Webhook delivery: the outbox (store/webhooks.py) sent per the Standard Webhooks specification.

Every instance runs one sender. Each poll leases a batch of due messages (PostgreSQL: `FOR
UPDATE SKIP LOCKED`, so two instances never take the same row), posts them concurrently, each
bounded by WEBHOOK_TIMEOUT in total, and records every attempt. A message is delivered at least
once: a failure (no answer, a timeout, any status but 2xx, a redirect) is retried with
exponential backoff until WEBHOOK_RETRY_FOR after the event, and a sender that dies holding a
lease leaves its messages due again when the lease runs out (so a crash can mean a second
delivery: receivers deduplicate by `webhook-id`). Ordering is not promised: retries, parallel
posts and several instances all reorder; `timestamp` in the payload says when it happened.

Nothing here runs on a request's path: a slow or dead receiver holds a delivery slot, never a
sign-in (the request only wrote its outbox rows, in its own transaction).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections.abc import Callable

import httpx

from service import crypto
from service.db import Database, Row
from service.errors import ServiceError
from service.settings import Settings
from service.store import webhooks as outbox

log = logging.getLogger("latch.webhooks")
BATCH = 16
MAX_DELAY = 3600
USER_AGENT = "Latch-Webhooks/1"


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under
    the secret's bytes (the base64 after `whsec_`), as the Standard Webhooks spec defines."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def retry_delay(attempt: int, base: int) -> int:
    """Seconds before the attempt after `attempt` (1, 2, …): doubling from `base`, at most an
    hour, with up to 10% jitter so that retries of one outage do not arrive in one burst."""
    delay: int = min(base * 2 ** max(0, attempt - 1), MAX_DELAY)
    return delay + random.randint(0, delay // 10)  # noqa: S311 (spreading load, not a secret)


class WebhookSender:
    """Polls the outbox and delivers; one per process."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        seal_key: bytes,
        clock: Callable[[], float],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings.operator
        self.db = database
        self.seal_key = seal_key  # Keys.webhook_seal: the secrets are sealed (crypto.seal)
        self.clock = clock
        self.transport = transport
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Start polling (in the running loop)."""
        self._client = httpx.AsyncClient(
            transport=self.transport,
            follow_redirects=False,
            timeout=self.settings.webhook_timeout,
            headers={"User-Agent": USER_AGENT},
        )
        self._stopping = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="latch-webhooks")

    async def stop(self) -> None:
        """Stop polling after the batch in flight (bounded by WEBHOOK_TIMEOUT) is recorded.

        Not a plain cancel: a task cancelled inside a database call can leave its pooled
        PostgreSQL connection checked out, and closing the pool then waits for it forever.
        Only a batch that overruns its bound is cancelled (its leases expire: sent again)."""
        if self._task is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(self._task, self.settings.webhook_timeout + 5)
            except TimeoutError:
                log.warning("webhooks: the batch in flight was abandoned at shutdown")
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.deliver_due()
            except ServiceError as e:  # the database is away: try again at the next poll
                log.warning("webhooks: outbox not read: %s", e.message)
                sent = 0
            if sent < BATCH:
                with contextlib.suppress(TimeoutError):
                    poll = self.settings.webhook_poll_interval
                    await asyncio.wait_for(self._stopping.wait(), poll)

    async def deliver_due(self) -> int:
        """Lease and send one batch of due messages; how many were attempted."""
        # The lease outlives the attempt's whole timeout, with room for recording its result.
        lease = int(self.settings.webhook_timeout * 2) + 10
        due = await self.db.run(
            outbox.claim_due(
                now=int(self.clock()),
                lease=lease,
                limit=BATCH,
                skip_locked=self.db.dialect == "postgresql",
            )
        )
        if due:
            await asyncio.gather(*(self._attempt(message) for message in due))
        return len(due)

    async def _attempt(self, message: Row) -> None:
        status, error = await self._post(message)
        now = int(self.clock())
        retry_at: int | None = None
        if status is None or not 200 <= status < 300:
            retry_at = now + retry_delay(message["attempts"], self.settings.webhook_retry_base)
            if retry_at > message["created_at"] + self.settings.webhook_retry_for:
                retry_at = None  # given up: WEBHOOK_RETRY_FOR is over
            log.info(
                "webhook.failed message=%s attempt=%d error=%s%s",
                message["id"][:12],
                message["attempts"],
                error or status,
                "" if retry_at else " (given up)",
            )
        await self.db.run(
            outbox.finish_attempt(
                message["id"],
                message["attempts"],
                now=now,
                status=status,
                error=error,
                retry_at=retry_at,
            )
        )

    async def _post(self, message: Row) -> tuple[int | None, str | None]:
        """(HTTP status, None) or (None, what went wrong); the answer's body is never read."""
        assert self._client is not None
        opened = crypto.unseal(self.seal_key, message["secret"], message["endpoint_id"])
        if opened is None:
            return None, "secret unreadable (was SECRET_KEY changed?)"
        secret = opened.decode("ascii")
        body = message["payload"].encode("utf-8")
        message_id = "msg_" + message["id"]
        # The wall clock, not the service clock: receivers check it against theirs.
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
        }
        try:
            # One bound for the whole attempt (httpx's timeout is per operation: a receiver
            # that trickles its answer would otherwise hold the slot far longer).
            async with asyncio.timeout(self.settings.webhook_timeout):
                async with self._client.stream(
                    "POST", message["url"], content=body, headers=headers
                ) as response:
                    return response.status_code, None
        except TimeoutError:
            return None, "timeout"
        except httpx.HTTPError as e:
            return None, type(e).__name__
