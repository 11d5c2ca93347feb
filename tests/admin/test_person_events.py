"""The person's side in the audit log and the webhook outbox (docs/design.md §14): second factors,
failed and passed steps, new-device notices, OpenID consents, a change of address and a deletion,
each recorded by the transaction that did it; the operator's factor reset and deletion clear the
same rows as the person's own."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from service import store
from service.db import Q, Row, UseCase
from service.store.factors import FACTOR_TABLES
from tests.admin.conftest import Admin
from tests.api.test_account import KEPT, NOT_PERSONAL, factor_and_app, two_devices
from tests.api.test_factors import answer, code_now, enrol, first_step
from tests.conftest import FakeClock, RecordingTransport, mail_code, sign_in, text_of
from tests.oidc.test_consent import decide, to_consent
from tests.pages.test_account_address import ask, confirm
from tests.support.db import run_on
from tests.support.oidc import register
from tests.support.web import csrf_of, sign_in_html

EMAIL = "ada@example.com"  # the address tests/api/test_account.py's helpers sign in
NEW = "ada.lovelace@example.com"
# The operator's own tables: they hold nothing of a person (the outbox is checked on its own).
OPERATOR = {"admin_keys", "webhook_endpoints", "webhook_outbox", "webhook_attempts"}


def _select(sql: str) -> UseCase[list[Row]]:
    found: list[Row] = yield Q(sql)
    return found


def query(admin: Admin, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` read through a connection of its own, on either backend."""
    return [tuple(row.values()) for row in run_on(admin.url, _select(sql))]


