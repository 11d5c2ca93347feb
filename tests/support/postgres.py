"""A throwaway PostgreSQL cluster for integration tests."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import weakref
from pathlib import Path
from typing import Self

from .net import HOST, free_port
from .running import Running

SUPERUSER = "postgres"
_SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Speed over durability: the data dies with the test run anyway.
_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
}


def _has_server(bindir: Path) -> bool:
    return (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file()


def find_bindir() -> Path:
    """Return the directory holding initdb and pg_ctl, or raise RuntimeError."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if result.returncode == 0:
            candidates.append(Path(result.stdout.strip()))
    # Debian's pg_config may come from libpq-dev and name a directory without a
    # server, so the versioned server directories are tried too, newest first.
    versioned = glob.glob("/usr/lib/postgresql/*/bin")
    versioned.sort(key=lambda p: int(re.sub(r"\D", "", p) or 0), reverse=True)
    candidates += [Path(p) for p in versioned]
    on_path = shutil.which("initdb")
    if on_path is not None:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if _has_server(bindir):
            return bindir
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found via pg_config, "
        "/usr/lib/postgresql/*/bin or PATH; install them (Debian: apt-get install postgresql)"
    )


def _remove(root: Path, stop_command: list[str] | None) -> None:
    # Also run by weakref.finalize at interpreter exit, so a crashed test run does
    # not leave a postmaster behind.
    if stop_command is not None and (root / "data" / "postmaster.pid").exists():
        subprocess.run(stop_command, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


class PostgresCluster(Running):
    """initdb + pg_ctl in a temporary directory, trust auth on 127.0.0.1 only."""

    def __init__(self, *, database: str = "latch", bindir: Path | None = None) -> None:
        self.database = database
        self.bindir = bindir or find_bindir()
        self.host = HOST
        self.port = 0
        self.root: Path | None = None
        self._finalizer: weakref.finalize[..., PostgresCluster] | None = None

    @property
    def url(self) -> str:
        """Return the SQLAlchemy-style URL of the default database."""
        return self.url_for(self.database)

    @property
    def dsn(self) -> str:
        """Return the libpq/asyncpg DSN of the default database."""
        return self.dsn_for(self.database)

    def url_for(self, database: str) -> str:
        """Return the postgresql+asyncpg:// URL of a database in this cluster."""
        return f"postgresql+asyncpg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def dsn_for(self, database: str) -> str:
        """Return the postgresql:// DSN of a database in this cluster."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    @property
    def data_dir(self) -> Path:
        """Return the cluster's data directory."""
        if self.root is None:
            raise RuntimeError("the cluster has not been started")
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        """Return the directory holding the cluster's unix socket."""
        return self.data_dir.parent

    @property
    def running(self) -> bool:
        """Return whether the postmaster is up."""
        if self.root is None:
            return False
        status = self._run_as_owner(
            [str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir)]
        )
        return status.returncode == 0

    def start(self) -> Self:
        """Create the cluster on first call, then start it; later calls restart it."""
        if self.root is None:
            self._create()
            self._start_on_free_port()
            self.create_database(self.database)
        elif not self.running:
            self._pg_ctl_start()
        return self

    def stop(self) -> None:
        """Stop the server at once (clients cut off), keeping its data."""
        if self.root is not None and self.running:
            self._run_checked(self._stop_command())

    def close(self) -> None:
        """Stop the server and delete the cluster."""
        if self._finalizer is not None:
            self._finalizer()
        self.root = None

    def create_database(self, name: str | None = None) -> str:
        """Create a fresh empty database (named, or a unique name) and return its URL."""
        name = name or f"test_{uuid.uuid4().hex[:12]}"
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"unsafe database name {name!r}")
        self._run_checked(self._psql("postgres", f'CREATE DATABASE "{name}"'))
        return self.url_for(name)

    def _psql(self, database: str, sql: str) -> list[str]:
        return [
            str(self.bindir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-c",
            sql,
        ]

    def _create(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="latch-pg-"))
        self.root = root
        self._finalizer = weakref.finalize(
            self, _remove, root, self._as_owner(self._stop_command())
        )
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise RuntimeError(
                    f"running as root needs a {SUPERUSER!r} user to own the cluster"
                ) from None
            # initdb refuses to run as root; the server runs as the postgres user,
            # which must own the whole tree (mkdtemp made it 0700 for root).
            shutil.chown(root, user=SUPERUSER, group=SUPERUSER)
        self._run_checked(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ]
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"unix_socket_directories = '{self.socket_dir}'\n")
            conf.writelines(f"{key} = {value}\n" for key, value in _SETTINGS.items())

    def _start_on_free_port(self) -> None:
        # Between choosing a free port and the postmaster binding it another
        # process may take it; a couple of retries make that race harmless.
        for attempt in range(3):
            self.port = free_port()
            try:
                self._pg_ctl_start()
                return
            except RuntimeError:
                if attempt == 2 or "already in use" not in self._log():
                    raise

    def _pg_ctl_start(self) -> None:
        # The port is passed on the command line, not written to the config, so a
        # retry can choose another and a restart keeps the same one.
        self._run_checked(
            [
                str(self.bindir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-w",
                "-t",
                "30",
                "-l",
                str(self.socket_dir / "postgres.log"),
                "-o",
                f"-p {self.port}",
            ]
        )

    def _stop_command(self) -> list[str]:
        command = [
            str(self.bindir / "pg_ctl"),
            "stop",
            "-D",
            str(self.data_dir),
            "-m",
            # `fast` cuts the clients off as `immediate` does, but writes out the WAL first:
            # with synchronous_commit=off (above), an immediate stop loses the last commits,
            # which a larger schema made this test's own (its migrations, then a sign-in).
            "fast",
            "-w",
        ]
        return command

    def _log(self) -> str:
        log = self.socket_dir / "postgres.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def _as_owner(self, command: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return command
        return ["runuser", "-u", SUPERUSER, "--", *command]

    def _run_as_owner(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        # cwd: the postgres user may not be allowed into the caller's directory.
        return subprocess.run(
            self._as_owner(command),
            capture_output=True,
            text=True,
            cwd=self.socket_dir,
            stdin=subprocess.DEVNULL,
        )

    def _run_checked(self, command: list[str]) -> None:
        started = time.monotonic()
        result = self._run_as_owner(command)
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}) after "
                f"{time.monotonic() - started:.1f}s:\n{result.stdout}{result.stderr}\n"
                f"server log:\n{self._log()[-3000:]}"
            )
