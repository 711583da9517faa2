"""``make bench``: every benchmark, side by side in one run; prints a table, writes bench/results.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from tests.support.postgres import Cluster

from bench.composition import composition_rows
from bench.mcp_load import mcp_rows
from bench.overhead import overhead_rows
from bench.scale import scale_rows

RESULTS = Path(__file__).parent / "results.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller data, under 3 minutes")
    args = parser.parse_args()

    rows: list[dict[str, Any]] = []
    cluster = Cluster(durable=True).start()  # fsync on: the figures are for a real set-up
    try:
        with tempfile.TemporaryDirectory() as folder:
            rows += overhead_rows(f"sqlite:///{folder}/bench.db", "sqlite", quick=args.quick)
            rows += overhead_rows(cluster.create_database("bench"), "postgres", quick=args.quick)
            rows += mcp_rows(quick=args.quick)
            rows += composition_rows(quick=args.quick)
            rows += scale_rows(Path(folder), cluster.create_database("scale"), quick=args.quick)
    finally:
        cluster.remove()

    machine = f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores"
    RESULTS.write_text(json.dumps({"machine": machine, "quick": args.quick, "rows": rows}, indent=2) + "\n")
    width = max(len(row["name"]) for row in rows)
    print(f"{'name':{width}}  {'value':>10}  unit   note")
    for row in rows:
        print(f"{row['name']:{width}}  {row['value']:>10}  {row['unit']:5}  {row['note']}")
    print(f"({machine}; written to {RESULTS})")


if __name__ == "__main__":
    main()
