"""The sign-in use cases of service/signin/flows.py on their own: start, resend, verify a code,
verify a link. No HTTP: the app's Login on a real SQLite file, mail kept by a recording
transport, codes from an injected generator, time from an injected clock."""

from __future__ import annotations

import logging

import pytest

from service.errors import (
    FlowExpiredError,
    FlowUsedError,
    InvalidCodeError,
    InvalidLinkError,
    InvalidRequestError,
)
from service.signin.access import Authenticated
from service.web.state import AppState
from tests.conftest import (
    Codes,
    FakeClock,
    RecordingTransport,
    SettingsFactory,
    mail_code,
    mail_token,
)
from tests.support.usecases import CALLER, authenticated, mail_to, run_use_cases

EMAIL = "ada@example.com"


def test_start_mails_the_generated_code_and_a_link_to_the_same_flow(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    codes = Codes()

    async def scenario(state: AppState) -> None:
        started = await state.login.start(email=EMAIL, next_url="/account", **CALLER)
        message = await mail_to(transport, EMAIL)
        assert mail_code(message) == codes.made[0]
        flow_id, _ = state.login.links.loads(mail_token(message), max_age=600)
        assert flow_id == started.flow_id
        assert state.bindings.flow_of(started.flow_cookie) == started.flow_id
        assert started.expires_in == state.settings.signin.code_ttl

    run_use_cases(make_settings(), transport, clock, scenario, new_code=codes)


def test_start_refuses_an_address_that_is_not_one_plain_address_and_mails_nothing(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> None:
        for hostile in ("a@example.com, b@example.com", "Ada <ada@example.com>", "not-an-address"):
            with pytest.raises(InvalidRequestError):
                await state.login.start(email=hostile, next_url="/account", **CALLER)

    run_use_cases(make_settings(), transport, clock, scenario)
    assert transport.messages == []


def test_verify_code_signs_in_and_the_next_sign_in_finds_the_same_user(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def sign_in(state: AppState, index: int) -> Authenticated:
        started = await state.login.start(email=EMAIL, next_url="/x", **CALLER)
        code = mail_code(await mail_to(transport, EMAIL, index))
        return authenticated(
            await state.login.verify_code(flow_id=started.flow_id, code=code, **CALLER)
        )

    async def scenario(state: AppState) -> None:
        first = await sign_in(state, 0)
        second = await sign_in(state, 1)
        assert (first.email, first.next_url) == (EMAIL, "/x")
        assert second.user_id == first.user_id
        assert second.session_id != first.session_id
        s = state.settings
        claims = state.keyring.verify(
            first.access_token,
            issuer=s.public_url,
            audience=s.tokens.audience,
            max_lifetime=s.sessions.access_ttl,
        )
        assert (claims.sub, claims.sid) == (first.user_id, first.session_id)

    run_use_cases(make_settings(), transport, clock, scenario)


def test_wrong_code_is_refused_with_the_tries_left_and_a_used_code_cannot_sign_in_twice(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    codes = Codes()
    wrong = "999999"

    async def scenario(state: AppState) -> None:
        started = await state.login.start(email=EMAIL, next_url="/account", **CALLER)
        with pytest.raises(InvalidCodeError) as refused:
            await state.login.verify_code(flow_id=started.flow_id, code=wrong, **CALLER)
        assert refused.value.tries_left == 4
        await state.login.verify_code(flow_id=started.flow_id, code=codes.made[0], **CALLER)
        with pytest.raises(FlowUsedError):
            await state.login.verify_code(flow_id=started.flow_id, code=codes.made[0], **CALLER)

    run_use_cases(make_settings(), transport, clock, scenario, new_code=codes)
    assert wrong not in codes.made


def test_code_past_its_lifetime_is_refused_as_expired(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    codes = Codes()

    async def scenario(state: AppState) -> None:
        started = await state.login.start(email=EMAIL, next_url="/account", **CALLER)
        clock.advance(state.settings.signin.code_ttl + 1)
        with pytest.raises(FlowExpiredError):
            await state.login.verify_code(flow_id=started.flow_id, code=codes.made[0], **CALLER)

    run_use_cases(make_settings(), transport, clock, scenario, new_code=codes)


def test_resend_mails_a_new_code_and_link_and_the_old_ones_stop_working(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    codes = Codes()

    async def scenario(state: AppState) -> None:
        started = await state.login.start(email=EMAIL, next_url="/account", **CALLER)
        old_token = mail_token(await mail_to(transport, EMAIL))
        resent = await state.login.resend(flow_id=started.flow_id)
        message = await mail_to(transport, EMAIL, 1)
        assert resent.flow_id == started.flow_id
        old_code, new_code = codes.made
        assert mail_code(message) == new_code != old_code
        with pytest.raises(InvalidCodeError):
            await state.login.verify_code(flow_id=started.flow_id, code=old_code, **CALLER)
        with pytest.raises(InvalidLinkError):
            await state.login.verify_link(token=old_token, browser_flow_id=None, **CALLER)
        done = authenticated(
            await state.login.verify_code(flow_id=started.flow_id, code=new_code, **CALLER)
        )
        assert done.email == EMAIL

    run_use_cases(make_settings(), transport, clock, scenario, new_code=codes)


def test_verify_link_signs_in_once_and_a_second_use_is_refused(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> None:
        await state.login.start(email=EMAIL, next_url="/next", **CALLER)
        token = mail_token(await mail_to(transport, EMAIL))
        view = await state.login.peek_link(token)
        assert view.state == "pending"  # looking at a link consumes nothing
        done = authenticated(
            await state.login.verify_link(token=token, browser_flow_id=None, **CALLER)
        )
        assert (done.email, done.next_url) == (EMAIL, "/next")
        with pytest.raises(FlowUsedError):
            await state.login.verify_link(token=token, browser_flow_id=None, **CALLER)

    run_use_cases(make_settings(), transport, clock, scenario)


def test_forged_link_is_refused_by_its_signature_with_the_reason_logged(
    make_settings: SettingsFactory,
    transport: RecordingTransport,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="latch.flows")

    async def scenario(state: AppState) -> None:
        await state.login.start(email=EMAIL, next_url="/account", **CALLER)
        token = mail_token(await mail_to(transport, EMAIL))
        body, signature = token.rsplit(".", 1)
        forged = body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
        with pytest.raises(InvalidLinkError):
            await state.login.verify_link(token=forged, browser_flow_id=None, **CALLER)

    run_use_cases(make_settings(), transport, clock, scenario)
    reasons = [r.getMessage() for r in caplog.records if r.getMessage().startswith("link ")]
    assert reasons == ["link refused: BadTimeSignature"]


def test_same_browser_setting_refuses_a_link_opened_in_another_browser(
    make_settings: SettingsFactory, transport: RecordingTransport, clock: FakeClock
) -> None:
    async def scenario(state: AppState) -> None:
        started = await state.login.start(email=EMAIL, next_url="/account", **CALLER)
        token = mail_token(await mail_to(transport, EMAIL))
        with pytest.raises(InvalidLinkError, match="browser where you asked"):
            await state.login.verify_link(token=token, browser_flow_id=None, **CALLER)
        done = authenticated(
            await state.login.verify_link(token=token, browser_flow_id=started.flow_id, **CALLER)
        )
        assert done.email == EMAIL

    run_use_cases(make_settings(LINK_SAME_BROWSER="true"), transport, clock, scenario)
