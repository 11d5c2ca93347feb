"""Command line: serve (default), migrate, users, keys, sessions, purge."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import crypto, db, store
from service.addresses import parse_email
from service.errors import ConfigError, ServiceError
from service.logs import configure_logging
from service.settings import Settings, load_settings, read_environment


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m service", description="Latch")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve HTTP (the default)")
    sub.add_parser("migrate", help="apply database migrations and exit")
    sub.add_parser("purge", help="delete old flows and dead sessions now")
    users = sub.add_parser("users", help="manage users").add_subparsers(
        dest="action", required=True
    )
    users.add_parser("add", help="create a user").add_argument("email")
    keys = sub.add_parser("keys", help="manage signing keys").add_subparsers(
        dest="action", required=True
    )
    gen = keys.add_parser("generate", help="add a key (current unless --next)")
    gen.add_argument("--next", action="store_true", help="publish it without signing yet")
    keys.add_parser("list", help="list keys and their states")
    rot = keys.add_parser("rotate", help="make the next key current (or a new one)")
    rot.add_argument(
        "--publish-first",
        action="store_true",
        help="only add a next key now; run `keys rotate` again later to switch",
    )
    retire = keys.add_parser("retire", help="stop publishing a retired key")
    retire.add_argument("kid")
    retire.add_argument(
        "--force",
        action="store_true",
        help="even if tokens it signed may not have expired yet",
    )
    sessions = sub.add_parser("sessions", help="manage sessions").add_subparsers(
        dest="action", required=True
    )
    sessions.add_parser("revoke", help="revoke every session of an address").add_argument(
        "--email", required=True
    )
    return parser


def _run_db(settings: Settings, work: Callable[[db.Database, list[int]], Awaitable[Any]]) -> Any:
    """Connect, apply migrations, then run `work(database, versions_applied)`."""

    async def main() -> Any:
        database = db.open_database(settings.storage.resolved_database_url)
        await database.connect()
        try:
            applied = await database.run(db.migrate(int(time.time())))
            return await work(database, applied)
        finally:
            await database.disconnect()

    return asyncio.run(main())


async def _applied(database: db.Database, applied: list[int]) -> list[int]:
    return applied


def serve(settings: Settings, host: str, port: int) -> None:
    """uvicorn with its access log and proxy-header handling off (docs/design.md §1.4, §4)."""
    import uvicorn

    from service.app import create_app
    from service.web.timeouts import http_protocol

    app = create_app(settings)
    uvicorn.run(
        app,
        host=host,
        port=port,
        # Slow clients: a deadline for the headers (uvicorn has none of its own), idle
        # kept-alive connections closed, and a cap on connections (503 beyond it).
        http=http_protocol(settings.runtime.header_timeout),
        timeout_keep_alive=settings.runtime.keep_alive_timeout,
        limit_concurrency=settings.runtime.max_connections or None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        log_config=None,
        # Requests in flight get 10 s to finish; then the lifespan drains the mail queue for
        # up to SHUTDOWN_GRACE (see the Dockerfile's --stop-timeout).
        timeout_graceful_shutdown=10,
    )


def _users_add(settings: Settings, email: str) -> int:
    address, key = parse_email(email, settings.signin.allowed_email_domains)
    user, created = _run_db(
        settings,
        lambda d, _: d.run(store.add_user(crypto.new_id(), address, key, int(time.time()))),
    )
    print(f"{'created' if created else 'exists '} {user['id']} {user['email']}")
    return 0


def _sessions_revoke(settings: Settings, email: str) -> int:
    _, key = parse_email(email)

    async def work(database: db.Database, _: list[int]) -> int:
        user = await database.run(store.find_user(key), write=False)
        if user is None:
            print("no such user", file=sys.stderr)
            return 1
        ended = await database.run(store.revoke_user_sessions(user["id"], int(time.time())))
        print(f"revoked {len(ended)} session(s)")
        return 0

    return int(_run_db(settings, work))


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from service import tokens

    d, alg = settings.tokens.keys_dir, settings.tokens.algorithm
    if alg == "HS256":
        print("JWT_ALGORITHM=HS256 uses SECRET_KEY; there are no key files", file=sys.stderr)
        return 1
    if args.action == "generate":
        print(tokens.add_key(d, alg, "next" if args.next else "current"))
    elif args.action == "list":
        for entry in tokens.list_keys(d):
            print(f"{entry['kid']}  {entry['alg']:6}  {entry['state']}")
    elif args.action == "rotate":
        # Only a waiting key of the configured algorithm is promoted: that is how a folder is
        # switched to another algorithm (JWT_ALGORITHM=ES256 ... keys rotate).
        pending = [e for e in tokens.list_keys(d) if e["state"] == "next" and e["alg"] == alg]
        if args.publish_first or not pending:
            kid = tokens.add_key(d, alg, "next")
            print(f"published {kid} as next; run `keys rotate` after verifiers refetched")
            if args.publish_first:
                return 0
            tokens.set_state(d, kid, "current")
        else:
            tokens.set_state(d, pending[-1]["kid"], "current")
        print("rotated; the previous key stays published as retired")
    elif args.action == "retire":
        return _keys_retire(settings, args.kid, args.force)
    return 0


def _keys_retire(settings: Settings, kid: str, force: bool) -> int:
    """Unpublish a key: never the current one, and not while tokens it signed may live."""
    from service import tokens

    entry = next((e for e in tokens.list_keys(settings.tokens.keys_dir) if e["kid"] == kid), None)
    if entry is None:
        print(f"no key {kid}", file=sys.stderr)
        return 1
    if entry["state"] == "current":
        print("the current key signs every new token: rotate first", file=sys.stderr)
        return 1
    # A retired key must stay in the JWKS until the last token it signed has expired, or
    # verifiers start refusing sessions that are still good.
    safe_at = int(entry.get("retired_at", 0)) + settings.sessions.access_ttl
    if entry["state"] == "retired" and safe_at > time.time() and not force:
        wait = int(safe_at - time.time()) + 1
        print(f"tokens signed by {kid} may be valid for {wait} s more (--force)", file=sys.stderr)
        return 1
    tokens.set_state(settings.tokens.keys_dir, kid, "removed")
    # Every instance drops it at its next reload, and with it every token it signed, cached or
    # not (the caches of verified tokens are tied to the keyring): the way to cut off a leaked key.
    print(f"{kid} is no longer published; its tokens are refused from the next key reload")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    try:
        # `keys` must run before a production key exists: it is how the first one is made.
        settings = load_settings(read_environment(), require_key=args.command != "keys")
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    configure_logging(settings.runtime.log_level)
    command = args.command or "serve"
    try:
        if command == "serve":
            serve(settings, args.host, args.port)
        elif command == "migrate":
            applied = _run_db(settings, _applied)
            done = f"applied {applied}" if applied else "nothing to apply"
            print(f"migrations: {done}; the database is at the latest schema")
        elif command == "purge":
            counts = _run_db(settings, lambda d, _: store.purge(d, int(time.time()), 86400))
            print(counts)
        elif command == "users":
            return _users_add(settings, args.email)
        elif command == "sessions":
            return _sessions_revoke(settings, args.email)
        elif command == "keys":
            return _keys(settings, args)
    except ServiceError as e:
        print(e.message, file=sys.stderr)
        return 1
    except ConfigError as e:  # raised by create_app too (e.g. unusable EMAIL_TEMPLATES_DIR)
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
