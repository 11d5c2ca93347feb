"""The second step of a sign-in over HTTP (docs/design.md §11): JSON and pages.

The factor is tests/support/factors.py's TestTotp, registered through create_app as the factor
features will register theirs: no second factor ships yet, so the tests bring their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service.app import create_app
from service.db import UseCase, open_database
from service.settings import load_settings
from service.verifier import (
    InsufficientAssuranceError,
    InvalidTokenError,
    LatchAuthMiddleware,
    Verifier,
)
from service.web.state import app_state_of
from tests.conftest import (
    BASE_URL,
    TEST_ENV,
    FakeClock,
    RecordingTransport,
    SettingsFactory,
    mail_code,
    mail_token,
    sign_in,
    start,
)
from tests.support.factors import TestTotp, give_second_factors
from tests.support.net import HOST, free_port
from tests.support.server import ThreadedServer
from tests.support.web import csrf_of, post_form

EMAIL = "dana@example.com"
SIGNIN = "latch_signin"


class Rig:
    """A running Latch with the test factor registered, and the person's browser."""

    def __init__(self, client: TestClient, totp: TestTotp, transport: RecordingTransport) -> None:
        self.client, self.totp, self.transport = client, totp, transport

    def run(self, use_case: UseCase[Any]) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(app_state_of(self.client).database.run, use_case)

    def enrol(self, email: str = EMAIL, methods: str = "totp") -> str:
        clock = app_state_of(self.client).clock
        user_id: str = self.run(give_second_factors(email, methods, int(clock())))
        self.totp.enrol(user_id)
        return user_id

    def code(self, user_id: str) -> str:
        return self.totp.code(user_id, app_state_of(self.client).clock())

    def first_step(self, email: str = EMAIL) -> httpx2.Response:
        """Start and verify the mailed code through the JSON API."""
        before = len([m for m in self.transport.messages if m["To"] == email])
        flow = start(self.client, email, next="/account")
        code = mail_code(self.transport.wait_for(email, index=before))
        return self.client.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})

    def answer(self, code: str, method: str = "totp") -> httpx2.Response:
        return self.client.post("/api/second-factor", json={"method": method, "code": code})


@pytest.fixture
def make_rig(
    make_settings: SettingsFactory, clock: FakeClock, transport: RecordingTransport
) -> Iterator[Any]:
    @contextmanager
    def make(**env: str) -> Iterator[Rig]:
        totp = TestTotp()
        app = create_app(
            make_settings(**env), mail_transport=transport, clock=clock, second_factors=[totp]
        )
        with TestClient(app, base_url=BASE_URL) as client:
            yield Rig(client, totp, transport)

    yield make


@pytest.fixture
def rig(make_rig: Any) -> Iterator[Rig]:
    with make_rig() as r:
        yield r


def set_cookies(response: httpx2.Response) -> dict[str, str]:
    """Set-Cookie headers by cookie name."""
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def claims_of(client: TestClient) -> dict[str, Any]:
    token = client.cookies.get("latch_session")
    assert token
    return jwt.decode(token, options={"verify_signature": False})


# --- JSON ----------------------------------------------------------------------------------------


def test_verify_answers_next_step_with_only_the_signin_cookie(rig: Rig) -> None:
    rig.enrol()
    response = rig.first_step()
    assert response.status_code == 200
    assert response.json() == {"next_step": "second_factor", "methods": ["totp"]}
    cookies = set_cookies(response)
    assert "latch_session" not in cookies and "latch_refresh" not in cookies
    signin = cookies[SIGNIN].lower()
    assert "httponly" in signin and "samesite=lax" in signin and "max-age=300" in signin
    assert "path=/" in signin
    assert 'latch_flow=""' in cookies["latch_flow"]  # the flow is consumed: its cookie goes


def test_link_answers_next_step_too(rig: Rig) -> None:
    rig.enrol()
    start(rig.client, EMAIL)
    token = mail_token(rig.transport.wait_for(EMAIL))
    response = rig.client.post("/api/link", json={"token": token})
    assert response.status_code == 200
    assert response.json() == {"next_step": "second_factor", "methods": ["totp"]}
    assert "latch_session" not in set_cookies(response) and SIGNIN in rig.client.cookies


