"""A flowdeck server for the MCP benchmark: ``--untracked`` swaps the recorder for the null observer
(a switch that exists here, for the benchmark only, and nowhere in flowdeck itself)."""

from __future__ import annotations

import argparse
from pathlib import Path

import uvicorn

from flowdeck.app import create_app
from flowdeck.engine import NullObserver
from flowdeck.settings import Settings
from flowdeck.tracking import tracker

BENCH_FLOW = Path(__file__).parent / "flows" / "bench_one.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--untracked", action="store_true")
    args = parser.parse_args()
    if args.untracked:
        tracker.Tracker.recorder = lambda self, call: NullObserver()  # type: ignore[method-assign]
    app = create_app(Settings(database_url=args.database_url), flow_paths=[BENCH_FLOW])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
