"""Recovery codes: the way back in when the phone is lost (docs/design.md §11).

Ten codes of ten characters from a 32-letter alphabet without look-alikes (Crockford's base32,
lower case: no i, l, o or u), 50 bits each, shown once as `xxxxx-xxxxx`. Only keyed hashes are
stored (HMAC with their own subkey of SECRET_KEY, over the user id and the code): 50 bits and
five tries a sign-in leave nothing to gain from a slow hash. Each works once; regenerating
replaces all of them; a sign-in with one mails the person and says how many are left.
"""

from __future__ import annotations

import logging
import re
import secrets

from service import crypto, store
from service.db import Database
from service.delivery.notices import Notice, Notices
from service.settings import Settings
from service.signin.assurance import Method

log = logging.getLogger("latch.factors")
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
LENGTH = 10
COUNT = 10
# Crockford's decoding: what people mistype for a letter that is not in the alphabet.
_READ_AS = str.maketrans({"i": "1", "l": "1", "o": "0"})
_SEPARATORS = re.compile(r"[\s\-]+")


def new_codes() -> list[str]:
    """Ten fresh codes, each `xxxxx-xxxxx`, all different."""
    codes: set[str] = set()
    while len(codes) < COUNT:
        raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        codes.add(f"{raw[:5]}-{raw[5:]}")
    return sorted(codes)


def normalise(answer: str) -> str | None:
    """The ten characters of a code as typed (any case, with or without the dash, i/l/o read
    as 1/1/0); None when it cannot be a code."""
    raw = _SEPARATORS.sub("", answer).lower().translate(_READ_AS)
    if len(raw) != LENGTH or any(c not in ALPHABET for c in raw):
        return None
    return raw


class RecoveryCodes:
    """Issuing, regenerating and spending recovery codes; also the sign-in's
    `recovery_code` step."""

    method = store.RECOVERY_CODE
    amr = (Method.RC,)

    def __init__(self, settings: Settings, database: Database, notices: Notices) -> None:
        self.db = database
        self.notices = notices
        self.key = crypto.Keys.from_secret(settings.secret_key).recovery

    def hashes(self, user_id: str, codes: list[str]) -> tuple[str, ...]:
        """The keyed hashes to store for these codes."""
        return tuple(self.hash(user_id, normalise(c) or "") for c in codes)

    def hash(self, user_id: str, normalised: str) -> str:
        """The keyed hash of one normalised code."""
        return crypto.keyed_hash(self.key, user_id, normalised)

    async def regenerate(self, user_id: str, now: int, *, actor: store.Actor) -> list[str] | None:
        """Replace every code; the new ones (shown once), or None when the user has no factor
        for them to stand in for."""
        codes = new_codes()
        if not await self.db.run(
            store.replace_recovery_codes(user_id, self.hashes(user_id, codes), now, actor=actor)
        ):
            return None
        log.info("factor.recovery_codes_regenerated user=%s", user_id[:8])
        return codes

    async def check(
        self, user_id: str, answer: str, now: int, *, actor: store.Actor = store.ANONYMOUS
    ) -> bool:
        """Spend the code if it is one of the user's unused ones (SecondFactor); the person
        is mailed how many are left. The audit event names `actor` (the client and its IP)."""
        code = normalise(answer)
        if code is None:
            return False
        left = await self.db.run(
            store.use_recovery_code(user_id, self.hash(user_id, code), now, actor=actor)
        )
        if left is None:
            return False
        log.info("factor.recovery_code_used user=%s left=%d", user_id[:8], left)
        email = await self.db.run(store.user_email(user_id), write=False)
        if email:
            self.notices.send(Notice(kind="recovery_code_used", to=email, left=left))
        return True
