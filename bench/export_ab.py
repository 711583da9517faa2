"""Two versions of flowdeck side by side on the NDJSON export: one seeded SQLite database, exported
over HTTP by a server of each source tree in turn, for a few rounds. For a change to the export,
measured on a noisy machine:

    python -m bench.export_ab OLD_SRC NEW_SRC      # e.g. a clone of the previous commit's src/

Seeds 100,000 executions of ten steps (about a minute) in a temporary folder; prints each round's
rows a second.
"""

from __future__ import annotations

import os
import sys
import tempfile

from bench.export import export_rows
from bench.scale import seed

ROUNDS, EXECUTIONS = 3, 100_000


def main(old: str, new: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/export.db"
        flow_id = seed(url, EXECUTIONS, 0)
        for n in range(ROUNDS):
            sides = [("old", old), ("new", new)]
            for name, source in sides if n % 2 == 0 else reversed(sides):
                os.environ["PYTHONPATH"] = source  # the server's flowdeck (the seeding was this one's)
                rows = {row["name"]: row["value"] for row in export_rows(url, flow_id, EXECUTIONS)}
                print(
                    f"round {n + 1} {name}: {rows['export_rows_per_s_sqlite']:,} rows/s NDJSON, "
                    f"{rows['export_csv_rows_per_s_sqlite']:,} CSV",
                    flush=True,
                )


if __name__ == "__main__":
    main(*sys.argv[1:3])
