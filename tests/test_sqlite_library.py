"""SQLite set up for threads (flowdeck.store.sqlite_library), each case in a fresh Python: the setting is
the library's, for the whole process, and can only change while nothing of SQLite is in use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import ctypes, sqlite3, sys, _sqlite3
memory_used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
memory_used.restype = ctypes.c_int64
held = sqlite3.connect(":memory:") if sys.argv[1] == "held" else None
from flowdeck.store.database import open_database
from flowdeck.store.sqlite_library import threads_read_side_by_side
db = open_database(sys.argv[2])
with db.connect() as connection:
    connection.exec_driver_sql("CREATE TABLE t (x)")
    print(threads_read_side_by_side(), memory_used() > 0)
"""


def probe(first: str, url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, first, url], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_a_process_opening_sqlite_first_turns_off_its_memory_statistics(tmp_path: Path) -> None:
    # with them off, SQLite counts nothing, even with a database open
    assert probe("free", f"sqlite:///{tmp_path}/a.db") == "True False"


def test_sqlite_already_in_use_is_left_as_it_is(tmp_path: Path) -> None:
    assert probe("held", f"sqlite:///{tmp_path}/a.db") == "False True"
