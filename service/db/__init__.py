"""Connections and migrations.

A store use case is a generator that yields statements and receives their rows, then returns
its result. Each backend runs a whole use case as one transaction:

- SQLite (service/db/sqlite.py): one connection on one dedicated thread; a whole use case runs
  there in a single hop, and use cases waiting together share one commit.
- PostgreSQL: `databases` + asyncpg, one pooled connection and transaction per use case, each
  statement awaited in turn; `Lock` becomes a transaction-level advisory lock.
"""

from __future__ import annotations

from service.db.migrations import MIGRATIONS, migrate
from service.db.postgres import PostgresDatabase, advisory_key, positional
from service.db.protocol import (
    LOCK_ORDER,
    Database,
    Lock,
    Q,
    Replayable,
    Row,
    Rows,
    Step,
    UseCase,
    address_lock,
    drive,
    ip_lock,
    ping,
    replayable,
)
from service.db.sqlite import SQLiteDatabase

__all__ = [
    "LOCK_ORDER",
    "MIGRATIONS",
    "Database",
    "Lock",
    "PostgresDatabase",
    "Q",
    "Replayable",
    "Row",
    "Rows",
    "SQLiteDatabase",
    "Step",
    "UseCase",
    "address_lock",
    "advisory_key",
    "drive",
    "ip_lock",
    "migrate",
    "open_database",
    "positional",
    "ping",
    "replayable",
]


def open_database(url: str) -> Database:
    """The backend for a DATABASE_URL (sqlite:///path or postgresql+asyncpg://…)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like sqlite:///path or postgresql://…")
    if scheme in ("sqlite", "sqlite+aiosqlite"):
        return SQLiteDatabase(rest[1:] if rest.startswith("/") else rest)
    if scheme in ("postgresql", "postgresql+asyncpg", "postgres"):
        return PostgresDatabase("postgresql+asyncpg://" + rest)
    raise ValueError(f"unsupported database scheme {scheme!r}")
