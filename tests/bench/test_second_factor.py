"""The benchmark's second-step state (bench/second_factor.py) is state Latch accepts: users
seeded with Latch's own store and sealing, pending sign-ins opened by a real first step,
cookies signed as Latch signs them, answered over TCP by Latch under uvicorn. A fixture that
drifted from Latch would turn the benchmark into a count of fast 4xx answers; this catches it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

from bench import second_factor
from service.settings import load_settings
from service.web.cookies import signin_cookie_name
from tests.conftest import TEST_ENV
from tests.support.otp import oathtool
from tests.support.process import LatchProcess


async def _again(env: dict[str, str], users: list[second_factor.Enrolled]) -> list[str]:
    async with second_factor.Seeder(env) as seeder:
        return [p.cookie for p in await seeder.sign_in_again(users)]


def test_prepared_second_steps_are_accepted_once(tmp_path: Path) -> None:
    env = {**TEST_ENV, "DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": secrets.token_urlsafe(48)}
    with LatchProcess(env, tmp_path / "run") as latch:
        # prepare() also answers one more pending sign-in for real, and raises if refused.
        prepared = second_factor.prepare(latch.env, latch.url, 3)
        assert len(prepared) == 3
        assert len({p.user.user_id for p, _ in prepared}) == 3
        name = signin_cookie_name(load_settings(latch.env))
        for pending, code in prepared:
            # The code is what an authenticator app that is not ours shows for the next step.
            assert code == oathtool(pending.user.secret, int(time.time()) + 30) or code == (
                oathtool(pending.user.secret, int(time.time()))  # the step turned meanwhile
            )
            done = second_factor.answer(latch.url, name, pending, code)
            assert done.status_code == 200, done.text
            assert done.cookies.get("latch_session")

        # The same cookie again: its pending sign-in is used (what wrk's wrap-around gets).
        pending, code = prepared[0]
        reused = second_factor.answer(latch.url, name, pending, code)
        assert reused.status_code >= 400, reused.text
        assert reused.json()["error"]["code"] == "flow_used"

        # The same code on a new sign-in of the same user: refused (no replay), so each
        # request of the load needs a user of its own.
        users = [p.user for p, _ in prepared]
        cookies = asyncio.run(_again(latch.env, users))
        again = second_factor.Pending(users[1], cookies[1])
        replayed = second_factor.answer(latch.url, name, again, prepared[1][1])
        # Refused as a wrong code, not as a bad cookie: the new pending sign-in was read.
        assert replayed.status_code == 400, replayed.text
        assert replayed.json()["error"]["code"] == "invalid_code"
