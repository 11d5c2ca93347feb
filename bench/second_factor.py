"""The second step's load: POST /api/second-factor, each request finishing a sign-in of its own.

A request needs a pending sign-in (its first step passed, its signed `latch_signin` cookie) for
a user with a confirmed authenticator app, and a code the app would show. Every piece is made
by Latch's own code, in the bench's process, against the running Latch's database and with its
SECRET_KEY: the user (`store.add_user`), the app (a secret sealed as `Totp.begin` seals it,
then `store.begin_totp` and `store.confirm_totp`), a login flow (`store.open_flow`) and its
first step (`store.verify_code` with the session `new_session` makes under the server's
REQUIRE_SECOND_FACTOR), which opens the pending sign-in exactly as a verify does; the cookie's
value is `Bindings.signin_cookie`. Nothing is written in hand-made SQL, so the state cannot
drift from what Latch makes and reads.

A code is accepted once per user (the step it belongs to must be later than the last one
accepted), so each request belongs to a user of its own; `second_factor.lua` sends each
"cookie,code" line once, and past the end reuses them on purpose: those answers are errors
in the table (the pending sign-in is used), never a hidden wrap-around.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import pyotp

from bench.load import THREADS, Load
from bench.servers import MailSink, Server
from service import crypto, db, store
from service.crypto import Keys
from service.db import UseCase
from service.settings import Settings, load_settings
from service.signin import totp
from service.signin.bindings import Bindings
from service.signin.opening import new_session
from service.web.cookies import signin_cookie_name

PATH = "/api/second-factor"
# Users made per measured second: above any rate this endpoint reached here (each answer is
# three write transactions, an AES-GCM unseal, three HMACs and a signed JWT), so the lines do
# not run out; if they do, the reused ones show as errors.
PER_SECOND = 1500
MARGIN = 1000
CHUNK = 1000  # users a transaction
IP, USER_AGENT = "127.0.0.1", "wrk"
# A load's codes are accepted for at least 60 s after they are made (see `code`); that must
# cover the load and, for the measured run's codes, the warm-up before it, with room to spare.
MAX_SECONDS = 40.0
FLOW_TTL = 600


@dataclass(frozen=True)
class Enrolled:
    """A bench user with a confirmed authenticator app: the app's secret (the bench plays the
    app), as the person scanned it."""

    user_id: str
    email: str
    secret: str


@dataclass(frozen=True)
class Pending:
    """A pending sign-in of `user` (first step passed): the `latch_signin` cookie's value."""

    user: Enrolled
    cookie: str


def users_for(seconds: float) -> int:
    """How many users a load of `seconds` needs."""
    return int(seconds * PER_SECOND) + MARGIN


