"""Speed and memory of the six-scenario evaluation against the floor and the reference oracle.

Generates clustered random features with AT-USTC-like labels (each pair, ST and LT, gets
--queries query and --gallery gallery images; about 25 gallery images per person; RGB and IR
cameras; several outfits per person; --heads 6 gives every scenario its own output), times the
fast evaluation on all six scenarios, then, in the same process, the reference (the official
algorithm: whole similarity matrix, full argsort, a Python loop per query) in two styles:
"official" (precision at every kept position from a Python loop, as the official code) and
"vectorised" (that step in numpy). Scenarios a style did not run are estimated from its measured
seconds per query-gallery pair (the table says which), and metrics are checked to agree.

The floor, measured in the same run: the matrix products of exactly the query-gallery pairs the
evaluation ranks (same blocks, same BLAS) plus, for every row, the top-20 partial sort CMC@20 needs
(`np.partition`). mAP and mINP need the rank of every true match, more than a top-20, so no exact
evaluation can go below it. The ratio atzoo / floor is printed, with atzoo's peak memory (resident
memory sampled every 5 ms during the call, above what it was before).

    python benchmarks/eval_speed.py --queries 10000 --gallery 10000 --dim 768 --heads 6 \
        --reference-scenarios vectorised=all,official=AD-ST
    python benchmarks/eval_speed.py --queries 100000 --gallery 100000 --heads 1 --skip-reference
    python benchmarks/eval_speed.py --queries 200 --gallery 400 --dim 64 --skip-reference   # seconds
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from atzoo.evaluation import evaluate_features
from atzoo.evaluation.inputs import TestData, prepare
from atzoo.evaluation.metrics import METRIC_KEYS, summarize
from atzoo.evaluation.ranking import block_rows
from atzoo.evaluation.reference import reference_scenario
from atzoo.evaluation.scenarios import RankingPlan
from atzoo.protocol import GALLERY_FLAGS, LT_PAIR, QUERY_FLAGS, SCENARIO_NAMES, SCENARIOS, ST_PAIR

CMC_DEPTH = 20


TOLERANCE = 1e-3
"""Float32 similarities from different matrix-product kernels can differ in the last bit and swap
two near-tied items; metrics are fractions, so 1e-3 is 0.1 percentage point."""

STYLES = {"official": True, "vectorised": False}
"""Reference styles and their `precision_loop` flag."""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextmanager
def peak_memory() -> Iterator[dict[str, float]]:
    """Peak resident memory above the starting one while the block runs, sampled every 5 ms."""
    result = {"start": rss_mb(), "peak": rss_mb()}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            result["peak"] = max(result["peak"], rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        done.set()
        thread.join()
        result["peak"] = max(result["peak"], rss_mb())
        result["above"] = result["peak"] - result["start"]


def floor_seconds(data: TestData, mixed: bool, chunk_size: int | None, share: float = 1.0) -> float:
    """The products of every query-gallery pair the evaluation ranks, in the same blocks, plus a
    top-20 partial sort of each row: what any exact evaluation has to do at least. With `share` < 1
    only every (1/share)-th block is timed (at least one per group) and the time scaled by the
    pairs it covered, for very large runs."""
    plan = RankingPlan(data)
    for scenario in SCENARIOS:
        plan.add_scenario(scenario)
        if mixed:
            plan.add_mixed_case(scenario)
    seconds = 0.0
    for group in plan.groups.values():
        galleries = [np.ascontiguousarray(data.features[rows, group.head]) for rows in group.galleries]
        queries = data.features[group.queries, group.head]
        rows = min(chunk_size or block_rows(sum(map(len, galleries))), len(queries))
        buffers = [np.empty((rows, len(g)), np.float32) for g in galleries]
        starts = range(0, len(queries), rows)
        timed = starts[::max(1, round(1 / share))]
        started = time.perf_counter()
        for start in timed:
            chunk = queries[start:start + rows]
            for gallery, buffer in zip(galleries, buffers):
                block = buffer[:len(chunk)]
                np.matmul(chunk, gallery.T, out=block)
                if block.shape[1] > CMC_DEPTH:
                    block.partition(block.shape[1] - CMC_DEPTH, axis=1)
        covered = sum(min(rows, len(queries) - start) for start in timed)
        seconds += (time.perf_counter() - started) * len(queries) / covered
    return seconds


def load_average() -> str:
    """The 1/5/15-minute load average: other jobs on the machine slow both timings."""
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def synthetic_test_set(queries: int, gallery: int, dim: int, heads: int = 1, seed: int = 0):
    """Labels and unit-norm float32 features (N, D), or (N, heads, D) when heads > 1: person centre
    + outfit + modality offsets + noise drawn independently for every head."""
    rng = np.random.default_rng(seed)
    persons = max(2, gallery // 25)
    outfits = 3
    centre = rng.standard_normal((persons, dim), dtype=np.float32)
    outfit = rng.standard_normal((persons, outfits, dim), dtype=np.float32)
    modality_shift = rng.standard_normal((2, dim), dtype=np.float32)
    labels = {"pid": [], "clothes": [], "camera": [], "flag": []}
    for pair in (ST_PAIR, LT_PAIR):
        for count, flags in ((queries, pair.query_flags), (gallery, pair.gallery_flags)):
            camera = rng.integers(1, 17, count)
            labels["pid"].append(rng.integers(0, persons, count))
            labels["clothes"].append(rng.integers(0, outfits, count))
            labels["camera"].append(camera)
            labels["flag"].append(np.where(camera <= 8, flags[0], flags[1]))
    labels = {key: np.concatenate(parts) for key, parts in labels.items()}
    n = len(labels["pid"])
    feats = np.empty((n, heads, dim), dtype=np.float32)
    block = 10_000
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        pid, clothes, modality = labels["pid"][rows], labels["clothes"][rows], (labels["camera"][rows] > 8)
        base = centre[pid] + 0.8 * outfit[pid, clothes] + 1.2 * modality_shift[modality.astype(int)]
        for head in range(heads):
            part = base + 2.5 * rng.standard_normal(base.shape, dtype=np.float32)
            part /= np.linalg.norm(part, axis=1, keepdims=True)
            feats[rows, head] = part
    return (feats[:, 0] if heads == 1 else feats), labels


def pair_size(data: TestData, name: str) -> int:
    """Query-gallery pairs a scenario's reference ranks (its similarity matrix's size)."""
    return len(data.rows(QUERY_FLAGS[name])) * len(data.rows(GALLERY_FLAGS[name]))


def parse_reference_plan(text: str) -> dict[str, list[str]]:
    """"vectorised=all,official=AD-ST+DT-ST" -> {"vectorised": [six names], "official": [...]}."""
    plan: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        style, _, names = item.partition("=")
        if style not in STYLES:
            raise SystemExit(f"unknown reference style {style!r}; expected one of {sorted(STYLES)}")
        chosen = list(SCENARIO_NAMES) if names in ("", "all") else names.split("+")
        unknown = [name for name in chosen if name not in SCENARIO_NAMES]
        if unknown:
            raise SystemExit(f"unknown scenario {unknown[0]!r}; expected one of {', '.join(SCENARIO_NAMES)}")
        plan[style] = chosen
    return plan


def time_reference(data: TestData, fast: dict, style: str, names: list[str]) -> tuple[float, list[str], str]:
    """Seconds for all six scenarios (measured ones plus estimates), mismatching metrics, a note."""
    measured: dict[str, float] = {}
    mismatches = []
    for name in names:
        scenario = SCENARIOS[SCENARIO_NAMES.index(name)]
        start = time.perf_counter()
        summary = summarize(reference_scenario(data, scenario, precision_loop=STYLES[style]))
        measured[name] = time.perf_counter() - start
        difference = max(abs(summary[key] - fast[name][key]) for key in METRIC_KEYS)
        print(f"reference ({style}) {name}: {measured[name]:.1f} s, {pair_size(data, name):,} pairs, "
              f"largest metric difference from the fast path {difference:.2e}", flush=True)
        mismatches += [f"{style} {name}"] if difference > TOLERANCE else []
    rate = sum(measured.values()) / sum(pair_size(data, name) for name in measured)
    total = sum(measured.get(name, rate * pair_size(data, name)) for name in SCENARIO_NAMES)
    estimated = [name for name in SCENARIO_NAMES if name not in measured]
    note = "all six measured" if not estimated else (f"measured {', '.join(measured)}; "
                                                     f"{', '.join(estimated)} estimated by pair count")
    return total, mismatches, note


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=10_000, help="query images per pair (ST and LT)")
    parser.add_argument("--gallery", type=int, default=10_000, help="gallery images per pair")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--heads", type=int, choices=(1, 6), default=6, help="model outputs")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--device", default=None, help="torch device of the fast path (e.g. cuda); default CPU")
    parser.add_argument("--mixed", action="store_true", help="also time the mixed test (fast path)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--floor-share", type=float, default=1.0,
                        help="share of the blocks the floor times (scaled by pairs); 1 times them all")
    parser.add_argument("--reference-scenarios", default="vectorised=all,official=AD-ST",
                        help="STYLE=NAME+NAME|all,...: which scenarios each reference style runs; the "
                             "others are estimated from its seconds per query-gallery pair")
    args = parser.parse_args(argv)
    plan = {} if args.skip_reference else parse_reference_plan(args.reference_scenarios)
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs; {args.queries} queries x {args.gallery} gallery per "
          f"pair, dim {args.dim}, {args.heads} head(s); {load_average()}", flush=True)

    feats, labels = synthetic_test_set(args.queries, args.gallery, args.dim, args.heads)
    label_arrays = (labels["pid"], labels["clothes"], labels["camera"], labels["flag"])
    print(f"features ready: {feats.nbytes / 2**20:.0f} MB, peak RSS so far {peak_rss_mb():.0f} MB", flush=True)
    data = prepare(feats, *label_arrays)

    fast_seconds = 0.0
    summary = []
    fast: dict = {}
    for mixed in (False, True) if args.mixed else (False,):
        with peak_memory() as memory:
            start = time.perf_counter()
            result = evaluate_features(feats, *label_arrays, chunk_size=args.chunk_size, device=args.device,
                                       mixed=mixed, progress=True)
            seconds = time.perf_counter() - start
        floor = floor_seconds(data, mixed, args.chunk_size, args.floor_share)
        what = "six scenarios" + (" + mixed test" if mixed else "")
        estimated = "" if args.floor_share >= 1 else f" (estimated from {args.floor_share:.0%} of the blocks)"
        print(f"atzoo, {what}: {seconds:.1f} s, peak memory +{memory['above']:.0f} MB; floor {floor:.1f} s{estimated}; "
              f"ratio {seconds / floor:.2f}; {load_average()}", flush=True)
        summary.append((what, seconds, floor, memory["above"]))
        if not mixed:
            fast, fast_seconds = result, seconds
    for name in SCENARIO_NAMES:
        row = fast[name]
        print(f"  {name}: {row['queries']} queries, R1 {100 * row['rank1']:.2f}, mAP {100 * row['mAP']:.2f}, "
              f"mINP {100 * row['mINP']:.2f}")
    print()
    print(f"{'':34}{'atzoo s':>9}{'floor s':>9}{'ratio':>7}{'peak memory':>13}")
    for what, seconds, floor, above in summary:
        print(f"{what:34}{seconds:>9.2f}{floor:>9.2f}{seconds / floor:>7.2f}{f'+{above:.0f} MB':>13}")
    if not plan:
        print(load_average())
        return 0

    rows, mismatches = [], []
    for style, names in plan.items():
        seconds, bad, note = time_reference(data, fast, style, names)
        rows.append((f"reference, {style}", seconds, note))
        mismatches += bad
    print()
    print(f"{'':28}{'seconds':>10}{'speed-up':>10}")
    for label, seconds, note in rows:
        print(f"{label:28}{seconds:>10.1f}{seconds / fast_seconds:>9.1f}x   ({note}; speed-up of the fast path)")
    print(f"{'fast, six scenarios':28}{fast_seconds:>10.1f}{'':>10}   whole process peak {peak_rss_mb():.0f} MB")
    print(load_average())
    print(f"metrics agree within {TOLERANCE:g}" if not mismatches else f"METRICS DIFFER: {', '.join(mismatches)}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
