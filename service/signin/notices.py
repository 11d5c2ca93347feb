"""New-device notices (docs/design.md §14): after a session opens, mail its person when the
device and network are new, with a "This wasn't me" link that signs that session out.

The link is scanner-safe and single use, like the magic link: its GET only shows (mail
scanners fetch links), its POST spends it once. The token is signed (its own salt, so no other
Latch token passes for one) and carries the notice id and a 256-bit secret of which only a
keyed hash is stored; it appears in no log (only the notice id's first characters do).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate

from service import crypto
from service.crypto import ValueSigner
from service.db import Database
from service.delivery.account_mail import Notice, NoticeKind
from service.delivery.mail import Mailer
from service.device import describe_device, device_name
from service.errors import FlowExpiredError, FlowUsedError, InvalidLinkError, ServiceError
from service.settings import Settings
from service.signin.access import Authenticated
from service.store import Actor, devices
from service.store.devices import NewNotice, NoticeState, Seen

log = logging.getLogger("latch.notices")

# How long "This wasn't me" works: long enough for someone back from a weekend.
NOTICE_LINK_TTL = 7 * 86400
NOT_ME_PATH = "/account/not-me"


def network_of(ip: str) -> str:
    """The network a sign-in came from: IPv4 /24, IPv6 /48 (home and mobile networks move
    a device within these); a value that is not an IP (a test client) stands for itself."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def when(moment: int) -> str:
    """`Fri, 27 Nov 2026 11:31 UTC`: a time in words every reader parses alike."""
    return formatdate(moment, usegmt=True)[:-7] + " UTC"


@dataclass(frozen=True, kw_only=True)
class NoticeView:
    """What the "This wasn't me" page shows of the sign-in it is about."""

    device: str
    ip: str
    when: str


class DeviceNotices:
    """Records where sessions open, mails new-device notices, and spends their links."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        mailer: Mailer,
        clock: Callable[[], float],
        *,
        forget: Callable[..., None] = lambda *ids: None,
    ) -> None:
        self.settings = settings
        self.db = database
        self.mailer = mailer
        self.clock = clock
        # Its own salt: no other signed value of Latch's (a flow cookie, a magic link) can
        # pass for a notice's token, nor the other way round.
        signing = crypto.Keys.from_secret(settings.secret_key).signing
        self._signer = ValueSigner(signing, "latch.notice")
        self._hash_key = crypto.derive_subkey(settings.secret_key, "notice-link-hash")
        # Drops revoked sessions from /auth/check's cache (signin/sessions.py) at once.
        self.forget = forget

    def _hash(self, notice_id: str, secret: str) -> str:
        return crypto.keyed_hash(self._hash_key, notice_id, secret)

    async def session_opened(self, auth: Authenticated, *, ip: str, user_agent: str) -> None:
        """Called once a session exists. Never fails the sign-in it follows: a notice that
        cannot be recorded or queued is logged and dropped."""
        try:
            await self._session_opened(auth, ip, user_agent)
        except (ServiceError, OSError) as e:
            log.warning("notice.skipped session=%s: %s", auth.session_id[:8], type(e).__name__)

    async def _session_opened(self, auth: Authenticated, ip: str, user_agent: str) -> None:
        now = int(self.clock())
        notice_id, secret = crypto.new_id(), crypto.new_secret()
        seen = Seen(
            user_id=auth.user_id,
            session_id=auth.session_id,
            device=device_name(user_agent),
            network=network_of(ip),
            ip=ip,
        )
        new = NewNotice(
            id=notice_id,
            link_hash=self._hash(notice_id, secret),
            expires_at=now + NOTICE_LINK_TTL,
        )
        to = await self.db.run(devices.record_sign_in(seen, new, now))
        if to is None:
            return
        token = self._signer.dumps(f"{notice_id}.{secret}")
        notice = Notice(
            kind=NoticeKind.NEW_DEVICE,
            to=to,
            ref=notice_id,
            expires_at=now + NOTICE_LINK_TTL,
            context={
                "when": when(now),
                "device": describe_device(user_agent),
                "ip": ip,
                "link": f"{self.settings.public_url}{NOT_ME_PATH}?t={token}",
                "link_days": str(NOTICE_LINK_TTL // 86400),
            },
        )
        self.mailer.notify(notice)
        log.info("notice.new_device notice=%s user=%s", notice_id[:8], auth.user_id[:8])

    def _read(self, token: str) -> tuple[str, str]:
        """(notice id, secret hash) of a genuine token; every forgery reads 'invalid link'."""
        # The signature outlives the row's expiry by a day, so an old link reads "expired"
        # (from the row) rather than "invalid".
        value = self._signer.loads(token, max_age=NOTICE_LINK_TTL + 86400)
        notice_id, dot, secret = (value or "").partition(".")
        if not dot or not notice_id or not secret:
            raise InvalidLinkError()
        return notice_id, self._hash(notice_id, secret)

    async def peek(self, token: str) -> NoticeView:
        """What the link's GET shows; changes nothing."""
        notice_id, link_hash = self._read(token)
        now = int(self.clock())
        state, row = await self.db.run(devices.peek_notice(notice_id, link_hash, now), write=False)
        _refuse(state)
        return NoticeView(
            device=describe_device_name(row["device"]), ip=row["ip"], when=when(row["created_at"])
        )

    async def use(self, token: str, *, everywhere: bool, ip: str = "", user_agent: str = "") -> int:
        """Spend the link: sign out that session (or every session); how many ended."""
        notice_id, link_hash = self._read(token)
        done = await self.db.run(
            devices.use_notice(
                notice_id,
                link_hash,
                everywhere=everywhere,
                actor=Actor("anonymous", ip, user_agent),  # the link is the credential
                now=int(self.clock()),
            )
        )
        _refuse(done.state)
        self.forget(*done.ended)
        log.info(
            "session.revoked by=notice notice=%s user=%s count=%d",
            notice_id[:8],
            done.user_id[:8],
            len(done.ended),
        )
        return len(done.ended)


def describe_device_name(name: str) -> str:
    """A stored device name (service/device.py's words, or '') for a sentence."""
    return name or describe_device("")


def _refuse(state: NoticeState) -> None:
    if state is NoticeState.USED:
        raise FlowUsedError("This link has already been used.")
    if state is NoticeState.EXPIRED:
        raise FlowExpiredError("This link has expired.")
    if state is NoticeState.INVALID:
        raise InvalidLinkError()
