"""The admin API: admin keys, every endpoint as /openapi.json describes it, disabling users,
cursor pagination, and every call in the audit log under the key's name."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import httpx2
import jsonschema_rs
import pytest

from service import crypto, db, store
from service.admin.openapi import PATHS
from service.errors import CHALLENGE
from service.store import admin as admin_store
from tests.admin.conftest import KEY_NAME, Admin, add_key
from tests.conftest import ClientFactory, FakeClock, RecordingTransport, mail_code, sign_in
from tests.support.db import run_on
from tests.support.wait import eventually
from tests.support.web import sign_in_html

EMAIL = "morgan@example.com"


def _concrete(path: str) -> str:
    return re.sub(r"\{[a-z_]+\}", "x" * 32, path)


OPERATIONS = [(m.upper(), p) for p, ops in PATHS.items() for m in ops]


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_admin_endpoint_refuses_no_key_a_wrong_key_and_a_revoked_key(
    admin: Admin, clock: FakeClock, method: str, path: str
) -> None:
    revoked = add_key(admin.url, "gone", int(clock()))
    assert run_on(admin.url, admin_store.revoke_admin_key("gone", actor=store.CLI, now=1))
    refused = f'{CHALLENGE}, error="invalid_token"'
    for headers, challenge in (
        ({}, CHALLENGE),
        (admin.headers("latch_admin_" + "A" * 43), refused),
        (admin.headers(admin.key[:-1] + ("B" if admin.key[-1] != "B" else "C")), refused),
        (admin.headers(revoked), refused),
        ({"Authorization": admin.key}, CHALLENGE),  # not a bearer credential: none was sent
    ):
        response = admin.client.request(method, _concrete(path), headers=headers, json={})
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthenticated"
        assert response.headers["www-authenticate"] == challenge, headers


def test_an_unknown_admin_path_is_a_json_404(admin: Admin) -> None:
    response = admin.client.get("/admin/api/nothing", headers=admin.headers())
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


class Conformance:
    """Calls the admin API and checks each answer against /openapi.json."""

    def __init__(self, admin: Admin) -> None:
        self.admin = admin
        self.spec = admin.client.get("/openapi.json").json()
        self.seen: set[tuple[str, str]] = set()

    def call(self, method: str, template: str, status: int, **kwargs: Any) -> Any:
        path = template
        for name, value in kwargs.pop("path_params", {}).items():
            path = path.replace("{" + name + "}", value)
        response: httpx2.Response = self.admin.client.request(
            method, path, headers=self.admin.headers(), **kwargs
        )
        assert response.status_code == status, response.text
        documented = self.spec["paths"][template][method.lower()]["responses"]
        assert str(status) in documented, (method, template, status)
        self.seen.add((method, template))
        content = documented[str(status)].get("content")
        if content is None:
            assert not response.content
            return None
        schema = {**content["application/json"]["schema"], "components": self.spec["components"]}
        body = response.json()
        jsonschema_rs.validator_for(schema).validate(body)
        return body


def test_every_admin_endpoint_answers_as_the_openapi_document_describes(
    admin: Admin, transport: RecordingTransport
) -> None:
    api = Conformance(admin)
    signed = sign_in(admin.client, transport, EMAIL)
    uid = {"user_id": signed["user"]["id"]}
    users = api.call("GET", "/admin/api/users", 200, params={"email": "morgan"})
    assert [u["email"] for u in users["users"]] == [EMAIL] and users["next_cursor"] is None
    made = api.call("POST", "/admin/api/users", 201, json={"email": "new@example.com"})
    assert made["email"] == "new@example.com" and made["last_login_at"] is None
    api.call("POST", "/admin/api/users", 200, json={"email": "new@example.com"})
    api.call("POST", "/admin/api/users", 400, json={"email": "not an address"})
    api.call("POST", "/admin/api/users", 415, content=b"email=x")
    assert (
        api.call("GET", "/admin/api/users/{user_id}", 200, path_params=uid)["id"] == uid["user_id"]
    )
    api.call("GET", "/admin/api/users/{user_id}", 404, path_params={"user_id": "0" * 32})
    sessions = api.call("GET", "/admin/api/users/{user_id}/sessions", 200, path_params=uid)
    assert [s["id"] for s in sessions["sessions"]] == [signed["session"]["id"]]
    revoked = api.call("DELETE", "/admin/api/users/{user_id}/sessions", 200, path_params=uid)
    assert revoked == {"revoked": [signed["session"]["id"]]}
    api.call("DELETE", "/admin/api/users/{user_id}/factors", 200, path_params=uid)
    assert api.call("POST", "/admin/api/users/{user_id}/disable", 200, path_params=uid)["disabled"]
    assert not api.call("POST", "/admin/api/users/{user_id}/enable", 200, path_params=uid)[
        "disabled"
    ]
    page = api.call("GET", "/admin/api/audit", 200, params={"user_id": uid["user_id"]})
    assert {e["event"] for e in page["events"]} >= {"user.created", "login.succeeded"}
    api.call("GET", "/admin/api/audit", 400, params={"limit": "0"})
    hook = api.call(
        "POST",
        "/admin/api/webhooks",
        201,
        json={"url": "http://127.0.0.1:9/hook", "events": ["login.succeeded"]},
    )
    assert hook["secret"].startswith("whsec_")
    wid = {"webhook_id": hook["id"]}
    api.call("POST", "/admin/api/webhooks", 400, json={"url": "ftp://x", "events": ["x"]})
    listed = api.call("GET", "/admin/api/webhooks", 200)
    assert [w["id"] for w in listed["webhooks"]] == [hook["id"]]
    assert "secret" not in listed["webhooks"][0]
    assert api.call("GET", "/admin/api/webhooks/{webhook_id}", 200, path_params=wid)["url"]
    api.call("GET", "/admin/api/webhooks/{webhook_id}/deliveries", 200, path_params=wid)
    api.call("DELETE", "/admin/api/webhooks/{webhook_id}", 204, path_params=wid)
    api.call("GET", "/admin/api/webhooks/{webhook_id}", 404, path_params=wid)
    api.call("DELETE", "/admin/api/users/{user_id}", 204, path_params=uid)
    api.call("DELETE", "/admin/api/users/{user_id}", 404, path_params=uid)
    assert api.seen == set(OPERATIONS)


def test_every_admin_call_is_recorded_with_the_keys_name(admin: Admin) -> None:
    made = admin.client.post(
        "/admin/api/users", headers=admin.headers(), json={"email": EMAIL}
    ).json()
    for path in ("disable", "enable", "disable"):
        admin.client.post(f"/admin/api/users/{made['id']}/{path}", headers=admin.headers())
    admin.client.get("/admin/api/users", headers=admin.headers())
    admin.client.delete(f"/admin/api/users/{made['id']}", headers=admin.headers())
    events = run_on(admin.url, store.list_events(limit=100))
    mine = [e for e in events if e["actor"] == f"admin:{KEY_NAME}"]
    assert Counter(e["event"] for e in mine) == {
        "user.created": 1,
        "user.disabled": 2,
        "user.enabled": 1,
        "admin.read": 1,
        "user.deleted": 1,
    }
    assert all(e["ip"] == "testclient" for e in mine)
    # The deleted user's events stay, without the address.
    assert EMAIL not in repr([e for e in events if e["user_id"] == made["id"]])


def test_admin_keys_and_webhook_endpoints_are_audited_once_each(
    admin: Admin, clock: FakeClock
) -> None:
    other = add_key(admin.url, "second-bot", int(clock()))
    made = admin.client.post(
        "/admin/api/webhooks",
        headers=admin.headers(),
        json={"url": "http://127.0.0.1:9/hook", "events": ["login.succeeded"]},
    ).json()
    gone = admin.client.delete(f"/admin/api/webhooks/{made['id']}", headers=admin.headers())
    assert gone.status_code == 204
    assert run_on(
        admin.url, admin_store.revoke_admin_key("second-bot", actor=store.CLI, now=int(clock()))
    )
    events = run_on(admin.url, store.list_events(limit=100))
    counted = Counter((e["event"], e["actor"]) for e in events)
    assert counted[("admin_key.created", "cli")] == 2  # the fixture's key and this one
    assert counted[("admin_key.revoked", "cli")] == 1
    assert counted[("webhook.created", f"admin:{KEY_NAME}")] == 1
    assert counted[("webhook.deleted", f"admin:{KEY_NAME}")] == 1
    # Neither the keys nor the endpoint's signing secret reach the log.
    for secret in (admin.key, other, made["secret"]):
        assert secret not in repr(events)


def test_disabling_a_user_ends_their_sessions_and_refuses_sign_in_and_refresh(
    admin: Admin, make_client: ClientFactory, transport: RecordingTransport
) -> None:
    person = admin.client
    signed = sign_in(person, transport, EMAIL)
    access, refresh = person.cookies["latch_session"], person.cookies["latch_refresh"]
    # A second instance on the same database, whose session cache already holds the session.
    with make_client(database_url=admin.url) as other:
        check = {"Cookie": f"latch_session={access}"}
        assert other.get("/auth/check", headers=check).status_code == 200
        disabled = person.post(
            f"/admin/api/users/{signed['user']['id']}/disable", headers=admin.headers()
        )
        assert disabled.status_code == 200 and disabled.json()["disabled"]
        person.cookies.clear()
        # This instance drops it at once; the other within its one-second staleness.
        assert person.get("/auth/check", headers=check).status_code == 401
        eventually(
            lambda: other.get("/auth/check", headers=check).status_code == 401,
            "the other instance to refuse the disabled user's session",
        )
    again = person.post("/api/refresh", json={}, headers={"Cookie": f"latch_refresh={refresh}"})
    assert again.status_code == 401
    person.cookies.clear()
    refused = person.post("/api/start", json={"email": EMAIL})
    code = _code(transport, 1)
    answer = person.post("/api/verify", json={"flow_id": refused.json()["flow_id"], "code": code})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "account_disabled"
    assert "latch_session" not in answer.cookies
    person.post(f"/admin/api/users/{signed['user']['id']}/enable", headers=admin.headers())
    person.cookies.clear()
    assert sign_in(person, transport, EMAIL)["user"]["id"] == signed["user"]["id"]


def _code(transport: RecordingTransport, index: int) -> str:
    return mail_code(transport.wait_for(EMAIL, index=index))


def _users(n: int, now: int) -> db.UseCase[None]:
    for i in range(n):
        email = f"user{i:03d}@example.com"
        yield db.Q(
            "INSERT INTO users (id, email, email_key, created_at) VALUES (:id, :e, :e, :now)",
            {"id": crypto.new_id(), "e": email, "now": now},
        )


def test_cursor_pagination_over_250_users_visits_each_once(admin: Admin, clock: FakeClock) -> None:
    run_on(admin.url, _users(250, int(clock())))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "40", **({"cursor": cursor} if cursor else {})}
        body = admin.client.get("/admin/api/users", params=params, headers=admin.headers()).json()
        seen.extend(u["email"] for u in body["users"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 7
    assert len(seen) == 250 and set(seen) == {f"user{i:03d}@example.com" for i in range(250)}
    # A search pages the same way.
    found = admin.client.get(
        "/admin/api/users", params={"email": "user1", "limit": "200"}, headers=admin.headers()
    ).json()
    assert len(found["users"]) == 100 and found["next_cursor"] is None


def test_a_disabled_user_is_told_so_on_the_code_page_and_offered_no_form(
    admin: Admin, transport: RecordingTransport
) -> None:
    made = admin.client.post(
        "/admin/api/users", headers=admin.headers(), json={"email": EMAIL}
    ).json()
    admin.client.post(f"/admin/api/users/{made['id']}/disable", headers=admin.headers())
    page = sign_in_html(admin.client, transport, EMAIL)
    assert page.status_code == 403
    assert "has been disabled" in page.text and 'name="code"' not in page.text
    assert "latch_session" not in page.cookies