def tables(admin: Admin) -> list[str]:
    """Every table of the schema, whichever the backend."""
    if admin.url.startswith("postgresql"):
        sql = (
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    return [str(name) for (name,) in query(admin, sql)]


def hook_everything(admin: Admin) -> str:
    """A webhook endpoint subscribed to every webhook event; its id."""
    made = admin.client.post(
        "/admin/api/webhooks",
        headers=admin.headers(),
        json={"url": "http://127.0.0.1:9/hook", "events": [str(e) for e in store.WEBHOOK_EVENTS]},
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def events(admin: Admin, user_id: str) -> list[dict[str, Any]]:
    """The user's audit events, oldest first, through the admin API."""
    page = admin.client.get(
        "/admin/api/audit", headers=admin.headers(), params={"user_id": user_id, "limit": "200"}
    )
    assert page.status_code == 200, page.text
    found: list[dict[str, Any]] = page.json()["events"]
    return found[::-1]


def named(found: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [e for e in found if e["event"] == event]


def outbox(admin: Admin) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(event, user_id, payload) of every message in the outbox."""
    return [
        (event, user_id, json.loads(payload))
        for event, user_id, payload in query(
            admin, "SELECT event, user_id, payload FROM webhook_outbox ORDER BY id"
        )
    ]


def test_factors_steps_notices_and_consents_are_audited_and_sent(
    admin: Admin, transport: RecordingTransport, clock: FakeClock
) -> None:
    client = admin.client
    hook_everything(admin)
    two_devices(client, transport)  # the phone's sign-in gets a new-device notice
    user_id = client.get("/api/session").json()["user"]["id"]
    secret, _ = enrol(client, clock)
    app, app_secret = register(client, name="Wiki")
    decide(client, to_consent(client, transport, app), "allow")
    assert client.post("/api/factors/recovery-codes", json={}).status_code == 200
    wrong = "000000" if code_now(secret, clock) != "000000" else "111111"
    assert client.post("/api/step-up", json={"method": "totp", "code": wrong}).status_code == 400
    right = client.post("/api/step-up", json={"method": "totp", "code": code_now(secret, clock)})
    assert right.status_code == 200, right.text
    account = client.get("/account")
    removed = client.post(
        f"/account/apps/{app.id}/revoke", data={"csrf": csrf_of(account)}, follow_redirects=False
    )
    assert removed.status_code == 303
    assert client.request("DELETE", "/api/factors/totp").status_code == 204
    # The phone's notice: "This wasn't me" signs that session out (the link is the credential).
    links = [re.search(r"not-me\?t=(\S+)", text_of(m)) for m in transport.messages]
    token = next(link.group(1) for link in links if link)
    page = client.get("/account/not-me", params={"t": token})
    form = {"csrf": csrf_of(page), "t": token}
    assert client.post("/account/not-me", data=form).status_code == 200

    found = events(admin, user_id)
    kinds = [e["event"] for e in found]
    for kind in (
        "notice.new_device",
        "factor.added",
        "consent.granted",
        "recovery_codes.replaced",
        "step_up.failed",
        "step_up.passed",
        "consent.revoked",
        "factor.removed",
    ):
        assert kinds.count(kind) == 1, (kind, kinds)
    assert kinds.index("step_up.failed") < kinds.index("step_up.passed")
    assert named(found, "factor.added")[0]["details"] == {
        "method": "totp",
        "recovery_codes_issued": True,
    }
    # The last factor takes its recovery codes with it, and the event says both went.
    assert named(found, "factor.removed")[0]["details"] == {
        "methods": ["totp", "recovery_code"],
        "reason": "user",
    }
    assert named(found, "consent.granted")[0]["details"]["client_id"] == app.id
    assert named(found, "consent.revoked")[0]["details"]["client_id"] == app.id
    notice = named(found, "notice.new_device")[0]
    assert notice["actor"] == "system" and notice["details"]["device"]
    not_me = [e for e in named(found, "session.revoked") if e["details"]["reason"] == "not_me"]
    assert len(not_me) == 1 and not_me[0]["actor"] == "anonymous"
    assert not_me[0]["details"]["session_ids"] == [notice["details"]["session_id"]]
    # The person's own changes name them, from their client.
    for kind in ("factor.added", "step_up.passed", "factor.removed", "consent.granted"):
        event = named(found, kind)[0]
        assert event["actor"] == "user" and event["ip"] and event["user_agent"], event
    # Neither the address nor a code, secret or token in the log.
    text = json.dumps(found)
    for secret_or_address in (EMAIL, secret, app_secret or EMAIL):
        assert secret_or_address not in text
    # Factor changes are webhook events; steps, notices and consents are the log's alone.
    sent = [event for event, uid, _ in outbox(admin) if uid == user_id]
    assert sent.count("factor.added") == 1 and sent.count("factor.removed") == 1
    assert not {"step_up.passed", "notice.new_device", "consent.granted"} & set(sent)


def test_a_wrong_second_factor_and_a_recovery_code_are_audited(
    admin: Admin, transport: RecordingTransport, clock: FakeClock
) -> None:
    client = admin.client
    hook_everything(admin)
    user_id = sign_in(client, transport, EMAIL)["user"]["id"]
    secret, codes = enrol(client, clock)
    assert first_step(client, transport, EMAIL).json()["next_step"] == "second_factor"
    wrong = "000000" if code_now(secret, clock) != "000000" else "111111"
    assert answer(client, wrong).status_code == 400
    assert answer(client, codes[0], "recovery_code").status_code == 200

    found = events(admin, user_id)
    failed = named(found, "login.failed")
    assert len(failed) == 1
    assert failed[0]["details"]["reason"] == "wrong_second_factor"
    assert failed[0]["details"]["method"] == "totp" and failed[0]["details"]["tries_left"] == 4
    assert failed[0]["ip"] and failed[0]["actor"] == "anonymous"
    used = named(found, "recovery_code.used")[0]
    assert used["details"] == {"left": 9}
    # Spent by a client not yet signed in: audited with that client's IP and agent, as the
    # failed answer is.
    assert used["actor"] == "anonymous" and used["ip"] == failed[0]["ip"] and used["user_agent"]
    # The sign-in the recovery code finished, after the code was spent.
    kinds = [e["event"] for e in found]
    assert kinds.index("recovery_code.used") < len(kinds) - 1 - kinds[::-1].index("login.succeeded")
    sent = [(event, payload) for event, uid, payload in outbox(admin) if uid == user_id]
    assert [p["data"]["reason"] for e, p in sent if e == "login.failed"] == ["wrong_second_factor"]


def test_a_change_of_address_is_audited_without_addresses_and_sent_with_the_new_one(
    admin: Admin, transport: RecordingTransport
) -> None:
    client = admin.client
    hook_everything(admin)
    sign_in_html(client, transport, EMAIL)
    user_id = client.get("/api/session").json()["user"]["id"]
    assert ask(client, NEW).status_code == 303
    assert confirm(client, mail_code(transport.wait_for(NEW))).status_code == 303

    changed = named(events(admin, user_id), "email.changed")
    assert len(changed) == 1 and changed[0]["actor"] == "user"
    assert changed[0]["details"]["by"] == "code"
    assert NEW not in json.dumps(changed) and EMAIL not in json.dumps(changed)
    sent = [p for e, uid, p in outbox(admin) if e == "email.changed" and uid == user_id]
    assert [p["data"]["email"] for p in sent] == [NEW]


def test_an_operator_reset_clears_the_factor_tables(
    admin: Admin, transport: RecordingTransport, clock: FakeClock
) -> None:
    client = admin.client
    user_id = sign_in(client, transport, EMAIL)["user"]["id"]
    enrol(client, clock)
    assert query(admin, "SELECT COUNT(*) AS n FROM totp_factors") == [(1,)]
    assert query(admin, "SELECT COUNT(*) AS n FROM recovery_codes") == [(10,)]
    reset = client.delete(f"/admin/api/users/{user_id}/factors", headers=admin.headers())
    assert reset.status_code == 200
    assert reset.json() == {"removed": ["totp", "recovery_code"]}
    for table in FACTOR_TABLES:
        assert query(admin, f"SELECT COUNT(*) AS n FROM {table}") == [(0,)], table
    assert query(admin, "SELECT second_factors FROM users") == [("",)]
    # The email step alone signs in again; a second reset finds nothing to remove.
    assert first_step(client, transport, EMAIL).json()["user"]["id"] == user_id
    again = client.delete(f"/admin/api/users/{user_id}/factors", headers=admin.headers())
    assert again.json() == {"removed": []}
    reasons = [e["details"] for e in named(events(admin, user_id), "factor.removed")]
    assert reasons == [{"methods": ["totp", "recovery_code"], "reason": "admin_reset"}]


@pytest.mark.parametrize("by", ["person", "operator"])
def test_a_deletion_by_the_person_or_an_operator_leaves_the_same_nothing(
    admin: Admin, transport: RecordingTransport, clock: FakeClock, by: str
) -> None:
    client = admin.client
    hook_everything(admin)
    two_devices(client, transport)
    factor_and_app(client, transport, clock)
    user_id = client.get("/api/session").json()["user"]["id"]
    assert [p for _, uid, p in outbox(admin) if uid == user_id and "email" in p["data"]]
    if by == "person":
        gone = client.request("DELETE", "/api/account", json={"confirm": EMAIL})
    else:
        gone = client.delete(f"/admin/api/users/{user_id}", headers=admin.headers())
    assert gone.status_code == 204, gone.text
    for table in tables(admin):
        if table not in NOT_PERSONAL | KEPT | OPERATOR:
            assert query(admin, f"SELECT * FROM {table}") == [], table
    # The events stay, the address nowhere: not in the log, not in any webhook message.
    deleted = named(events(admin, user_id), "user.deleted")
    assert len(deleted) == 1
    assert deleted[0]["actor"] == ("user" if by == "person" else "admin:ops")
    assert deleted[0]["details"] == {"sessions_ended": 2}
    assert EMAIL not in json.dumps(query(admin, "SELECT * FROM audit_events"))
    messages = outbox(admin)
    assert ("user.deleted", user_id) in [(e, uid) for e, uid, _ in messages]
    assert EMAIL not in json.dumps(messages)
