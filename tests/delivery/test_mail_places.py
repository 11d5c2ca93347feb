"""The mail queue's places: a start that finds the queue full waits in line, and each finished
mail hands its place to the oldest waiter (service/delivery/mail.py `Mailer.reserve`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from service.delivery.mail import Mailer
from service.errors import UnavailableError
from service.settings import Settings
from tests.conftest import FakeClock, RecordingTransport

MakeSettings = Callable[..., Settings]


def _mailer(settings: Settings) -> Mailer:
    # The places need no database or sender: nothing here sends a mail.
    return Mailer(settings, RecordingTransport(), database=None, clock=FakeClock())  # type: ignore[arg-type]


def test_each_freed_place_goes_to_the_oldest_waiter(make_settings: MakeSettings) -> None:
    mailer = _mailer(make_settings(MAIL_QUEUE_SIZE="1", MAIL_QUEUE_WAIT="60"))

    async def scenario() -> list[int]:
        await mailer.reserve()  # the only place
        served: list[int] = []

        async def waiter(n: int) -> None:
            await mailer.reserve()
            served.append(n)

        tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
        await asyncio.sleep(0)
        assert served == [] and mailer.depth == 1
        for expected in ([0], [0, 1], [0, 1, 2]):
            mailer.release()  # a mail finished: its place goes to exactly one waiter
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert served == expected
            assert mailer.depth == 1  # handed over, never freed and taken again
        await asyncio.gather(*tasks)
        mailer.release()
        assert mailer.depth == 0
        return served

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_waiter_that_times_out_gets_503_and_keeps_no_place(make_settings: MakeSettings) -> None:
    mailer = _mailer(make_settings(MAIL_QUEUE_SIZE="1", MAIL_QUEUE_WAIT="0.01"))

    async def scenario() -> None:
        await mailer.reserve()
        with pytest.raises(UnavailableError) as refused:
            await mailer.reserve()
        assert refused.value.status == 503
        mailer.release()
        assert mailer.depth == 0  # the timed-out start left the line: the place is free
        await mailer.reserve()  # and the next start takes it at once
        assert mailer.depth == 1

    asyncio.run(scenario())


def test_a_cancelled_waiter_passes_its_place_on(make_settings: MakeSettings) -> None:
    mailer = _mailer(make_settings(MAIL_QUEUE_SIZE="1", MAIL_QUEUE_WAIT="60"))

    async def scenario() -> None:
        await mailer.reserve()
        first = asyncio.create_task(mailer.reserve())
        second = asyncio.create_task(mailer.reserve())
        await asyncio.sleep(0)
        mailer.release()  # the place is handed to `first`...
        first.cancel()  # ...which is cancelled before it could run: it must pass it on
        with pytest.raises(asyncio.CancelledError):
            await first
        await second
        assert mailer.depth == 1
        mailer.release()
        assert mailer.depth == 0

    asyncio.run(scenario())
