"""The sign-in mail: what to say (templates) and the send queue (delivery: transports.py).

The request path only reserves a place and hands over a job; rendering, the signup check and
SMTP all happen in background sender tasks. The mail body (it holds the code) is never written
to disk: a crash loses what was queued, by design, and the code page offers a resend.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import urlsplit

import jinja2

from service import store
from service.db import Database
from service.delivery import compose
from service.delivery.account_mail import Notice, NoticeTemplates
from service.delivery.dkim import DkimSigner
from service.delivery.transports import (
    PermanentMailError,
    TransientMailError,
    Transport,
    send_bytes,
)
from service.device import describe_device
from service.display import mask_email
from service.errors import ConfigError, UnavailableError
from service.settings import Settings

log = logging.getLogger("latch.mail")


@dataclass(frozen=True, kw_only=True)
class MailJob:
    """One sign-in mail to send: the code and link exist only here and in the message."""

    flow_id: str
    seq: int
    to: str
    code: str
    link: str
    expires_at: int
    ip: str
    user_agent: str


class Renderer:
    """Renders email_templates/ (subject.txt, body.txt, body.html) into a multipart message."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        loader = jinja2.FileSystemLoader(str(settings.mail.templates_dir))
        html = jinja2.Environment(loader=loader, autoescape=True)
        text = jinja2.Environment(loader=loader, autoescape=False)  # noqa: S701
        # Compiled once, here: compiling takes tens of milliseconds, which would otherwise
        # stall the event loop (and every request on it) at the first mail; and a missing or
        # malformed template stops start-up instead of failing each sign-in.
        try:
            self._subject = text.get_template("subject.txt")
            self._body_text = text.get_template("body.txt")
            self._body_html = html.get_template("body.html")
        except jinja2.TemplateError as e:
            raise ConfigError(
                f"EMAIL_TEMPLATES_DIR ({settings.mail.templates_dir}) must hold valid "
                f"subject.txt, body.txt and body.html templates: {type(e).__name__}: {e}"
            ) from e
        # MAIL_FROM is refused at start-up if it holds a line break (settings.validate); the
        # default sender is built as an Address, so APP_NAME is quoted and kept on one line.
        self.sender = settings.mail.from_address or str(
            Address(_one_line(settings.brand.app_name), "login", _mail_domain(settings))
        )
        sender = _one_address(self.sender, "From")
        if sender is None:
            raise ConfigError(f"MAIL_FROM must be exactly one address, not {self.sender!r}")
        self.envelope_sender = sender
        self._domain = _mail_domain(settings)
        self._fixed: dict[str, Any] = {
            "app_name": settings.brand.app_name,
            "accent_color": settings.brand.accent_color,
            "logo_url": f"{settings.public_url}/logo" if settings.brand.logo_file else "",
            "expires_minutes": max(1, settings.signin.code_ttl // 60),
        }
        self._composer = compose.Composer(
            self._subject, self._body_text, self._body_html, _one_line
        )
        self._heads: dict[str, bytes] = {}
        # What every notice's templates get of the brand (delivery/account_mail.py).
        self._brand = {k: self._fixed[k] for k in ("app_name", "accent_color", "logo_url")}
        self.notices = NoticeTemplates(settings.mail.templates_dir)

    def envelope(self, job: MailJob) -> tuple[str, tuple[str, ...]]:
        """(sender, recipients) for SMTP: MAIL_FROM's address and the validated address only.

        Given to the transport explicitly: SMTP libraries otherwise take the recipients from
        the parsed To/Cc/Bcc headers, i.e. from whatever a parser makes of them.
        """
        return self.envelope_sender, (job.to,)

    def render_notice(self, notice: Notice) -> EmailMessage:
        """A notice (delivery/account_mail.py) as a complete mail to exactly `notice.to`.

        Always the general path: a notice's values (device names, times, masked addresses)
        are not the sign-in mail's, which the composer's probes vouch for, and notices are at
        most one per sign-in or change, never what limits a rush.
        """
        parts = self.notices.render(notice, self._brand)
        return self.build(notice.to, parts.subject, parts.text, parts.html)

    def _context(self, job: MailJob) -> dict[str, Any]:
        return {
            **self._fixed,
            "email": job.to,
            "code": job.code,
            "code_display": f"{job.code[:3]} {job.code[3:]}",
            "link": job.link,
            "expires_at": formatdate(job.expires_at, usegmt=True)[17:22] + " UTC",
            "request_ip": job.ip,
            "request_device": describe_device(job.user_agent),
        }

    def mime(self, job: MailJob) -> bytes:
        """The complete sign-in mail for a job as bytes (CRLF), addressed to exactly `job.to`.

        Filled into a pre-rendered shape when that gives what the templates would (compose.py),
        else rendered by Jinja and built by the `email` package.
        """
        context = self._context(job)
        shape = self._composer.shape(self._fixed, context["request_device"], bool(job.ip))
        if shape is not None and self._composer.fits(context):
            text, html = self._composer.encode(shape, context)
            return compose.mime(self._head(shape.subject), job.to, self._domain, text, html)
        return wire(self.render_general(job))

    def render(self, job: MailJob) -> EmailMessage:
        """The sign-in mail as a message object (what the bytes of `mime` read back as)."""
        message = email.message_from_bytes(self.mime(job), policy=_POLICY)
        assert isinstance(message, EmailMessage)  # policy.default's message class
        return message

    def _head(self, subject: str) -> bytes:
        """The Subject and From lines for a subject, encoded and folded once."""
        head = self._heads.get(subject)
        if head is None:
            msg = EmailMessage(policy=_POLICY)
            msg["Subject"] = subject
            msg["From"] = self.sender
            head = self._heads[subject] = msg.as_bytes(policy=_HEAD).split(b"\n\n", 1)[0] + b"\n"
        return head

    def render_general(self, job: MailJob) -> EmailMessage:
        """The mail rendered by Jinja and built by the `email` package (the general path)."""
        context = self._context(job)
        return self.build(
            job.to,
            self._subject.render(context),
            self._body_text.render(context),
            self._body_html.render(context),
        )

    def build(self, to: str, subject: str, text: str, html: str) -> EmailMessage:
        """A multipart mail from Latch to exactly `to`, built by the `email` package: the
        general path of sign-in mails, and every notice (delivery/account_mail.py and
        delivery/notices.py), so all of them carry the same headers and sign alike."""
        msg = EmailMessage(policy=_POLICY)
        # Whatever a template or APP_NAME holds, the subject is one line: no header injection.
        msg["Subject"] = _one_line(subject)
        msg["From"] = self.sender
        # Built as an Address, never parsed from a string: the header parser decodes RFC 2047
        # encoded-words, so `=?q?a=40evil.example=2c?=b@ok` would become two recipients.
        # Address() refuses such an addr_spec (ValueError: the job fails, nothing is sent).
        msg["To"] = Address(addr_spec=to)
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self._domain)
        msg["Auto-Submitted"] = "auto-generated"
        # Exchange and Outlook honour this one instead: no out-of-office replies, read receipts
        # or delivery reports sent back to MAIL_FROM for a mail nobody wrote.
        msg["X-Auto-Response-Suppress"] = "All"
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        # What a receiving client will read back from the To header must be the validated
        # address and nothing else (addresses.parse_email already refuses encoded-words).
        if _one_address(str(msg["To"]), "To") != to:
            raise ValueError("the To header does not read back as the recipient")
        return msg


