"""Users: found by address key, created by sign-in or by the operator."""

from __future__ import annotations

from service.db import Q, Row, UseCase, address_lock, replayable


def find_user(email_key: str) -> UseCase[Row | None]:
    """A user by address key."""
    rows = yield Q(
        "SELECT id, email, created_at, last_login_at FROM users WHERE email_key = :k",
        {"k": email_key},
    )
    return rows[0] if rows else None


@replayable
def add_user(user_id: str, email: str, email_key: str, now: int) -> UseCase[tuple[Row, bool]]:
    """Create a user (operator CLI); returns (user, created)."""
    # Under the address lock, like a sign-in that may create the same user: without it the
    # two could both find no user and one INSERT would fail on the unique email_key.
    yield address_lock(email_key)
    existing = yield from find_user(email_key)
    if existing is not None:
        return existing, False
    rows = yield Q(
        "INSERT INTO users (id, email, email_key, created_at, last_login_at)"
        " VALUES (:id, :email, :k, :now, NULL) RETURNING id, email, created_at, last_login_at",
        {"id": user_id, "email": email, "k": email_key, "now": now},
    )
    return rows[0], True
