"""Leaderboard requests per second: the app's cached registry snapshot against re-reading and
re-validating every entry file on each request (the baseline).

Fills a temporary registry with `--entries` copies of the seeded paper rows (new ids), then times
one leaderboard request (snapshot, filter, score, sort: what the Leaderboard tab's endpoint does)
both ways and prints a table.

    python benchmarks/leaderboard_speed.py --entries 100 1000 5000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from atzoo.leaderboard.store import entries_dir, load_snapshot, read_registry
from atzoo.leaderboard.table import Filters, build_table

SEEDED = Path(__file__).resolve().parents[1] / "leaderboard" / "entries"


def fill_registry(root: Path, count: int) -> None:
    seeds = [json.loads(path.read_text()) for path in sorted(SEEDED.glob("paper-*.json"))]
    folder = entries_dir(root)
    folder.mkdir(parents=True)
    for index in range(count):
        entry = dict(seeds[index % len(seeds)], id=f"bench-{index:06d}")
        (folder / f"{entry['id']}.json").write_text(json.dumps(entry))


def seconds_per_request(request, repeats: int) -> float:
    request()
    started = time.perf_counter()
    for _ in range(repeats):
        request()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'entries':>8}  {'re-read every file (ms)':>24}  {'cached snapshot (ms)':>21}  {'speed-up':>8}")
    for count in args.entries:
        root = Path(tempfile.mkdtemp(prefix="atzoo-lb-bench-"))
        try:
            fill_registry(root, count)
            filters = Filters(release="403k")
            baseline = seconds_per_request(lambda: build_table(read_registry(root), "rank1", filters), args.repeats)
            cached = seconds_per_request(lambda: build_table(load_snapshot(root), "rank1", filters), args.repeats)
        finally:
            shutil.rmtree(root)
        print(f"{count:>8}  {baseline * 1000:>24.1f}  {cached * 1000:>21.1f}  {baseline / cached:>7.1f}x")


if __name__ == "__main__":
    main()