class _CachedHeaderRegistry(HeaderRegistry):
    """The standard header classes, built once per header name.

    CPython's registry builds a new class with `type()` for every header set on a message
    (~30 us each, measured here): a sixth of the cost of rendering a sign-in mail.
    """

    def __init__(self) -> None:
        super().__init__()
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = super().__getitem__(name)
        return cls


# cte_type="7bit": non-ASCII bodies are quoted-printable and headers RFC 2047 encoded when
# the parts are built, so the message is the same bytes through any relay (with or without
# 8BITMIME), and a DKIM signature over it survives the trip (delivery/dkim.py).
_POLICY = email.policy.default.clone(header_factory=_CachedHeaderRegistry(), cte_type="7bit")
# The bytes that go out: CRLF line ends (SMTP's), 7-bit as above.
_WIRE = _POLICY.clone(linesep="\r\n")
# Header lines built once for the composed path, which turns every LF into CRLF itself.
_HEAD = _POLICY.clone(linesep="\n")


def wire(message: EmailMessage) -> bytes:
    """A message built by `Renderer.build` as the bytes that go out (CRLF, 7-bit)."""
    return message.as_bytes(policy=_WIRE)


def _one_line(text: str) -> str:
    """Every run of whitespace (CR and LF included) folded into one space."""
    return " ".join(text.split())


def _one_address(value: str, name: str) -> str | None:
    """The addr_spec of an address header's value if it holds exactly one address."""
    header = _POLICY.header_factory(name, value)
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    if len(addresses) != 1 or "@" not in addresses[0].addr_spec:
        return None
    return addresses[0].addr_spec


def _mail_domain(settings: Settings) -> str:
    host = urlsplit(settings.public_url).hostname or "localhost"
    return "localhost" if host in ("127.0.0.1", "::1") else host


