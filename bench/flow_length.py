"""SC-005 by flow length: what tracking adds to flows of ten nodes, from under a millisecond to a
second (ten transforms; ten waits of 1 ms, 10 ms, 100 ms: asyncio sleeps no less than about a
millisecond, so the shortest flow is one that computes), on SQLite and PostgreSQL, beside what the
database alone costs for the same writes (the floor: the writer's statements for one execution,
replayed bare). Prints a Markdown table.

``python -m bench.flow_length`` (``make bench-lengths``): about 4 minutes; outside ``make bench``."""

from __future__ import annotations

import asyncio
import tempfile

from tests.support.postgres import Cluster

from bench.overhead import floor_of, flow_of_ten, measure_flow, prepared
from flowdeck.settings import Settings
from flowdeck.tracking import Tracker

# (the flow, its ten nodes, rounds tracked and untracked)
LENGTHS = [
    ("10 transforms", "transform, config: {value: {i: '{{ input.i }}', text: 'some output'}}", 300),
    ("10 x 1 ms", "delay, config: {seconds: 0.001}", 150),
    ("10 x 10 ms", "delay, config: {seconds: 0.01}", 40),
    ("10 x 100 ms", "delay, config: {seconds: 0.1}", 12),
]


async def _rows(url: str, label: str) -> list[str]:
    texts = [flow_of_ten(f"length_{i}", node) for i, (_, node, _) in enumerate(LENGTHS)]
    db, records = prepared(url, texts)
    rows = []
    async with Tracker(db, Settings(database_url=url), kind="bench") as tracker:
        for (length, _, rounds), record in zip(LENGTHS, records, strict=True):
            flow = tracker.prepare(record)
            tracked, untracked = await measure_flow(tracker, flow, rounds)
            floor, commits = await floor_of(tracker, flow, untracked, rounds)
            added = tracked - untracked
            rows.append(
                f"| {label} | {length} | {untracked * 1e3:.2f} ms | {tracked * 1e3:.2f} ms | "
                f"{added * 1e3:.2f} ms | {tracked / untracked:.3f} | "
                f"{floor * 1e3:.2f} ms ({commits} commits) | {added / floor:.2f} |"
            )
    db.dispose()
    return rows


def main() -> None:
    cluster = Cluster(durable=True).start()  # fsync on: the figures are for a real set-up
    try:
        with tempfile.TemporaryDirectory() as folder:
            rows = asyncio.run(_rows(f"sqlite:///{folder}/lengths.db", "SQLite"))
        rows += asyncio.run(_rows(cluster.create_database("lengths"), "PostgreSQL"))
    finally:
        cluster.remove()
    print("| database | flow | not tracked | tracked | added | ratio | floor | added / floor |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