def test_signin_cookie_alone_is_refused_everywhere(rig: Rig) -> None:
    rig.enrol()
    assert rig.first_step().status_code == 200
    assert set(rig.client.cookies.keys()) <= {SIGNIN, "latch_csrf"}
    assert rig.client.get("/auth/check").status_code == 401
    assert rig.client.get("/api/session").status_code == 401
    assert rig.client.get("/api/sessions").status_code == 401
    assert rig.client.post("/api/refresh", json={}).status_code == 401
    account = rig.client.get("/account", follow_redirects=False)
    assert account.status_code == 303 and account.headers["location"].startswith("/login")


def test_second_factor_answers_as_verify_did(rig: Rig) -> None:
    user_id = rig.enrol()
    rig.first_step()
    response = rig.answer(rig.code(user_id))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"user", "session"}
    assert body["user"] == {"id": user_id, "email": EMAIL}
    cookies = set_cookies(response)
    assert {"latch_session", "latch_refresh"} <= set(cookies)
    assert f'{SIGNIN}=""' in cookies[SIGNIN]
    check = rig.client.get("/auth/check")
    assert check.status_code == 200
    assert check.headers["x-latch-aal"] == "2" and check.headers["x-latch-user"] == user_id
    claims = claims_of(rig.client)
    assert claims["amr"] == ["email", "otp", "mfa"] and claims["acr"] == "aal2"
    assert rig.client.get("/api/session").json() == body


def test_refresh_keeps_amr_acr_and_auth_time(rig: Rig, clock: FakeClock) -> None:
    user_id = rig.enrol()
    rig.first_step()
    assert rig.answer(rig.code(user_id)).status_code == 200
    before = claims_of(rig.client)
    clock.advance(120)
    assert rig.client.post("/api/refresh", json={}).status_code == 200
    after = claims_of(rig.client)
    assert after["jti"] != before["jti"]
    keep = ("amr", "acr", "auth_time")
    assert {k: after[k] for k in keep} == {k: before[k] for k in keep}
    assert rig.client.get("/auth/check").headers["x-latch-aal"] == "2"


def test_email_alone_is_aal1_everywhere(rig: Rig) -> None:
    sign_in(rig.client, rig.transport, EMAIL)
    assert rig.client.get("/auth/check").headers["x-latch-aal"] == "1"
    claims = claims_of(rig.client)
    assert claims["amr"] == ["email"] and claims["acr"] == "aal1"
    assert isinstance(claims["auth_time"], int)


def test_five_wrong_answers_end_the_pending_signin(rig: Rig) -> None:
    user_id = rig.enrol()
    rig.first_step()
    for left in (4, 3, 2, 1, 0):
        wrong = rig.answer("nope")
        assert wrong.status_code == 400
        assert wrong.json()["error"]["code"] == "invalid_code"
        assert wrong.json()["error"]["tries_left"] == left
    dead = rig.answer(rig.code(user_id))
    assert dead.status_code == 410 and dead.json()["error"]["code"] == "flow_dead"
    assert f'{SIGNIN}=""' in set_cookies(dead)[SIGNIN]
    assert "latch_session" not in rig.client.cookies


def test_pending_signin_expires_after_five_minutes(rig: Rig, clock: FakeClock) -> None:
    user_id = rig.enrol()
    rig.first_step()
    clock.advance(301)
    expired = rig.answer(rig.code(user_id))
    assert expired.status_code == 410
    assert expired.json()["error"]["code"] == "signin_expired"


def test_second_factor_without_the_cookie_is_signin_expired(rig: Rig) -> None:
    response = rig.answer("123456")
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "signin_expired"


def test_method_nobody_registered_is_a_clear_400(rig: Rig) -> None:
    # Recovery codes and TOTP ship now; a method no feature registers is still refused.
    rig.enrol(methods="smoke_signal")
    assert rig.first_step().json() == {"next_step": "second_factor", "methods": ["smoke_signal"]}
    response = rig.answer("abcde-fghij", method="smoke_signal")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert response.json()["error"]["field"] == "method"


