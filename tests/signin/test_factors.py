"""Second-factor use cases without HTTP, on SQLite and PostgreSQL: one code, one success,
however many requests race with it; the secret sealed at rest."""

from __future__ import annotations

import asyncio

from service import crypto, store
from service.addresses import parse_email
from service.db import Q, Rows, UseCase
from service.web.state import AppState
from tests.conftest import FakeClock, RecordingTransport, SettingsFactory
from tests.support.otp import oathtool
from tests.support.usecases import run_use_cases

EMAIL = "frank@example.com"
RACERS = 20


async def _enrolled(state: AppState, now: int) -> tuple[str, str]:
    """A user with a confirmed authenticator whose last accepted step is the one before now:
    (user id, secret)."""
    address, key = parse_email(EMAIL, ())
    user, _ = await state.database.run(store.add_user(crypto.new_id(), address, key, now))
    user_id = str(user["id"])
    enrolment = await state.account_factors.totp.begin(user_id, address, now)
    assert enrolment is not None
    previous = oathtool(enrolment.secret, now - 30)
    step = await state.account_factors.totp.pending_step(user_id, previous, now, since=now - 600)
    assert step == now // 30 - 1
    issued = await state.database.run(
        store.confirm_totp(
            user_id, step=step, since=now - 600, recovery_hashes=(), actor=store.CLI, now=now
        )
    )
    assert issued is not None
    return user_id, enrolment.secret


def test_twenty_racing_checks_of_one_code_accept_exactly_one(
    make_settings: SettingsFactory,
    transport: RecordingTransport,
    clock: FakeClock,
    database_url: str,
) -> None:
    async def scenario(state: AppState) -> list[bool]:
        now = int(clock())
        user_id, secret = await _enrolled(state, now)
        code = oathtool(secret, now)
        totp = state.account_factors.totp
        return list(await asyncio.gather(*(totp.check(user_id, code, now) for _ in range(RACERS))))

    settings = make_settings(DATABASE_URL=database_url)
    results = run_use_cases(settings, transport, clock, scenario)
    assert results.count(True) == 1


def test_twenty_racing_uses_of_one_recovery_code_accept_exactly_one(
    make_settings: SettingsFactory,
    transport: RecordingTransport,
    clock: FakeClock,
    database_url: str,
) -> None:
    async def scenario(state: AppState) -> tuple[list[bool], int]:
        now = int(clock())
        user_id, _ = await _enrolled(state, now)
        recovery = state.account_factors.recovery
        codes = await recovery.regenerate(user_id, now, actor=store.CLI)
        assert codes is not None
        results = await asyncio.gather(
            *(recovery.check(user_id, codes[0], now) for _ in range(RACERS))
        )
        summary = await state.database.run(store.factor_summary(user_id))
        return list(results), summary.recovery_left

    settings = make_settings(DATABASE_URL=database_url)
    results, left = run_use_cases(settings, transport, clock, scenario)
    assert results.count(True) == 1 and left == 9


def test_the_stored_secret_is_sealed_and_bound_to_its_user(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> None:
        now = int(clock())
        user_id, secret = await _enrolled(state, now)
        rows = await state.database.run(_sealed_of(user_id), write=False)
        sealed = rows[0]["sealed_secret"]
        assert secret not in sealed and sealed.startswith(crypto.SEALED_PREFIX)
        key = crypto.Keys.from_secret(state.settings.secret_key).totp_seal
        assert crypto.unseal(key, sealed, user_id) == secret.encode()

    run_use_cases(make_settings(), transport, clock, scenario)


def _sealed_of(user_id: str) -> UseCase[Rows]:
    rows = yield Q("SELECT sealed_secret FROM totp_factors WHERE user_id = :u", {"u": user_id})
    return rows
