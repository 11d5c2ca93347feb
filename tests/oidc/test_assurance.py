"""An app that demands a second factor (`require_second_factor`, or `acr_values=aal2`) sends a
one-factor session through the sign-in again, second step included (docs/design.md §11, §13);
a person with no second factor is told so, not sent round in a loop."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest
from starlette.testclient import TestClient

from service.app import create_app
from service.web.state import app_state_of
from tests.conftest import BASE_URL, FakeClock, RecordingTransport, SettingsFactory
from tests.support.factors import TestTotp, give_second_factors
from tests.support.oidc import (
    app_target,
    auth_params,
    exchange,
    query_of,
    register,
    sign_in_through_pages,
)
from tests.support.web import csrf_of

EMAIL = "tove@example.com"


@pytest.fixture
def totp() -> TestTotp:
    return TestTotp()


@pytest.fixture
def browser(
    make_settings: SettingsFactory,
    clock: FakeClock,
    transport: RecordingTransport,
    totp: TestTotp,
) -> Iterator[TestClient]:
    app = create_app(make_settings(), mail_transport=transport, clock=clock, second_factors=[totp])
    with TestClient(app, base_url=BASE_URL) as client:
        yield client


def sign_in_one_factor(browser: TestClient, transport: RecordingTransport) -> None:
    """An email-only session, made through a first-party app that asks for nothing more."""
    plain, _ = register(browser, first_party=True, name="Plain")
    answer = browser.get("/oauth/authorize", params=auth_params(plain), follow_redirects=False)
    sign_in_through_pages(browser, transport, answer.headers["location"], EMAIL)


def test_app_demanding_aal2_takes_a_one_factor_session_through_the_second_step(
    browser: TestClient, transport: RecordingTransport, totp: TestTotp, clock: FakeClock
) -> None:
    sign_in_one_factor(browser, transport)
    # The person enrols a second factor after signing in: their session stays one-factor.
    assert browser.portal is not None
    database = app_state_of(browser).database
    user_id = browser.portal.call(database.run, give_second_factors(EMAIL, "totp", int(clock())))
    totp.enrol(user_id)
    strict, secret = register(browser, first_party=True, require_second_factor=True)
    answer = browser.get("/oauth/authorize", params=auth_params(strict), follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?")
    first = sign_in_through_pages(browser, transport, answer.headers["location"], EMAIL)
    # The code passed the first step; the pages ask for the second before going back.
    assert first.status_code == 303 or "second-factor" in first.text
    step = browser.get("/login/second-factor")
    done = browser.post(
        "/login/second-factor",
        data={"method": "totp", "code": totp.code(user_id, clock()), "csrf": csrf_of(step)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:300]
    back = browser.get(done.headers["location"], follow_redirects=False)
    code = query_of(app_target(back))["code"]
    body = exchange(browser, strict, secret, code).json()
    claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert claims["acr"] == "aal2" and "mfa" in claims["amr"]


def test_acr_values_aal2_without_a_second_factor_is_unmet_not_a_loop(
    browser: TestClient, transport: RecordingTransport
) -> None:
    client, _ = register(browser, first_party=True)
    params = auth_params(client, acr_values="aal2")
    answer = browser.get("/oauth/authorize", params=params, follow_redirects=False)
    back = sign_in_through_pages(browser, transport, answer.headers["location"], EMAIL)
    assert query_of(app_target(back))["error"] == "unmet_authentication_requirements"