def _no_place(place: asyncio.Future[None]) -> None:
    if not place.done():
        place.set_exception(TimeoutError())


class Mailer:
    """A bounded in-process queue and a few sender tasks with retries and backoff."""

    def __init__(
        self,
        settings: Settings,
        transport: Transport,
        database: Database,
        clock: Callable[[], float],
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.database = database
        self.clock = clock
        self.renderer = Renderer(settings)
        self.signer = DkimSigner(settings.dkim) if settings.dkim.enabled else None
        self._queue: asyncio.Queue[tuple[MailJob | Notice, int]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Starts waiting for a place, oldest first; a freed place is handed to the first.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.sent = 0
        self.failed = 0

    @property
    def depth(self) -> int:
        """Mails accepted and not yet finished (queued, sending, or waiting to retry)."""
        return self._pending

    @property
    def full(self) -> bool:
        """True when no further mail can be accepted."""
        return self._pending >= self.settings.mail.queue_size

    async def reserve(self) -> None:
        """Hold a place for one mail; when the queue is full, wait up to MAIL_QUEUE_WAIT for
        one, then refuse with 503.

        Waiting slows a rush to the pace mail goes out instead of refusing most of it (a class
        signing in at once got 503s for most starts), while the queue, and so how far mail can
        fall behind, stays bounded. Waiters form a line: a finished mail hands its place to the
        oldest one (`_done`), so each mail wakes one start, first come first served. (An event
        that woke every waiter had them all race for the one place, each setting up its wait
        again: under a rush from 64 connections, the loop spent more on that than on the mail.)
        """
        if not self.full and not self._waiters:
            self._pending += 1
            self._idle.clear()
            return
        loop = asyncio.get_running_loop()
        place: asyncio.Future[None] = loop.create_future()
        self._waiters.append(place)
        timer = loop.call_later(self.settings.mail.queue_wait, _no_place, place)
        try:
            await place
        except TimeoutError:
            raise UnavailableError(
                retry_after=5, message="Too many sign-ins at once. Try again."
            ) from None
        except asyncio.CancelledError:
            if place.done() and not place.cancelled() and place.exception() is None:
                self._done()  # handed a place just as we were cancelled: pass it on
            raise
        finally:
            timer.cancel()
            if not place.done():
                place.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(place)  # timed out or cancelled: out of the line

    def release(self) -> None:
        """Give back a place that was reserved but not used."""
        self._done()

    def submit(self, job: MailJob) -> None:
        """Queue a job for which a place was reserved."""
        self._queue.put_nowait((job, 0))

    def notify(self, notice: Notice) -> bool:
        """Queue a notice; False (and nothing queued) when the queue is full.

        Never raises: a notice follows something that already happened (a sign-in, a change
        of address), which a full queue must not undo or turn into an error.
        """
        if self.full:
            log.warning("mail.dropped notice=%s kind=%s: queue full", notice.ref[:8], notice.kind)
            return False
        self._pending += 1
        self._idle.clear()
        self._queue.put_nowait((notice, 0))
        return True

    def start(self) -> None:
        """Start the sender tasks."""
        for i in range(self.settings.mail.workers):
            self._tasks.append(asyncio.create_task(self._work(), name=f"latch-mail-{i}"))

    async def drain(self, grace: float) -> bool:
        """Wait until every accepted mail is finished (at most `grace` s); stop the senders."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
            drained = True
        except TimeoutError:
            drained = False
            log.warning("mail queue not drained at shutdown: %d mails lost", self._pending)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        close = getattr(self.transport, "aclose", None)
        if close is not None:
            await close()
        return drained

    def _done(self) -> None:
        while self._waiters:
            place = self._waiters.popleft()
            if not place.done():
                place.set_result(None)  # the place goes to this start: `_pending` unchanged
                return
        self._pending -= 1
        if self._pending <= 0:
            self._pending = 0
            self._idle.set()

    async def _work(self) -> None:
        while True:
            job, attempt = await self._queue.get()
            try:
                if isinstance(job, Notice):
                    finished = await self._attempt_notice(job, attempt)
                else:
                    finished = await self._attempt(job, attempt)
            except Exception:
                ref = job.ref if isinstance(job, Notice) else job.flow_id
                log.exception("mail worker error for %s", ref[:8])
                finished = True
            if finished:
                self._done()

    async def _attempt(self, job: MailJob, attempt: int) -> bool:
        """One delivery attempt; False when a retry was scheduled."""
        now = int(self.clock())
        check_user = not self.settings.signin.allow_signup
        if attempt > 0 or check_user:
            verdict = await self.database.run(
                store.claim_mail(job.flow_id, job.seq, check_user=check_user, now=now)
            )
            if verdict == "suppress":
                # Logged (and so counted) exactly as a sent mail: the counters and INFO logs
                # must not tell an address without an account from one with. The difference
                # is for operators who ask for it, at DEBUG.
                log.debug("mail.suppressed flow=%s (no account: nothing sent)", job.flow_id[:8])
                log.info("mail.sent flow=%s to=%s", job.flow_id[:8], mask_email(job.to))
                return True
            if verdict != "send":
                log.info("mail.skip flow=%s", job.flow_id[:8])
                return True
        try:
            data = self.renderer.mime(job)
            sender, recipients = self.renderer.envelope(job)
            if self.signer is not None:
                # An RSA signature costs a millisecond or two: off the event loop.
                data = await asyncio.to_thread(self.signer.sign_bytes, data)
        except (jinja2.TemplateError, ValueError) as e:
            # A broken template (EMAIL_TEMPLATES_DIR is the operator's) fails every attempt, as
            # does a recipient the To header cannot carry unchanged:
            # end the flow now rather than leave it "queued" with a code nobody will get.
            await self._fail(job, f"render: {type(e).__name__}: {e}")
            return True
        try:
            await send_bytes(self.transport, data, sender, recipients)
        except TransientMailError as e:
            return await self._retry_or_fail(job, attempt, str(e))
        except PermanentMailError as e:
            await self._fail(job, str(e))
            return True
        await self.database.run(store.mark_mail(job.flow_id, job.seq, status="sent", error=None))
        self.sent += 1
        log.info("mail.sent flow=%s to=%s", job.flow_id[:8], mask_email(job.to))
        return True

    async def _attempt_notice(self, notice: Notice, attempt: int) -> bool:
        """One delivery attempt of a notice; False when a retry was scheduled. A notice has
        no flow whose status to record: its outcome is logged only."""
        try:
            data = await self.finish(self.renderer.render_notice(notice))
            await send_bytes(self.transport, data, self.renderer.envelope_sender, (notice.to,))
        except TransientMailError as e:
            delays = self.settings.mail.retry_delays
            delay = delays[attempt] if attempt < len(delays) else None
            if delay is not None and self.clock() + delay < notice.expires_at:
                log.info("mail.retry notice=%s attempt=%d", notice.ref[:8], attempt + 1)
                loop = asyncio.get_running_loop()
                loop.call_later(delay, self._queue.put_nowait, (notice, attempt + 1))
                return False
            self._notice_failed(notice, str(e))
            return True
        except (PermanentMailError, jinja2.TemplateError, ValueError) as e:
            self._notice_failed(notice, f"{type(e).__name__}: {e}")
            return True
        self.sent += 1
        log.info(
            "mail.sent notice=%s kind=%s to=%s", notice.ref[:8], notice.kind, mask_email(notice.to)
        )
        return True

    async def finish(self, message: EmailMessage) -> bytes:
        """A built message as the bytes to send, DKIM-signed when DKIM is on (a ValueError
        when signing fails: no unsigned mail goes out instead)."""
        data = wire(message)
        if self.signer is not None:
            # An RSA signature costs a millisecond or two: off the event loop.
            data = await asyncio.to_thread(self.signer.sign_bytes, data)
        return data

    def _notice_failed(self, notice: Notice, error: str) -> None:
        self.failed += 1
        log.warning(
            "mail.failed notice=%s kind=%s to=%s error=%s",
            notice.ref[:8],
            notice.kind,
            mask_email(notice.to),
            error[:200],
        )

    async def _retry_or_fail(self, job: MailJob, attempt: int, error: str) -> bool:
        delays = self.settings.mail.retry_delays
        delay = delays[attempt] if attempt < len(delays) else None
        if delay is None or self.clock() + delay >= job.expires_at:
            await self._fail(job, error)
            return True
        log.info(
            "mail.retry flow=%s attempt=%d in=%.1fs error=%s",
            job.flow_id[:8],
            attempt + 1,
            delay,
            error[:200],
        )
        await self.database.run(
            store.mark_mail(job.flow_id, job.seq, status="queued", error=error[:500])
        )
        asyncio.get_running_loop().call_later(delay, self._queue.put_nowait, (job, attempt + 1))
        return False

    async def _fail(self, job: MailJob, error: str) -> None:
        self.failed += 1
        log.warning(
            "mail.failed flow=%s to=%s error=%s", job.flow_id[:8], mask_email(job.to), error[:200]
        )
        await self.database.run(
            store.fail_mail(job.flow_id, job.seq, error=error[:500], now=int(self.clock()))
        )
