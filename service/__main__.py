"""Command line: serve (default), migrate, users, keys, sessions, clients, purge."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from service import crypto, db, store
from service.addresses import parse_email
from service.errors import ConfigError, ServiceError
from service.logs import configure_logging
from service.settings import Settings, load_settings, read_environment
from service.store import oauth as store_oauth


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
    rot.add_argument(
        "--oidc",
        metavar="ALG",
        choices=["RS256", "ES256", "EdDSA"],
        help="rotate the OpenID provider's key of ALG instead of the sessions' key",
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
    _client_commands(sub)
    return parser


def _client_commands(sub: Any) -> None:
    clients = sub.add_parser("clients", help="manage OpenID clients").add_subparsers(
        dest="action", required=True
    )
    add = clients.add_parser("add", help="register a client; prints its id and secret once")
    add.add_argument("name")
    add.add_argument("--redirect-uri", action="append", required=True, dest="redirect_uris")
    add.add_argument("--post-logout-redirect-uri", action="append", dest="logout_uris")
    add.add_argument("--public", action="store_true", help="no secret; PKCE required")
    add.add_argument("--first-party", action="store_true", help="no consent page")
    add.add_argument("--require-second-factor", action="store_true", help="demand AAL2")
    add.add_argument("--id-token-alg", default="RS256", choices=["RS256", "ES256", "EdDSA"])
    add.add_argument("--json", action="store_true", help="print one JSON object")
    clients.add_parser("list", help="list clients").add_argument("--json", action="store_true")
    for name, text in (
        ("show", "show one client"),
        ("remove", "delete a client, its grants and consents"),
        ("rotate-secret", "a new secret for a confidential client (the old one stops)"),
    ):
        one = clients.add_parser(name, help=text)
        one.add_argument("client_id")
        one.add_argument("--json", action="store_true")


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
            role = "  openid" if entry.get("purpose") == tokens.OIDC else ""
            print(f"{entry['kid']}  {entry['alg']:6}  {entry['state']}{role}")
    elif args.action == "rotate":
        # Only a waiting key of the configured algorithm is promoted: that is how a folder is
        # switched to another algorithm (JWT_ALGORITHM=ES256 ... keys rotate). With --oidc,
        # the same for the OpenID provider's key of that algorithm (docs/design.md §13).
        purpose = tokens.OIDC if args.oidc else ""
        alg = args.oidc or alg
        pending = [
            e
            for e in tokens.list_keys(d)
            if e["state"] == "next" and e["alg"] == alg and e.get("purpose", "") == purpose
        ]
        if args.publish_first or not pending:
            kid = tokens.add_key(d, alg, "next", purpose)
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


def _clients(settings: Settings, args: argparse.Namespace) -> int:
    """`clients add|list|show|remove|rotate-secret` (docs/design.md §13)."""
    from service.oidc import clients

    if settings.tokens.algorithm == "HS256":
        print("OpenID clients need published keys: JWT_ALGORITHM=HS256 has none", file=sys.stderr)
        return 1

    async def work(database: db.Database, _: list[int]) -> int:
        if args.action == "add":
            try:
                client, secret = await clients.register(
                    database,
                    settings.tokens.keys_dir,
                    name=args.name,
                    redirect_uris=args.redirect_uris,
                    post_logout_redirect_uris=args.logout_uris,
                    public=args.public,
                    first_party=args.first_party,
                    require_second_factor=args.require_second_factor,
                    id_token_alg=args.id_token_alg,
                    now=int(time.time()),
                )
            except clients.ClientError as e:
                print(str(e), file=sys.stderr)
                return 1
            _print_client({**client.describe(), "client_secret": secret}, args.json)
            if secret is not None and not args.json:
                print("The secret is shown only this once: store it in the app now.")
            return 0
        if args.action == "list":
            rows = await database.run(store_oauth.list_clients(), write=False)
            described = [clients.Client.from_row(r).describe() for r in rows]
            if args.json:
                print(json.dumps(described))
            for one in [] if args.json else described:
                print(f"{one['client_id']}  {one['type']:12}  {one['name']}")
            return 0
        found = await clients.find(database, args.client_id)
        if found is None:
            print(f"no client {args.client_id}", file=sys.stderr)
            return 1
        if args.action == "show":
            _print_client(found.describe(), args.json)
        elif args.action == "remove":
            await database.run(store_oauth.remove_client(found.id))
            print(f"removed {found.id}; its tokens stop working now")
        else:
            secret = await clients.rotate_secret(database, found.id)
            if secret is None:
                print("a public client has no secret", file=sys.stderr)
                return 1
            _print_client({"client_id": found.id, "client_secret": secret}, args.json)
        return 0

    return int(_run_db(settings, work))


def _print_client(described: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(described))
        return
    for key, value in described.items():
        shown = " ".join(value) if isinstance(value, list) else value
        print(f"{key}: {shown}")


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
        elif command == "clients":
            return _clients(settings, args)
    except ServiceError as e:
        print(e.message, file=sys.stderr)
        return 1
    except ConfigError as e:  # raised by create_app too (e.g. unusable EMAIL_TEMPLATES_DIR)
        print(str(e), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
