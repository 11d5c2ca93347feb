"""An app with an admin key: `admin` is a TestClient that sends it; `latch` one that does not."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from starlette.testclient import TestClient

from service import crypto, db, store
from service.accounts.operator import new_admin_key
from service.store import admin as admin_store
from tests.conftest import ClientFactory, FakeClock
from tests.support.db import run_on

KEY_NAME = "ops"


@dataclass
class Admin:
    """A running app, its database URL and a live admin key."""

    client: TestClient
    url: str
    key: str

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}


def add_key(url: str, name: str, now: int) -> str:
    """A new admin key stored straight in the database (as `admin-keys create` does)."""
    key = new_admin_key()
    made = run_on(
        url,
        admin_store.add_admin_key(
            crypto.new_id(), name, crypto.sha256_hex(key), actor=store.CLI, now=now
        ),
    )
    assert made
    return key


@pytest.fixture
def admin(make_client: ClientFactory, database_url: str, clock: FakeClock) -> Iterator[Admin]:
    run_on(database_url, db.migrate(int(clock())))
    key = add_key(database_url, KEY_NAME, int(clock()))
    with make_client(database_url=database_url) as client:
        yield Admin(client, database_url, key)
