"""Security notices by mail: a second factor added or removed, a recovery code used (§11).

They go through the sign-in mail's transport and sender, in background tasks of their own (the
request that changed a factor never waits for SMTP), with a couple of retries. A notice holds
no secret; a lost one (crash, SMTP down for minutes) loses a warning, not access, so they are
not queued durably. Templates: email_templates/notice*.{txt,html}; a deployment whose
EMAIL_TEMPLATES_DIR predates them falls back to Latch's own.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import jinja2

from service.delivery.mail import Mailer
from service.delivery.transports import PermanentMailError, TransientMailError, send_bytes
from service.display import mask_email
from service.settings import Settings

log = logging.getLogger("latch.mail")
BUILT_IN = Path(__file__).resolve().parents[2] / "email_templates"
KINDS = ("factor_added", "factor_removed", "recovery_code_used")
RETRY_DELAYS = (2.0, 10.0)
MAX_IN_FLIGHT = 1000


@dataclass(frozen=True, kw_only=True)
class Notice:
    """One notice: its kind, to whom, and the facts it states."""

    kind: str
    to: str
    factor: str = ""  # "an authenticator app"
    left: int = 0  # recovery codes left


class Notices:
    """Renders and sends notices in the background; `drain` waits for them at shutdown."""

    def __init__(self, settings: Settings, mailer: Mailer) -> None:
        self.settings = settings
        self.mailer = mailer
        loader = jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(str(settings.mail.templates_dir)),
                jinja2.FileSystemLoader(str(BUILT_IN)),
            ]
        )
        text = jinja2.Environment(loader=loader, autoescape=False)  # noqa: S701
        html = jinja2.Environment(loader=loader, autoescape=True)
        self._subject = text.get_template("notice_subject.txt")
        self._text = text.get_template("notice.txt")
        self._html = html.get_template("notice.html")
        self._tasks: set[asyncio.Task[None]] = set()
        self.sent = 0

    def render(self, notice: Notice) -> EmailMessage:
        """The notice as a multipart message to exactly `notice.to`."""
        if notice.kind not in KINDS:
            raise ValueError(f"unknown notice {notice.kind!r}")
        context = {
            "kind": notice.kind,
            "app_name": self.settings.brand.app_name,
            "public_url": self.settings.public_url,
            "email": notice.to,
            "factor": notice.factor,
            "left": notice.left,
        }
        subject = " ".join(self._subject.render(context).split())
        # Built as every Latch mail is (Renderer.build): the same headers (Auto-Submitted,
        # X-Auto-Response-Suppress, a Message-ID of Latch's domain) and 7-bit, so DKIM holds.
        return self.mailer.renderer.build(
            notice.to,
            subject,
            self._text.render(context),
            self._html.render({**context, "subject": subject}),
        )

    def send(self, notice: Notice) -> None:
        """Send in the background; never raises into the request that changed a factor."""
        if len(self._tasks) >= MAX_IN_FLIGHT:
            log.warning("mail.notice_failed kind=%s: too many in flight", notice.kind)
            return
        task = asyncio.create_task(self._deliver(notice), name="latch-notice")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, notice: Notice) -> None:
        to = mask_email(notice.to)
        try:
            data = await self.mailer.finish(self.render(notice))
        except (jinja2.TemplateError, ValueError) as e:
            log.warning("mail.notice_failed kind=%s to=%s: %s", notice.kind, to, type(e).__name__)
            return
        sender = self.mailer.renderer.envelope_sender
        for delay in (*RETRY_DELAYS, None):
            try:
                await send_bytes(self.mailer.transport, data, sender, (notice.to,))
            except TransientMailError as e:
                if delay is None:
                    log.warning("mail.notice_failed kind=%s to=%s: %s", notice.kind, to, e)
                    return
                await asyncio.sleep(delay)
                continue
            except PermanentMailError as e:
                log.warning("mail.notice_failed kind=%s to=%s: %s", notice.kind, to, e)
                return
            self.sent += 1
            log.info("mail.notice kind=%s to=%s", notice.kind, to)
            return

    async def drain(self, grace: float) -> None:
        """Wait up to `grace` seconds for notices in flight, then cancel the rest."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in late:
            task.cancel()
        if late:
            log.warning("mail.notice_failed %d notices lost at shutdown", len(late))
