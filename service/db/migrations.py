"""The schema's versioned migrations, applied at start-up and by `python -m service migrate`."""

from __future__ import annotations

from service.db.protocol import (
    Lock,
    Q,
    UseCase,
    replayable,
)

# Versioned migrations: append, never edit one that has shipped. Portable SQL only:
# TEXT ids, BIGINT epoch seconds, INTEGER 0/1 flags.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "initial schema",
        (
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                email_key TEXT NOT NULL UNIQUE,
                created_at BIGINT NOT NULL,
                last_login_at BIGINT
            )""",
            """CREATE TABLE login_flows (
                id TEXT PRIMARY KEY,
                email TEXT NOT NULL,
                email_key TEXT NOT NULL,
                code_hash TEXT NOT NULL,
                link_hash TEXT NOT NULL,
                next_url TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                consumed_at BIGINT,
                outcome TEXT,
                mail_seq INTEGER NOT NULL DEFAULT 1,
                mail_status TEXT NOT NULL,
                mail_error TEXT,
                mail_at BIGINT NOT NULL,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL
            )""",
            "CREATE INDEX login_flows_email_key ON login_flows (email_key, created_at)",
            "CREATE INDEX login_flows_ip ON login_flows (ip, created_at)",
            "CREATE INDEX login_flows_created ON login_flows (created_at)",
            """CREATE TABLE mail_log (
                flow_id TEXT NOT NULL,
                email_key TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            "CREATE INDEX mail_log_email_key ON mail_log (email_key, created_at)",
            "CREATE INDEX mail_log_created ON mail_log (created_at)",
            """CREATE TABLE address_failures (
                email_key TEXT PRIMARY KEY,
                failures INTEGER NOT NULL,
                locked_until BIGINT NOT NULL DEFAULT 0,
                updated_at BIGINT NOT NULL
            )""",
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                refresh_hash TEXT NOT NULL UNIQUE,
                prev_refresh_hash TEXT,
                rotated_at BIGINT,
                created_at BIGINT NOT NULL,
                last_used_at BIGINT NOT NULL,
                idle_expires_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                revoked_at BIGINT,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL
            )""",
            "CREATE INDEX sessions_user ON sessions (user_id)",
            "CREATE INDEX sessions_prev_refresh ON sessions (prev_refresh_hash)",
            "CREATE INDEX sessions_expires ON sessions (expires_at)",
        ),
    ),
    (
        2,
        "sign-in steps: second factors, pending sign-ins, session assurance",
        (
            # Space-separated second-factor methods ("totp recovery_code"); '' = none. The
            # factor features maintain it, so the sign-in reads it with the user upsert it
            # already makes (no extra statement on the verify path).
            "ALTER TABLE users ADD COLUMN second_factors TEXT NOT NULL DEFAULT ''",
            # How the session was signed in: aal 1|2, amr space-separated (RFC 8176 values),
            # auth_time the moment the last step passed. Older sessions were email-only.
            "ALTER TABLE sessions ADD COLUMN aal INTEGER NOT NULL DEFAULT 1",
            "ALTER TABLE sessions ADD COLUMN amr TEXT NOT NULL DEFAULT 'email'",
            "ALTER TABLE sessions ADD COLUMN auth_time BIGINT NOT NULL DEFAULT 0",
            "UPDATE sessions SET auth_time = created_at",
            # A sign-in whose first step passed and whose next step is due (docs/design.md §11).
            """CREATE TABLE signins (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                flow_id TEXT NOT NULL,
                amr TEXT NOT NULL,
                next_url TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL,
                consumed_at BIGINT
            )""",
            "CREATE INDEX signins_expires ON signins (expires_at)",
            "CREATE INDEX signins_user ON signins (user_id)",
        ),
    ),
    (
        4,
        "the operator's side: audit log, disabled users, admin keys, webhooks and their outbox",
        (
            # Set while an operator has disabled the user: no sign-in, no refresh (§14).
            "ALTER TABLE users ADD COLUMN disabled_at BIGINT",
            # Ids are time-ordered (hex nanoseconds, then random), so "newest first" is the
            # primary key's order and a cursor is the last id seen. No foreign key on
            # user_id: the events outlive the user (a deletion keeps them, address-free).
            """CREATE TABLE audit_events (
                id TEXT PRIMARY KEY,
                at BIGINT NOT NULL,
                event TEXT NOT NULL,
                user_id TEXT,
                actor TEXT NOT NULL,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL,
                details TEXT NOT NULL
            )""",
            "CREATE INDEX audit_events_at ON audit_events (at)",
            "CREATE INDEX audit_events_user ON audit_events (user_id, id)",
            "CREATE INDEX audit_events_event ON audit_events (event, id)",
            # Only a SHA-256 of each key is kept; the key is shown once, at creation.
            """CREATE TABLE admin_keys (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                key_hash TEXT NOT NULL UNIQUE,
                created_at BIGINT NOT NULL,
                last_used_at BIGINT,
                revoked_at BIGINT
            )""",
            # events: space-separated event types; secret: sealed (AES-GCM under a subkey of
            # SECRET_KEY), since signing needs it back.
            """CREATE TABLE webhook_endpoints (
                id TEXT PRIMARY KEY,
                url TEXT NOT NULL,
                events TEXT NOT NULL,
                secret TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                deleted_at BIGINT
            )""",
            # The outbox: one row per (event, endpoint), written in the action's transaction.
            """CREATE TABLE webhook_outbox (
                id TEXT PRIMARY KEY,
                endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
                event TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_at BIGINT NOT NULL,
                lease_until BIGINT NOT NULL DEFAULT 0,
                status TEXT NOT NULL,
                delivered_at BIGINT
            )""",
            "CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_at)",
            "CREATE INDEX webhook_outbox_endpoint ON webhook_outbox (endpoint_id, id)",
            "CREATE INDEX webhook_outbox_created ON webhook_outbox (created_at)",
            """CREATE TABLE webhook_attempts (
                message_id TEXT NOT NULL REFERENCES webhook_outbox (id) ON DELETE CASCADE,
                attempt INTEGER NOT NULL,
                at BIGINT NOT NULL,
                status INTEGER,
                error TEXT,
                PRIMARY KEY (message_id, attempt)
            )""",
        ),
    ),
)


@replayable
def migrate(now: int) -> UseCase[list[int]]:
    """Apply pending migrations in one transaction, under a lock; returns the versions applied."""
    yield Lock("latch.migrate")
    yield Q(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
    )
    rows = yield Q("SELECT version FROM schema_version")
    done = {row["version"] for row in rows}
    applied = []
    for version, name, statements in MIGRATIONS:
        if version in done:
            continue
        for sql in statements:
            yield Q(sql)
        yield Q(
            "INSERT INTO schema_version (version, name, applied_at) VALUES (:v, :n, :t)",
            {"v": version, "n": name, "t": now},
        )
        applied.append(version)
    return applied
