"""The refresh use case of service/signin/refresh.py on its own: rotation, the grace for two
tabs, reuse detection, idle expiry. No HTTP: the app's Refresher on a real SQLite file."""

from __future__ import annotations

import pytest

from service.signin.access import Authenticated
from service.signin.refresh import RefreshRefusedError
from service.web.state import AppState
from tests.conftest import FakeClock, RecordingTransport, SettingsFactory, mail_code
from tests.support.usecases import CALLER, authenticated, mail_to, run_use_cases

EMAIL = "erin@example.com"


async def _signed_in(state: AppState, transport: RecordingTransport) -> Authenticated:
    started = await state.login.start(email=EMAIL, next_url="/account", **CALLER)
    code = mail_code(await mail_to(transport, EMAIL))
    return authenticated(
        await state.login.verify_code(flow_id=started.flow_id, code=code, **CALLER)
    )


def test_refresh_rotates_the_token_and_keeps_the_session(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> None:
        signed_in = await _signed_in(state, transport)
        first = await state.refresher.refresh(signed_in.refresh_token)
        second = await state.refresher.refresh(first.refresh_token)
        tokens = {signed_in.refresh_token, first.refresh_token, second.refresh_token}
        assert len(tokens) == 3
        assert {first.session_id, second.session_id} == {signed_in.session_id}
        assert first.user_id == signed_in.user_id and first.email == EMAIL
        assert first.access_token != signed_in.access_token

    run_use_cases(make_settings(), transport, clock, scenario)


def test_two_tabs_refreshing_with_one_token_within_the_grace_get_the_same_successor(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> None:
        signed_in = await _signed_in(state, transport)
        one = await state.refresher.refresh(signed_in.refresh_token)
        clock.advance(state.settings.sessions.refresh_grace - 1)
        other = await state.refresher.refresh(signed_in.refresh_token)
        assert other.refresh_token == one.refresh_token
        assert (await state.refresher.refresh(one.refresh_token)).session_id == one.session_id

    run_use_cases(make_settings(), transport, clock, scenario)


def test_replayed_token_after_the_grace_revokes_the_session(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> None:
        signed_in = await _signed_in(state, transport)
        rotated = await state.refresher.refresh(signed_in.refresh_token)
        clock.advance(state.settings.sessions.refresh_grace + 1)
        with pytest.raises(RefreshRefusedError) as theft:
            await state.refresher.refresh(signed_in.refresh_token)
        assert theft.value.revoked == signed_in.session_id
        # The session is gone: the thief's token and the owner's current one both stop.
        with pytest.raises(RefreshRefusedError):
            await state.refresher.refresh(rotated.refresh_token)

    run_use_cases(make_settings(), transport, clock, scenario)


@pytest.mark.parametrize("token", ["", "short", "x" * 43, "not/base64url-at-all-but-long"])
def test_unknown_or_malformed_token_is_refused_and_revokes_nothing(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock, token: str
) -> None:
    async def scenario(state: AppState) -> None:
        signed_in = await _signed_in(state, transport)
        with pytest.raises(RefreshRefusedError) as refused:
            await state.refresher.refresh(token)
        assert refused.value.revoked is None
        assert (await state.refresher.refresh(signed_in.refresh_token)).user_id == signed_in.user_id

    run_use_cases(make_settings(), transport, clock, scenario)


def test_session_idle_past_its_idle_lifetime_cannot_refresh(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> None:
        signed_in = await _signed_in(state, transport)
        clock.advance(state.settings.sessions.idle_ttl + 1)
        with pytest.raises(RefreshRefusedError) as refused:
            await state.refresher.refresh(signed_in.refresh_token)
        assert refused.value.revoked is None

    run_use_cases(make_settings(), transport, clock, scenario)