@pytest.mark.parametrize("body", [{}, {"method": "totp"}, {"method": 1, "code": "1"}])
def test_second_factor_with_a_bad_body_is_a_400(rig: Rig, body: dict[str, Any]) -> None:
    rig.enrol()
    rig.first_step()
    response = rig.client.post("/api/second-factor", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"


def test_second_step_works_on_both_backends(make_rig: Any, database_url: str) -> None:
    with make_rig(DATABASE_URL=database_url) as rig:
        user_id = rig.enrol()
        assert rig.first_step().json()["next_step"] == "second_factor"
        assert rig.answer("nope").status_code == 400
        done = rig.answer(rig.code(user_id))
        assert done.status_code == 200, done.text
        assert rig.answer(rig.code(user_id)).status_code == 410  # the cookie was cleared
        assert rig.client.get("/auth/check").headers["x-latch-aal"] == "2"


def test_openapi_declares_the_second_step(rig: Rig) -> None:
    spec = rig.client.get("/openapi.json").json()
    assert "/api/second-factor" in spec["paths"]
    verify = spec["paths"]["/api/verify"]["post"]["responses"]["200"]
    schema = verify["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/SecondStepDue"} in schema["oneOf"]
    codes = spec["components"]["schemas"]["LatchError"]["properties"]["error"]["properties"]["code"]
    assert "signin_expired" in codes["enum"]


# --- pages ---------------------------------------------------------------------------------------


def _code_form(rig: Rig, email: str = EMAIL, next_url: str = "/account") -> httpx2.Response:
    page = rig.client.get("/login")
    post_form(rig.client, "/login", {"email": email, "next": next_url}, token=csrf_of(page))
    code_page = rig.client.get("/login/code")
    code = mail_code(rig.transport.wait_for(email))
    return post_form(rig.client, "/login/code", {"code": code}, token=csrf_of(code_page))


def test_code_form_goes_on_to_the_second_factor_page(rig: Rig) -> None:
    user_id = rig.enrol(methods="totp recovery_code")
    done = _code_form(rig)
    assert done.status_code == 303 and done.headers["location"] == "/login/second-factor"
    assert "latch_session" not in set_cookies(done) and SIGNIN in set_cookies(done)
    page = rig.client.get("/login/second-factor")
    assert page.status_code == 200
    assert 'autocomplete="one-time-code"' in page.text and 'inputmode="numeric"' in page.text
    assert "authenticator" in page.text
    assert 'href="/login/second-factor?method=recovery_code"' in page.text
    assert "Use a recovery code instead" in page.text
    right = post_form(
        rig.client,
        "/login/second-factor",
        {"method": "totp", "code": rig.code(user_id)},
        token=csrf_of(page),
    )
    assert right.status_code == 303 and right.headers["location"] == "/account"
    assert {"latch_session", "latch_refresh"} <= set(set_cookies(right))
    assert rig.client.get("/account").status_code == 200


def test_second_factor_page_says_which_method(rig: Rig) -> None:
    rig.enrol(methods="totp recovery_code")
    _code_form(rig)
    page = rig.client.get("/login/second-factor?method=recovery_code")
    assert "Enter a recovery code" in page.text
    assert 'name="method" value="recovery_code"' in page.text
    assert "Use your authenticator app instead" in page.text
    only_totp = rig.client.get("/login/second-factor?method=sms")
    assert 'name="method" value="totp"' in only_totp.text


def test_second_factor_page_without_recovery_codes_offers_none(rig: Rig) -> None:
    rig.enrol()
    _code_form(rig)
    page = rig.client.get("/login/second-factor")
    assert "recovery code" not in page.text.lower()


def test_wrong_answer_on_the_page_says_tries_left_then_ends(rig: Rig) -> None:
    rig.enrol()
    _code_form(rig)
    page = rig.client.get("/login/second-factor")
    token = csrf_of(page)
    wrong = post_form(
        rig.client, "/login/second-factor", {"method": "totp", "code": "1"}, token=token
    )
    assert wrong.status_code == 400 and "4 tries left" in wrong.text
    for _ in range(4):
        last = post_form(
            rig.client, "/login/second-factor", {"method": "totp", "code": "1"}, token=token
        )
    assert last.status_code == 410 and "Too many wrong answers" in last.text
    assert f'{SIGNIN}=""' in set_cookies(last)[SIGNIN]


def test_second_factor_page_without_a_pending_signin_says_start_again(rig: Rig) -> None:
    page = rig.client.get("/login/second-factor")
    assert page.status_code == 410 and "Start again" in page.text


def test_link_form_goes_on_to_the_second_factor_page(rig: Rig) -> None:
    rig.enrol()
    start(rig.client, EMAIL)
    token = mail_token(rig.transport.wait_for(EMAIL))
    link_page = rig.client.get(f"/login/link?t={token}")
    done = post_form(rig.client, "/login/link", {"t": token}, token=csrf_of(link_page))
    assert done.status_code == 303 and done.headers["location"] == "/login/second-factor"
    assert "latch_session" not in set_cookies(done)


# --- service/verifier.py: assurance ---------------------------------------------------------------


@dataclass
class Served:
    """Latch on a loopback port with the test factor, and two genuine access tokens."""

    url: str
    aal1: str
    aal2: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    url = f"http://{HOST}:{port}"
    data_dir = tmp_path_factory.mktemp("latch") / "data"
    settings = load_settings({**TEST_ENV, "DATA_DIR": str(data_dir), "PUBLIC_URL": url})
    transport, clock, totp = RecordingTransport(), FakeClock(), TestTotp()
    app = create_app(settings, mail_transport=transport, clock=clock, second_factors=[totp])
    with ThreadedServer(app, port):
        database_url = settings.storage.resolved_database_url
        user_id = run_on(
            database_url, give_second_factors("erin@example.com", "totp", int(clock()))
        )
        totp.enrol(user_id)
        tokens = []
        for email in ("fay@example.com", "erin@example.com"):
            with httpx.Client(base_url=url, timeout=10) as browser:
                flow = browser.post("/api/start", json={"email": email}).json()
                code = mail_code(transport.wait_for(email))
                done = browser.post("/api/verify", json={"flow_id": flow["flow_id"], "code": code})
                if "next_step" in done.json():
                    answer = {"method": "totp", "code": totp.code(user_id, clock())}
                    done = browser.post("/api/second-factor", json=answer)
                assert done.status_code == 200, done.text
                tokens.append(browser.cookies["latch_session"])
        yield Served(url, tokens[0], tokens[1])


def run_on(url: str, use_case: UseCase[Any]) -> Any:
    """One use case on its own connection to the database (as another process would)."""

    async def main() -> Any:
        database = open_database(url)
        await database.connect()
        try:
            return await database.run(use_case)
        finally:
            await database.disconnect()

    return asyncio.run(main())


def verifier_of(served: Served, **kw: Any) -> Verifier:
    return Verifier(
        issuer=served.url, audience=served.url, jwks_url=f"{served.url}/.well-known/jwks.json", **kw
    )


def test_verifier_exposes_amr_acr_and_auth_time(served: Served) -> None:
    verifier = verifier_of(served)
    strong, weak = verifier.verify(served.aal2), verifier.verify(served.aal1)
    assert (strong.amr, strong.acr, strong.aal) == (("email", "otp", "mfa"), "aal2", 2)
    assert (weak.amr, weak.acr, weak.aal) == (("email",), "aal1", 1)
    assert isinstance(strong.auth_time, int) and isinstance(weak.auth_time, int)


def test_verifier_requiring_aal2_refuses_an_aal1_token_with_its_own_error(served: Served) -> None:
    verifier = verifier_of(served, require_aal=2)
    assert verifier.verify(served.aal2).aal == 2
    for _ in range(2):  # the second answer comes from the cache, and is refused as well
        with pytest.raises(InsufficientAssuranceError):
            verifier.verify(served.aal1)
    assert issubclass(InsufficientAssuranceError, InvalidTokenError)  # catching that refuses


def _service(verifier: Verifier) -> Starlette:
    async def whoami(request: Request) -> Response:
        return JSONResponse({"aal": request.state.latch.aal})

    return Starlette(
        routes=[Route("/page", whoami), Route("/api/me", whoami)],
        middleware=[
            Middleware(
                LatchAuthMiddleware,
                verifier=verifier,
                login_url="https://login.example.com/login",
                refresh_url="https://login.example.com/refresh",
            )
        ],
    )


def test_middleware_requiring_aal2_sends_browsers_to_step_up(served: Served) -> None:
    service = _service(verifier_of(served, require_aal=2))
    with TestClient(service, base_url="https://app.example.com") as app:
        app.cookies.set("latch_session", served.aal1)
        answer = app.get("/page?x=1", headers={"Accept": "text/html"}, follow_redirects=False)
        app.cookies.set("latch_session", served.aal2)
        passed = app.get("/page")
    assert answer.status_code == 303
    target = httpx.URL(answer.headers["location"])
    assert str(target.copy_with(query=None)) == "https://login.example.com/login/step-up"
    assert target.params["next"] == "https://app.example.com/page?x=1"
    assert passed.status_code == 200 and passed.json() == {"aal": 2}


def test_middleware_requiring_aal2_answers_api_calls_403_step_up_required(served: Served) -> None:
    service = _service(verifier_of(served, require_aal=2))
    with TestClient(service, base_url="https://app.example.com") as app:
        answer = app.get("/api/me", headers={"Authorization": f"Bearer {served.aal1}"})
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "step_up_required"
    challenge = answer.headers["www-authenticate"]
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'acr_values="aal2"' in challenge
