"""How use cases run: statements, locks, the Database protocol, and the synchronous driver.

A store use case is a generator that yields statements (`Q`) and locks (`Lock`) and receives their
rows, then returns its result. Each backend (db/sqlite.py, db/postgres.py) runs a whole use case
as one transaction.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar

log = logging.getLogger("latch.db")

T = TypeVar("T")
P = ParamSpec("P")
Row = dict[str, Any]
Rows = list[Row]


@dataclass(frozen=True)
class Q:
    """One SQL statement with `:name` parameters (the same style on both backends)."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lock:
    """Serialise on a key until the transaction ends (PostgreSQL advisory lock).

    On SQLite every write transaction is already serialised by BEGIN IMMEDIATE. The key's
    namespace is the part before ":" (or the whole key for the singletons); see LOCK_ORDER.
    """

    key: str

    @property
    def rank(self) -> int:
        """Its place in LOCK_ORDER (a use case may only take locks of increasing rank)."""
        return LOCK_ORDER.index(self.key.partition(":")[0])


# THE LOCK ORDER. Every use case takes its locks in this order, or two use cases holding one
# lock each and waiting for the other's deadlock (PostgreSQL then aborts one: a 500 before).
#   1. advisory "latch.migrate" / "latch.purge" (alone in their use cases);
#   2. advisory "ip:<client ip>"       - open_flow only, for the starts-per-IP count;
#   3. advisory "address:<email_key>"  - everything that counts or changes an address's flows,
#      failures or user: open, resend, verify by code or link, add_user;
#   4. then rows: the flow being used, the address's other live flows, its address_failures
#      row, its users row, and the new session or pending sign-in (see store/flows.py). The
#      second step (store/signins.py) takes no advisory lock: its pending sign-in row, then
#      the new session.
# The PostgreSQL driver refuses a lock out of this order (a bug, caught by the tests), and at
# most one lock per namespace is taken in a transaction (two address locks could cross).
# Keys are hashed as their full text ("ip:…" and "address:…" cannot collide as text, and the
# text is what instances of older versions hash too, so a rolling upgrade shares the locks).
LOCK_ORDER = ("latch.migrate", "latch.purge", "ip", "address")


def ip_lock(ip: str) -> Lock:
    """The lock on one client IP's start count."""
    return Lock("ip:" + ip)


def address_lock(email_key: str) -> Lock:
    """The lock on one address: its limits, failures, flows and user row."""
    return Lock("address:" + email_key)


Step = Q | Lock
UseCase = Generator[Step, Rows, T]


class Replayable(Generator[Step, Rows, T]):
    """A use case that can be run again from its start, with the same inputs.

    When PostgreSQL aborts a transaction to break a deadlock (or a serialization failure),
    it has rolled back ALL of it: a use case is one transaction and its generator has no
    effect outside the statements it yields (what the caller does with the result happens
    after `run` returns: the mail is queued, the cookies set). So running it again is exactly
    the same request arriving a moment later: safe, and better than a 500 or a 503. What is
    not safe is replaying *part* of a use case, which is why the whole generator is made anew.
    """

    __slots__ = ("_gen", "_make")

    def __init__(self, make: Callable[[], UseCase[T]]) -> None:
        self._make = make
        self._gen = make()

    def again(self) -> Replayable[T]:
        """The same use case, from its start."""
        self._gen.close()
        return Replayable(self._make)

    def send(self, value: Rows) -> Step:
        return self._gen.send(value)

    def throw(self, typ: Any, val: Any = None, tb: TracebackType | None = None, /) -> Step:
        if val is None and tb is None:
            return self._gen.throw(typ)
        return self._gen.throw(typ, val, tb)

    def close(self) -> None:
        self._gen.close()


def replayable(make: Callable[P, UseCase[T]]) -> Callable[P, UseCase[T]]:
    """Mark a write use case as safe to run again after a deadlock (see Replayable)."""

    @functools.wraps(make)
    def use_case(*args: P.args, **kwargs: P.kwargs) -> UseCase[T]:
        return Replayable(functools.partial(make, *args, **kwargs))

    return use_case


class Database(Protocol):
    """What the store needs from a backend."""

    dialect: str

    async def connect(self) -> None: ...
    async def disconnect(self) -> None: ...
    async def run(self, use_case: UseCase[T], *, write: bool = True) -> T: ...


def drive(use_case: UseCase[T], execute: Any) -> T:
    """Run a use case synchronously, feeding each step's rows back in."""
    try:
        step = next(use_case)
        while True:
            step = use_case.send(execute(step))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def ping() -> UseCase[bool]:
    """A trivial query: the database answers."""
    rows = yield Q("SELECT 1 AS ok")
    return bool(rows and rows[0]["ok"] == 1)
