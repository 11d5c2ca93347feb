"""The OpenID token endpoint's load: authorization codes minted beforehand, one per request.

A code is what a browser brings back from `/oauth/authorize` after sign-in and consent; the
bench cannot drive a browser per request, so each code is issued as the provider issues one
(`store.oauth.open_grant`, the code's SHA-256 stored, `CODE_TTL` to live) for the session the
bench signed in with, to a confidential client registered as `clients add` registers one
(RS256 ID tokens, the default; a second slot registers an ES256 client, which shows what the
two RSA-2048 signatures of each answer cost). wrk then exchanges each code once (`token.lua`),
with the client's secret in HTTP Basic: the measured request is a real token exchange, an ID
token and an access token signed per answer.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Iterable
from pathlib import Path

from bench.load import THREADS, Load
from bench.servers import MailSink, Server
from service import crypto, db
from service.db import UseCase
from service.oidc import clients
from service.oidc.provider import CODE_TTL
from service.settings import load_settings
from service.store import oauth

REDIRECT = "http://127.0.0.1:9/callback"
CODES = 8000
# Codes live CODE_TTL (a minute) from the provider; tens of thousands minted before a warm-up
# and a 10 s load outlive that (one run: 4,262 expired answers). The bench's codes get this
# much longer: the exchange checks the expiry and does the same work whatever its value.
MINT_SLACK = 300
CHUNK = 2000


def _open_many(grants: Iterable[oauth.NewGrant], now: int) -> UseCase[None]:
    """Several grants in one transaction (one hop for a whole chunk)."""
    for grant in grants:
        opened = yield from oauth.open_grant(grant, None, now)
        if not opened:
            raise RuntimeError("open_grant refused a bench grant")


def _session() -> UseCase[db.Row]:
    rows = yield db.Q(
        "SELECT id, user_id, aal, amr, auth_time FROM sessions WHERE revoked_at IS NULL"
        " ORDER BY created_at DESC LIMIT 1"
    )
    if not rows:
        raise RuntimeError("no live session to issue codes for (fixtures.sign_in first)")
    return rows[0]


async def _mint(env: dict[str, str], count: int, alg: str) -> tuple[str, list[str]]:
    """Register a client and mint `count` codes for it: its Authorization header, the codes."""
    settings = load_settings(env)
    database = db.open_database(settings.storage.resolved_database_url)
    await database.connect()
    try:
        session = await database.run(_session(), write=False)
        client, secret = await clients.register(
            database,
            settings.tokens.keys_dir,
            name="bench",
            redirect_uris=[REDIRECT],
            id_token_alg=alg,
            now=int(time.time()),
        )
        assert secret is not None  # a confidential client
        codes: list[str] = []
        for start in range(0, count, CHUNK):
            now = int(time.time())
            chunk: list[oauth.NewGrant] = []
            for _ in range(min(CHUNK, count - start)):
                code = secrets.token_urlsafe(32)
                codes.append(code)
                chunk.append(
                    oauth.NewGrant(
                        id=crypto.new_id(),
                        client_id=client.id,
                        user_id=session["user_id"],
                        session_id=session["id"],
                        scope="openid email",
                        redirect_uri=REDIRECT,
                        nonce=None,
                        code_challenge=None,
                        code_hash=crypto.sha256_hex(code),
                        code_expires_at=now + CODE_TTL + MINT_SLACK,
                        aal=int(session["aal"]),
                        amr=session["amr"],
                        auth_time=int(session["auth_time"]),
                    )
                )
            await database.run(_open_many(chunk, now))
    finally:
        await database.disconnect()
    basic = base64.b64encode(f"{client.id}:{secret}".encode()).decode()
    return f"Authorization: Basic {basic}", codes


def token_load(latch: Server, sink: MailSink, work: Path, seconds: float) -> Load:
    """POST /oauth/token for an RS256 client (the default), each request exchanging a code of
    its own. Called once for the warm-up and once for the measured run (a code is good once,
    and for CODE_TTL seconds)."""
    return _load(latch, work, seconds, "RS256")


def token_load_es256(latch: Server, sink: MailSink, work: Path, seconds: float) -> Load:
    """The same for a client whose ID tokens are ES256 (as the sessions' key)."""
    return _load(latch, work, seconds, "ES256")


def _load(latch: Server, work: Path, seconds: float, alg: str) -> Load:
    # Enough codes for ~3,000 exchanges a second, twice the ES256 client's rate here (past the
    # end, reuse shows as errors: 1,500 a second ran out once, 240 errors in 16,240 requests).
    count = max(CODES, int(seconds * 3000) + 1000)
    codes_file = work / f"oidc-codes-{secrets.token_hex(4)}.txt"
    header, codes = asyncio.run(_mint(latch.env, count, alg))
    codes_file.write_text("".join(f"{c}\n" for c in codes))
    return Load(
        "/oauth/token",
        headers=(header,),
        script="token.lua",
        script_args=(str(codes_file), str(THREADS), REDIRECT),
    )
