"""Settings of the SQLite library itself, for the whole process (a connection's settings are PRAGMAs, in
:mod:`.database`).

SQLite keeps memory statistics by default: every allocation, in every thread, takes one lock for
the whole process. Reading in two threads at once is then slower than in one, since the threads queue
on that lock (the export's statement, two threads against one: 7,600 lines a second against 13,500);
without the statistics, two threads read 1.6 times as much as one, and one thread builds a line in
a sixth less time. SQLite's documentation recommends turning them off when they are not
read (flowdeck never reads them), but Python's ``sqlite3`` has no call for it, so this calls
SQLite's own ``sqlite3_config`` through ``ctypes``. SQLite accepts that only before it starts, and
Python's ``sqlite3`` starts it on import: so it is stopped and started again, which SQLite allows
only while nothing of it is in use, and which is done only then (no memory of SQLite's in use).
"""

from __future__ import annotations

import ctypes
import functools
import sqlite3
import threading

_CONFIG_MEMSTATUS = 9  # SQLITE_CONFIG_MEMSTATUS, sqlite3.h
_lock = threading.Lock()


@functools.cache
def threads_read_side_by_side() -> bool:
    """Whether SQLite work in several threads of this process runs at once: True once the memory
    statistics are off (turned off here, the first time this is asked, if nothing of SQLite is in
    use then); False when they stay on, or when the library can't be reached."""
    with _lock:
        try:
            import _sqlite3

            library = ctypes.CDLL(_sqlite3.__file__)  # finds the SQLite it was built with, too
            memory_used = library.sqlite3_memory_used
        except (ImportError, OSError, AttributeError):
            return False
        memory_used.restype = ctypes.c_int64
        probe = sqlite3.connect(":memory:")
        counting = memory_used() > 0  # off, a connection's memory goes uncounted
        probe.close()
        if not counting:
            return True
        if memory_used() != 0:
            return False  # a connection is open somewhere in the process: SQLite can't be stopped
        library.sqlite3_shutdown()
        turned_off = library.sqlite3_config(_CONFIG_MEMSTATUS, ctypes.c_int(0)) == 0
        library.sqlite3_initialize()
        return turned_off
