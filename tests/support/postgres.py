"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb in a temporary folder, a server on a
free loopback port, stopped and removed at the end. Run as the ``postgres`` user when we are root,
since PostgreSQL refuses to run as root."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

BIN_CANDIDATES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")


def _bin_dir() -> Path:
    for candidate in (os.environ.get("FLOWDECK_PG_BIN", ""), *BIN_CANDIDATES):
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found (initdb); install postgresql or set FLOWDECK_PG_BIN"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """One PostgreSQL server. ``durable=False`` turns fsync off: fine for tests, not for figures."""

    def __init__(self, *, durable: bool = False, root: Path | None = None) -> None:
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="flowdeck-pg-", dir=root))
        self.data = self.root / "data"
        self.port = free_port()
        self.durable = durable
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, cwd=self.root)

    def start(self) -> Cluster:
        if not self.data.exists():
            self._run(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            )
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        result = self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        if result.returncode != 0:
            log = (self.root / "log").read_text(errors="replace") if (self.root / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}\n{log}")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str, template: str | None = None, tablespace: str | None = None) -> str:
        with psycopg.connect(self.url(), autocommit=True) as connection:
            suffix = f" TEMPLATE {template}" if template else ""
            suffix += f" TABLESPACE {tablespace}" if tablespace else ""
            connection.execute(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def execute(self, sql: str) -> None:
        """One statement on the maintenance database, as the superuser."""
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(sql)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """The server stopped for the block (the test says when it comes back, by ``start``), and
        running again after it whatever happened: the session's other tests need it."""
        self.stop()
        try:
            yield
        finally:
            if not self.running:
                self.start()

    @property
    def running(self) -> bool:
        return (
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "status", check=False).returncode == 0
        )

    def give_to_server(self, path: Path) -> None:
        """Make ``path`` the server's (a tablespace's folder must be), when tests run as root."""
        if self._as_root:
            shutil.chown(path, "postgres", "postgres")
