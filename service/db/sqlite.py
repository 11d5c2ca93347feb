"""The SQLite backend: one connection on one dedicated thread, with group commit.

Every use case runs whole on the database thread (one thread hop, docs/design.md §7). Under load the
thread takes all the use cases waiting in its queue and runs them in ONE transaction, each
inside its own savepoint: a use case that fails rolls back only its own work, and one commit
(and one BEGIN IMMEDIATE) serves the batch. Results are handed back only after the commit,
so no caller is told of work that is not yet in the WAL. Alone, a use case runs exactly as
before: BEGIN IMMEDIATE, the statements, COMMIT.

Writes start with `BEGIN IMMEDIATE`, so a reader never has to turn writer mid-transaction
(the SQLITE_BUSY that busy_timeout cannot wait out). `databases`' SQLite backend is not used:
it opens a connection per task and loses per-connection pragmas.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from service.db.protocol import Lock, Rows, Step, UseCase, drive
from service.errors import UnavailableError

log = logging.getLogger("latch.db")
T = TypeVar("T")
MAX_BATCH = 64
CACHE_KIB = 32 * 1024


@dataclass
class _Job:
    use_case: UseCase[Any]
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class SQLiteDatabase:
    """One connection, one thread, one hop per use case; batches share a commit."""

    dialect = "sqlite"

    def __init__(
        self, path: str, *, busy_timeout_ms: int = 5000, checkpoint_interval: float = 1.0
    ) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.checkpoint_interval = checkpoint_interval
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()

    async def connect(self) -> None:
        """Open the file (creating its folder) and start the database thread."""
        if self._thread is not None:
            return
        await asyncio.to_thread(self._open)
        self._thread = threading.Thread(target=self._serve, name="latch-sqlite", daemon=True)
        self._thread.start()
        if self.path != ":memory:":
            self._stop.clear()
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="latch-sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a power cut may lose the last commits, never corrupts the file.
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Deleted rows are overwritten with zeros, not left in free pages: a deleted account
        # must leave nothing of its address in the file (docs/design.md §14).
        conn.execute("PRAGMA secure_delete = ON")
        # 32 MB of page cache instead of SQLite's 2 MB: with a million users and sessions, the
        # index pages a sign-in touches no longer fit in 2 MB, and every miss is a read (and a
        # GIL hand-over) on the database thread.
        conn.execute(f"PRAGMA cache_size = {-CACHE_KIB}")
        # Checkpoints (copying the WAL back into the file, with an fsync) are done by a thread
        # of their own (below), not by whichever commit crosses 1000 pages: measured here, that
        # took the average commit of a sign-in from ~130 us to ~300 us and put fsyncs on the
        # request path.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._conn = conn

    def _checkpoint_loop(self) -> None:
        """PASSIVE checkpoints on a separate connection: they never block readers or writers."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            while not self._stop.wait(self.checkpoint_interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as e:  # a busy or vanished file: try again next time
                    log.warning("sqlite checkpoint skipped: %s", e)
        finally:
            conn.close()

    async def disconnect(self) -> None:
        """Finish queued work, stop the thread and close the connection."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(thread.join)
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            self._stop.set()
            await asyncio.to_thread(checkpointer.join)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # the last connection to close checkpoints the WAL into the file

    async def run(self, use_case: UseCase[T], *, write: bool = True) -> T:
        """Run the use case as one transaction (or savepoint of a batch) on the thread."""
        if self._thread is None:
            use_case.close()
            raise UnavailableError(message="The database is not connected.")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(use_case, write, loop, future))
        return await future

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[_Job]) -> None:
        conn = self._conn
        assert conn is not None
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE" if any(j.write for j in batch) else "BEGIN")
            try:
                if len(batch) == 1:
                    outcomes.append(self._run_one(conn, batch[0], savepoint=False))
                else:
                    outcomes.extend(self._run_one(conn, job, savepoint=True) for job in batch)
                if len(batch) == 1 and not outcomes[0][0]:
                    conn.rollback()
                else:
                    conn.commit()
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.Error as e:
            # Locked beyond busy_timeout, disk full, file gone: callers get a 503, not a 500.
            log.warning("sqlite unavailable: %s", e)
            error = UnavailableError(retry_after=2)
            error.__cause__ = e
            outcomes = [(False, error)] * len(batch)
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, ok, value)

    @staticmethod
    def _run_one(conn: sqlite3.Connection, job: _Job, *, savepoint: bool) -> tuple[bool, Any]:
        def execute(step: Step) -> Rows:
            if isinstance(step, Lock):
                return []
            return [dict(row) for row in conn.execute(step.sql, step.params).fetchall()]

        if savepoint:
            conn.execute("SAVEPOINT latch_uc")
        try:
            result = drive(job.use_case, execute)
        except sqlite3.OperationalError as e:
            outcome: tuple[bool, Any] = (False, UnavailableError(retry_after=2))
            outcome[1].__cause__ = e
            log.warning("sqlite unavailable: %s", e)
        except Exception as e:
            outcome = (False, e)
        else:
            outcome = (True, result)
        finally:
            job.use_case.close()
        if savepoint:
            if not outcome[0]:
                conn.execute("ROLLBACK TO latch_uc")
            conn.execute("RELEASE latch_uc")
        return outcome