def code(secret: str, now: float) -> str:
    """The code an authenticator app shows for the 30-second step after now's.

    Latch accepts a code of the step before, of, or after now (service/signin/totp.py WINDOW),
    so the next step's code is accepted from now until the end of the step after it: for 60 to
    90 seconds, longer than the seeding of the other load, a warm-up and a measured run
    together (the server's work is the same for any of the three steps: it computes all
    three). A code of now's step would leave as little as 30 seconds.
    """
    app = pyotp.TOTP(secret, digits=totp.DIGITS, interval=totp.STEP)
    return str(app.generate_otp(int(now) // totp.STEP + 1))


class Seeder:
    """Makes bench users and their pending sign-ins in a running Latch's database (its
    environment gives the database, the SECRET_KEY and the settings the server runs with)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.settings: Settings = load_settings(env)
        keys = Keys.from_secret(self.settings.secret_key)
        self.seal_key = keys.totp_seal  # what Totp.begin seals with
        self.code_key = keys.code  # what Login.code_hash hashes a flow's code with
        self.link_key = keys.link
        self.bindings = Bindings(keys, self.settings.signin.code_ttl)
        self.database = db.open_database(self.settings.storage.resolved_database_url)

    async def __aenter__(self) -> Self:
        await self.database.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.database.disconnect()

    async def new_users(self, count: int) -> list[Pending]:
        """`count` users, each with a confirmed app and a pending sign-in; CHUNK a transaction."""
        made: list[Pending] = []
        for start in range(0, count, CHUNK):
            now = int(time.time())
            users = [self._new_user() for _ in range(min(CHUNK, count - start))]
            made += await self.database.run(self._seed(users, enrol=True, now=now))
        return made

    async def sign_in_again(self, users: Sequence[Enrolled]) -> list[Pending]:
        """Another pending sign-in (a new first step) for each of these users."""
        return await self.database.run(self._seed(users, enrol=False, now=int(time.time())))

    def _new_user(self) -> Enrolled:
        user_id = crypto.new_id()
        email = f"tf-{user_id[:16]}@bench.example.com"
        return Enrolled(user_id, email, totp.new_secret())

    def _seed(self, users: Iterable[Enrolled], *, enrol: bool, now: int) -> UseCase[list[Pending]]:
        made: list[Pending] = []
        for user in users:
            if enrol:
                yield from self._enrol(user, now)
            made.append((yield from self._first_step(user, now)))
        return made

    def _enrol(self, user: Enrolled, now: int) -> UseCase[None]:
        """The user, and an app confirmed two steps ago: every code from now's step on is
        later than the last step accepted."""
        _, created = yield from store.add_user(user.user_id, user.email, user.email, now)
        sealed = crypto.seal(self.seal_key, user.secret.encode("ascii"), user.user_id)
        begun = yield from store.begin_totp(user.user_id, sealed, now)
        # No recovery codes: the second step with an app never reads them.
        confirmed = yield from store.confirm_totp(
            user.user_id,
            step=now // totp.STEP - 2,
            since=now - 1,
            recovery_hashes=(),
            actor=store.Actor("user", IP, USER_AGENT),
            now=now,
        )
        if not (created and begun and confirmed is not None):
            raise RuntimeError("Latch's store refused to enrol a bench user")

    def _first_step(self, user: Enrolled, now: int) -> UseCase[Pending]:
        """A login flow for the user and its right code: the first step, which opens the
        pending sign-in because the user has an app (as POST /api/verify does)."""
        flow_id, flow_code = crypto.new_id(), crypto.new_code()
        opened = yield from store.open_flow(
            store.NewFlow(
                id=flow_id,
                email=user.email,
                email_key=user.email,  # bench addresses are lowercase ASCII: their own key
                code_hash=crypto.keyed_hash(self.code_key, flow_id, flow_code),
                link_hash=crypto.keyed_hash(self.link_key, flow_id, crypto.new_secret()),
                next_url="/",
                expires_at=now + FLOW_TTL,
                ip=IP,
                user_agent=USER_AGENT,
            ),
            self.settings.limits,
            now,
        )
        if opened.state != "ok":
            raise RuntimeError(f"open_flow refused a bench flow: {opened.state}")
        session, _ = new_session(
            self.settings.sessions,
            now,
            IP,
            USER_AGENT,
            policy=self.settings.factors.require_second_factor,
        )
        verified = yield from store.verify_code(
            flow_id,
            crypto.keyed_hash(self.code_key, flow_id, flow_code),
            session=session,
            limits=self.settings.limits,
            allow_signup=self.settings.signin.allow_signup,
            now=now,
        )
        if verified.step is None or store.TOTP not in verified.step.methods:
            raise RuntimeError(f"the first step opened no second step: {verified.state}")
        return Pending(user, self.bindings.signin_cookie(verified.step.id, flow_id))


def answer(base_url: str, cookie_name: str, pending: Pending, answer_code: str) -> httpx.Response:
    """POST /api/second-factor for a pending sign-in, as a browser's script would."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        return client.post(
            PATH,
            json={"method": store.TOTP, "code": answer_code},
            headers={"Cookie": f"{cookie_name}={pending.cookie}"},
        )


async def _seed(env: Mapping[str, str], count: int) -> list[Pending]:
    async with Seeder(env) as seeder:
        return await seeder.new_users(count)


def prepare(env: Mapping[str, str], base_url: str, count: int) -> list[tuple[Pending, str]]:
    """`count` pending sign-ins with their codes, after one more made the same way was answered
    for real: a refused answer (a cookie or code Latch does not accept) would make every
    request a fast 4xx and the number meaningless, so that fails the bench here, loudly."""
    pending = asyncio.run(_seed(env, count + 1))
    cookie_name = signin_cookie_name(load_settings(env))
    spare = pending.pop()
    tried = answer(base_url, cookie_name, spare, code(spare.user.secret, time.time()))
    if tried.status_code != 200:
        raise RuntimeError(
            f"the prepared second step was refused ({tried.status_code}): {tried.text[:300]}"
        )
    now = time.time()  # the codes last 60-90 s from here (see `code`)
    return [(p, code(p.user.secret, now)) for p in pending]


def second_factor_load(latch: Server, sink: MailSink, work: Path, seconds: float) -> Load:
    """POST /api/second-factor, each request the second step of a sign-in of its own. Called
    once for the warm-up and once for the measured run (a pending sign-in is used once)."""
    if seconds > MAX_SECONDS:
        raise SystemExit(
            f"the second step's codes last 60 s from their preparation: load it for at most"
            f" {MAX_SECONDS:g} s (asked {seconds:g} s)"
        )
    began = time.monotonic()
    prepared = prepare(latch.env, latch.url, users_for(seconds))
    took = time.monotonic() - began
    print(f"prepared {len(prepared)} second steps in {took:.1f} s", flush=True)
    lines = work / f"second-factor-{secrets.token_hex(4)}.txt"
    lines.write_text("".join(f"{p.cookie},{c}\n" for p, c in prepared))
    cookie_name = signin_cookie_name(load_settings(latch.env))
    return Load(
        PATH, script="second_factor.lua", script_args=(str(lines), str(THREADS), cookie_name)
    )
