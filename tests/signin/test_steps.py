"""A sign-in is a sequence of steps (docs/design.md §11), at the use-case level: no HTTP, a real
SQLite file, the app's recording transport, the injected clock.

The second factor is tests/support/factors.py's TestTotp: no factor ships yet, so these tests
register one of their own to prove the machinery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest

from service import db, store
from service.crypto import Keys
from service.db import Q, UseCase
from service.db.sqlite import SQLiteDatabase
from service.delivery.mail import Mailer
from service.errors import (
    FlowDeadError,
    FlowUsedError,
    InvalidCodeError,
    InvalidRequestError,
    SigninExpiredError,
)
from service.settings import Settings
from service.signin.access import Authenticated
from service.signin.flows import SecondStepDue
from service.signin.wiring import Signin, build_signin
from service.tokens import Keyring, ensure_key
from tests.conftest import FakeClock, RecordingTransport, SettingsFactory, mail_code, mail_token
from tests.support.factors import TestTotp, give_second_factors

ALICE = "alice@example.com"
BOB = "bob@example.com"
# Steps (SQL statements + advisory locks: each a round trip on PostgreSQL; on SQLite a use case
# is one hop whatever it holds) of a code and of a link verify that opens a session, counted on
# main before sign-in steps existed (d600e72: 8 + 1 lock and 7 + 1 lock; 8 and 6 statements at
# 0841bfe, before the address lock): a pending sign-in must cost no more.
CODE_STEPS = 9
LINK_STEPS = 8
# The audit log (docs/design.md §14) is written in the sign-in's own transaction: the event's
# row and the webhook outbox's INSERT … SELECT, when a session opens (not for a pending sign-in,
# whose event comes with its second step); and as much again when the sign-in creates the user.
AUDIT_STEPS = 2


@dataclass
class Rig:
    """The sign-in collaborators create_app would build, on a SQLite file."""

    signin: Signin
    database: SQLiteDatabase
    transport: RecordingTransport
    clock: FakeClock
    totp: TestTotp
    path: Path

    async def _mail(self, email: str, index: int) -> Any:
        for _ in range(500):  # bounded: the mail task runs on this loop
            mine = [m for m in self.transport.messages if m["To"] == email]
            if len(mine) > index:
                return mine[index]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no mail #{index} to {email}")

    async def enrol(self, email: str) -> str:
        """Give the user the test TOTP factor; returns their id."""
        now = int(self.clock())
        user_id = await self.database.run(give_second_factors(email, "totp", now))
        self.totp.enrol(user_id)
        return user_id

    async def started(self, email: str) -> tuple[str, Any]:
        """Start a flow for `email`; its id and its mail."""
        before = len([m for m in self.transport.messages if m["To"] == email])
        started = await self.signin.login.start(
            email=email, next_url="/next", ip="10.0.0.1", user_agent="t"
        )
        return started.flow_id, await self._mail(email, before)

    async def first_step(self, email: str) -> Authenticated | SecondStepDue:
        """Start a flow and answer it with the mailed code."""
        flow_id, message = await self.started(email)
        return await self.signin.login.verify_code(
            flow_id=flow_id, code=mail_code(message), ip="10.0.0.1", user_agent="t"
        )

    async def second_step_due(self, email: str) -> tuple[str, SecondStepDue]:
        """Enrol `email` in the test TOTP and pass its first step: its user id and the step."""
        user_id = await self.enrol(email)
        due = await self.first_step(email)
        assert isinstance(due, SecondStepDue), due
        return user_id, due

    def right_code(self, user_id: str) -> str:
        """The test TOTP's code for `user_id` now."""
        return self.totp.code(user_id, self.clock())

    def count(self, table: str) -> int:
        """How many rows `table` holds."""
        return int(self.rows(f"SELECT COUNT(*) FROM {table}")[0][0])

    async def answer(self, due: SecondStepDue, answer: str, method: str = "totp") -> Authenticated:
        return await self.signin.steps.answer(
            cookie=due.signin_cookie,
            method=method,
            answer=answer,
            ip="10.0.0.2",
            user_agent="t2",
        )

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the file directly, as an operator would."""
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            return conn.execute(sql).fetchall()


@contextlib.asynccontextmanager
async def rig(
    settings: Settings, transport: RecordingTransport, clock: FakeClock
) -> AsyncIterator[Rig]:
    path = settings.storage.data_dir / "steps.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    database = SQLiteDatabase(str(path))
    await database.connect()
    await database.run(db.migrate(int(clock())))
    ensure_key(settings.tokens.keys_dir, settings.tokens.algorithm)
    keyring = Keyring(
        settings.tokens.keys_dir,
        settings.tokens.algorithm,
        Keys.from_secret(settings.secret_key).jwt_hmac,
    )
    mailer = Mailer(settings, transport, database, clock)
    mailer.start()
    totp = TestTotp()
    try:
        signin = build_signin(settings, database, mailer, keyring, clock, second_factors=[totp])
        yield Rig(signin, database, transport, clock, totp, path)
    finally:
        await mailer.drain(5)
        await database.disconnect()


@pytest.fixture
def run(make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock) -> Any:
    """`run(scenario)`: the async scenario with a fresh rig."""

    def go(scenario: Any) -> Any:
        async def main() -> Any:
            async with rig(make_settings(), transport, clock) as r:
                return await scenario(r)

        return asyncio.run(main())

    return go


def counted(use_case: UseCase[Any], statements: list[str]) -> UseCase[Any]:
    """The same use case, its statements and locks recorded as they are yielded."""
    try:
        step = next(use_case)
        while True:
            statements.append(step.sql if isinstance(step, Q) else f"LOCK {step.key}")
            step = use_case.send((yield step))
    except StopIteration as stop:
        return stop.value


def _claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


# --- the first step ----------------------------------------------------------------------------


async def _counted_verifies(r: Rig, email: str) -> tuple[int, int, list[store.Outcome]]:
    """How many statements a code verify and a link verify of `email` yield, and what they
    decide (each on a flow of its own, through the store use cases the Login runs)."""
    login, now = r.signin.login, int(r.clock())
    counts, outcomes = [], []
    for how in ("code", "link"):
        flow_id, message = await r.started(email)
        session, _ = login.new_session("10.0.0.1", "t")
        if how == "code":
            verify, secret_hash = store.verify_code, login.code_hash(flow_id, mail_code(message))
        else:
            verify, (_, secret_hash) = store.verify_link, login.links.read(mail_token(message))
        use_case = verify(
            flow_id, secret_hash, session=session, limits=login.limits, allow_signup=True, now=now
        )
        statements: list[str] = []
        outcomes.append(await r.database.run(counted(use_case, statements)))
        counts.append(len(statements))
    return counts[0], counts[1], outcomes


def test_verify_without_a_second_factor_takes_the_round_trips_it_took_before(run: Any) -> None:
    async def scenario(r: Rig) -> None:
        new_user = AUDIT_STEPS  # the code verify creates Alice; the link finds her
        for _ in range(2):
            code_n, link_n, outcomes = await _counted_verifies(r, ALICE)
            assert (code_n, link_n) == (
                CODE_STEPS + AUDIT_STEPS + new_user,
                LINK_STEPS + AUDIT_STEPS,
            )
            new_user = 0
            assert all(o.sign_in is not None and o.step is None for o in outcomes)

    run(scenario)


def test_verify_with_a_second_factor_opens_a_pending_signin_in_no_more_round_trips(
    run: Any,
) -> None:
    async def scenario(r: Rig) -> None:
        user_id = await r.enrol(ALICE)
        code_n, link_n, outcomes = await _counted_verifies(r, ALICE)
        # One fewer: the address's wrong-code count is kept until the last step passes (a
        # first step must not wipe the authenticator codes counted against the address).
        assert (code_n, link_n) == (CODE_STEPS - 1, LINK_STEPS - 1)
        for outcome in outcomes:
            assert outcome.state == "ok" and outcome.sign_in is None
            assert outcome.step is not None and outcome.step.methods == ("totp",)
            assert outcome.step.user_id == user_id and outcome.step.amr == ("email",)
        assert r.count("sessions") == 0
        assert (
            r.rows("SELECT user_id, amr, attempts, consumed_at FROM signins")
            == [(user_id, "email", 0, None)] * 2
        )

    run(scenario)


def test_code_and_link_of_a_user_with_a_second_factor_grant_no_session(run: Any) -> None:
    async def scenario(r: Rig) -> None:
        _, due = await r.second_step_due(ALICE)
        assert due.methods == ("totp",) and due.next_url == "/next"
        flow_id, message = await r.started(ALICE)
        by_link = await r.signin.login.verify_link(
            token=mail_token(message), browser_flow_id=None, ip="10.0.0.1", user_agent="t"
        )
        assert isinstance(by_link, SecondStepDue)
        assert by_link.signin_cookie != due.signin_cookie
        assert r.count("sessions") == 0

    run(scenario)


# --- the second step ---------------------------------------------------------------------------


def test_right_second_answer_opens_an_aal2_session_that_records_how(run: Any) -> None:
    async def scenario(r: Rig) -> None:
        user_id, due = await r.second_step_due(ALICE)
        r.clock.advance(40)
        auth = await r.answer(due, r.right_code(user_id))
        assert auth.user_id == user_id and auth.email == ALICE and auth.next_url == "/next"
        assert r.rows("SELECT user_id, aal, amr, auth_time FROM sessions") == [
            (user_id, 2, "email otp mfa", int(r.clock()))
        ]
        claims = _claims(auth.access_token)
        assert claims["amr"] == ["email", "otp", "mfa"]
        assert claims["acr"] == "aal2" and claims["auth_time"] == int(r.clock())
        assert r.rows("SELECT attempts, consumed_at FROM signins") == [(1, int(r.clock()))]

    run(scenario)


def test_email_alone_opens_an_aal1_session(run: Any) -> None:
    async def scenario(r: Rig) -> None:
        auth = await r.first_step(ALICE)
        assert isinstance(auth, Authenticated)
        claims = _claims(auth.access_token)
        assert claims["amr"] == ["email"] and claims["acr"] == "aal1"
        assert claims["auth_time"] == int(r.clock())
        assert r.rows("SELECT aal, amr FROM sessions") == [(1, "email")]

    run(scenario)


def test_two_racing_right_answers_open_exactly_one_session(run: Any) -> None:
    async def scenario(r: Rig) -> None:
        user_id, due = await r.second_step_due(ALICE)
        code = r.right_code(user_id)
        results = await asyncio.gather(
            *(r.answer(due, code) for _ in range(4)), return_exceptions=True
        )
        assert r.totp.checked == 4  # every answer got as far as the factor's check
        won = [x for x in results if isinstance(x, Authenticated)]
        lost = [x for x in results if isinstance(x, FlowUsedError)]
        assert (len(won), len(lost)) == (1, 3), results
        assert r.count("sessions") == 1

    run(scenario)


def test_fifth_wrong_answer_ends_the_pending_signin(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(r: Rig) -> None:
        user_id, due = await r.second_step_due(ALICE)
        left: list[int | None] = []
        for _ in range(5):
            with pytest.raises(InvalidCodeError) as wrong:
                await r.answer(due, "not-a-code")
            left.append(wrong.value.tries_left)
        assert left == [4, 3, 2, 1, 0]
        with caplog.at_level(logging.INFO, "latch.steps"), pytest.raises(FlowDeadError):
            await r.answer(due, r.right_code(user_id))  # even the right one
        assert "step.refused reason=dead" in caplog.text
        assert r.totp.checked == 5
        assert r.count("sessions") == 0

    run(scenario)


def test_pending_signin_expires_after_five_minutes(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(r: Rig) -> None:
        user_id, due = await r.second_step_due(ALICE)
        r.clock.advance(301)
        with caplog.at_level(logging.INFO, "latch.steps"), pytest.raises(SigninExpiredError):
            await r.answer(due, r.right_code(user_id))
        assert "step.refused reason=expired" in caplog.text
        assert r.totp.checked == 0
        purged = await store.purge(r.database, int(r.clock()), 86400)
        assert purged["signins"] == 1

    run(scenario)


def test_cookie_of_one_signin_does_not_advance_another(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(r: Rig) -> None:
        (alice, due_a), (bob, due_b) = await r.second_step_due(ALICE), await r.second_step_due(BOB)
        a_id, a_flow = r.signin.bindings.signin_of(due_a.signin_cookie) or ("", "")
        b_id, b_flow = r.signin.bindings.signin_of(due_b.signin_cookie) or ("", "")
        # Alice's code on Bob's cookie is a wrong answer to Bob's sign-in, nothing more.
        with pytest.raises(InvalidCodeError):
            await r.answer(due_b, r.right_code(alice))
        # A cookie naming Alice's sign-in with Bob's flow (genuinely signed: the binding is
        # checked in the database too) names no pending sign-in.
        crossed = SecondStepDue(("totp",), r.signin.bindings.signin_cookie(a_id, b_flow), "/")
        with caplog.at_level(logging.INFO, "latch.steps"), pytest.raises(SigninExpiredError):
            await r.answer(crossed, r.right_code(alice))
        assert "step.refused reason=not_found" in caplog.text
        # A latch_flow cookie value is signed for another purpose and is refused unread.
        flow_cookie = SecondStepDue(
            ("totp",), r.signin.bindings.flow_cookie(f"{a_id}.{a_flow}"), "/"
        )
        with pytest.raises(SigninExpiredError):
            await r.answer(flow_cookie, r.right_code(alice))
        assert dict(r.rows("SELECT id, attempts FROM signins")) == {a_id: 0, b_id: 1}
        auth = await r.answer(due_b, r.right_code(bob))
        assert auth.user_id == bob

    run(scenario)


def test_method_without_a_registered_factor_is_refused_and_not_counted(
    run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(r: Rig) -> None:
        now = int(r.clock())
        # Recovery codes and TOTP ship now; a method no feature registers is still refused.
        await r.database.run(give_second_factors(ALICE, "smoke_signal", now))
        due = await r.first_step(ALICE)
        assert isinstance(due, SecondStepDue) and due.methods == ("smoke_signal",)
        with caplog.at_level(logging.INFO, "latch.steps"), pytest.raises(InvalidRequestError):
            await r.answer(due, "abcde-fghij", method="smoke_signal")
        assert "step.refused reason=method-not-registered" in caplog.text
        # Nor does a registered method the user does not have open anything.
        with pytest.raises(InvalidRequestError):
            await r.answer(due, "123456", method="totp")
        assert r.count("sessions") == 0

    run(scenario)


def test_refresh_keeps_how_the_session_signed_in(run: Any) -> None:
    async def scenario(r: Rig) -> None:
        user_id, due = await r.second_step_due(ALICE)
        auth = await r.answer(due, r.right_code(user_id))
        first = _claims(auth.access_token)
        r.clock.advance(600)
        again = await r.signin.refresher.refresh(auth.refresh_token)
        claims = _claims(again.access_token)
        assert (claims["amr"], claims["acr"], claims["auth_time"]) == (
            first["amr"],
            first["acr"],
            first["auth_time"],
        )
        assert claims["jti"] != first["jti"]

    run(scenario)
