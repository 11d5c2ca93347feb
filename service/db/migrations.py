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
        3,
        "second factors: authenticator apps (TOTP) and recovery codes",
        (
            # One authenticator per user. The secret is sealed (AES-GCM under a subkey of
            # SECRET_KEY, bound to the user id), never stored in clear. confirmed_at NULL: an
            # enrolment waiting for its first code (it counts for nothing until confirmed).
            # last_step: the last 30-second step accepted, so no code is accepted twice.
            """CREATE TABLE totp_factors (
                user_id TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
                sealed_secret TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                confirmed_at BIGINT,
                last_step BIGINT NOT NULL DEFAULT -1
            )""",
            # Keyed hashes only (HMAC with a subkey of SECRET_KEY over user id and code).
            """CREATE TABLE recovery_codes (
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                code_hash TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                used_at BIGINT,
                PRIMARY KEY (user_id, code_hash)
            )""",
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
                user_id TEXT,
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
            # A deletion blanks the address in the person's messages (store/webhooks.py).
            "CREATE INDEX webhook_outbox_user ON webhook_outbox (user_id)",
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
    (
        5,
        "OpenID Connect provider: clients, pending requests, grants, consents",
        (
            # docs/design.md §13. Lists (redirect URIs, scopes) are space-separated: a URI
            # cannot hold a space, and both backends compare them the same way.
            """CREATE TABLE oauth_clients (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                secret_hash TEXT,
                redirect_uris TEXT NOT NULL,
                post_logout_redirect_uris TEXT NOT NULL DEFAULT '',
                scopes TEXT NOT NULL,
                first_party INTEGER NOT NULL DEFAULT 0,
                require_aal2 INTEGER NOT NULL DEFAULT 0,
                id_token_alg TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            # An authorization request waiting for a sign-in or a consent: kept here so that
            # nothing of it travels in a URL beyond its random id.
            """CREATE TABLE oauth_requests (
                id TEXT PRIMARY KEY,
                client_id TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
                params TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                consumed_at BIGINT
            )""",
            "CREATE INDEX oauth_requests_expires ON oauth_requests (expires_at)",
            # A grant: one authorization code and the tokens issued from it (a second use of
            # the code, or a replayed refresh token, revokes the whole row).
            """CREATE TABLE oauth_grants (
                id TEXT PRIMARY KEY,
                client_id TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                session_id TEXT NOT NULL,
                scope TEXT NOT NULL,
                redirect_uri TEXT NOT NULL,
                nonce TEXT,
                code_challenge TEXT,
                code_hash TEXT NOT NULL UNIQUE,
                code_expires_at BIGINT NOT NULL,
                code_used_at BIGINT,
                refresh_hash TEXT UNIQUE,
                prev_refresh_hash TEXT,
                rotated_at BIGINT,
                aal INTEGER NOT NULL,
                amr TEXT NOT NULL,
                auth_time BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                revoked_at BIGINT
            )""",
            "CREATE INDEX oauth_grants_user ON oauth_grants (user_id, client_id)",
            "CREATE INDEX oauth_grants_prev_refresh ON oauth_grants (prev_refresh_hash)",
            "CREATE INDEX oauth_grants_session ON oauth_grants (session_id)",
            """CREATE TABLE oauth_consents (
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                client_id TEXT NOT NULL REFERENCES oauth_clients (id) ON DELETE CASCADE,
                scope TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (user_id, client_id)
            )""",
        ),
    ),
    (
        6,
        "passkeys and their ceremonies' challenges",
        (
            # A WebAuthn credential (docs/design.md §12). `credential_id` and `public_key` are
            # base64url; neither is a secret (the private key never leaves the authenticator).
            """CREATE TABLE passkeys (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                credential_id TEXT NOT NULL UNIQUE,
                public_key TEXT NOT NULL,
                sign_count BIGINT NOT NULL,
                transports TEXT NOT NULL,
                backup_eligible INTEGER NOT NULL,
                backed_up INTEGER NOT NULL,
                name TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                last_used_at BIGINT
            )""",
            "CREATE INDEX passkeys_user ON passkeys (user_id)",
            # One row per challenge handed out, keyed by its SHA-256: an answer consumes it
            # (DELETE … RETURNING), so each challenge is answered at most once.
            """CREATE TABLE webauthn_challenges (
                id TEXT PRIMARY KEY,
                purpose TEXT NOT NULL,
                user_id TEXT,
                signin_id TEXT,
                ip TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL
            )""",
            "CREATE INDEX webauthn_challenges_expires ON webauthn_challenges (expires_at)",
            "CREATE INDEX webauthn_challenges_ip ON webauthn_challenges (ip, created_at)",
        ),
    ),
    (
        7,
        "the person's side of account security: known devices, new-device notices, address changes",
        (
            # Where a person has signed in from (docs/design.md §14): the recognised device name
            # ('' when unrecognised) and the network (IPv4 /24, IPv6 /48), never the raw
            # User-Agent. A sign-in from a pair not seen for 90 days gets a notice.
            """CREATE TABLE known_devices (
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                device TEXT NOT NULL,
                network TEXT NOT NULL,
                first_seen_at BIGINT NOT NULL,
                last_seen_at BIGINT NOT NULL,
                PRIMARY KEY (user_id, device, network)
            )""",
            # A new-device notice and its "This wasn't me" link: only a keyed hash of the
            # link's secret is stored; used_at makes the link single use.
            """CREATE TABLE device_notices (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                session_id TEXT NOT NULL,
                device TEXT NOT NULL,
                network TEXT NOT NULL,
                ip TEXT NOT NULL,
                link_hash TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                used_at BIGINT
            )""",
            "CREATE INDEX device_notices_user ON device_notices (user_id, device, created_at)",
            # A change of address waiting for the new address's code or link (§14).
            """CREATE TABLE address_changes (
                id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
                email TEXT NOT NULL,
                email_key TEXT NOT NULL,
                old_email_key TEXT,
                code_hash TEXT NOT NULL,
                link_hash TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                consumed_at BIGINT,
                outcome TEXT,
                ip TEXT NOT NULL,
                user_agent TEXT NOT NULL
            )""",
            "CREATE INDEX address_changes_user ON address_changes (user_id, created_at)",
            "CREATE INDEX address_changes_created ON address_changes (created_at)",
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
