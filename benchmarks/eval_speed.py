"""Speed and memory of the six-scenario evaluation against the plain reference oracle.

Generates clustered random features with AT-USTC-like labels (each pair, ST and LT, gets
--queries query and --gallery gallery images; about 25 gallery images per person; RGB and IR
cameras; several outfits per person), times the fast evaluation on all six scenarios and the
reference on a few scenarios (its total is extrapolated from those, which the table says),
and checks that both give the same metrics on the scenarios the reference ran.

    python benchmarks/eval_speed.py --queries 10000 --gallery 10000 --dim 768
    python benchmarks/eval_speed.py --queries 100000 --gallery 100000 --skip-reference
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import numpy as np
import torch

from atzoo.evaluation import evaluate_features
from atzoo.evaluation.inputs import prepare
from atzoo.evaluation.metrics import METRIC_KEYS, summarize
from atzoo.evaluation.reference import reference_scenario
from atzoo.protocol import LT_PAIR, SCENARIO_NAMES, SCENARIOS, ST_PAIR


TOLERANCE = 1e-3
"""Float32 similarities from different matrix-product kernels can differ in the last bit and swap
two near-tied items; metrics are fractions, so 1e-3 is 0.1 percentage point."""


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_test_set(queries: int, gallery: int, dim: int, seed: int = 0):
    """Labels and unit-norm float32 features: person centre + outfit + modality offsets + noise."""
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
    feats = np.empty((n, dim), dtype=np.float32)
    block = 50_000
    for start in range(0, n, block):
        rows = slice(start, min(start + block, n))
        pid, clothes, modality = labels["pid"][rows], labels["clothes"][rows], (labels["camera"][rows] > 8)
        part = centre[pid] + 0.8 * outfit[pid, clothes] + 1.2 * modality_shift[modality.astype(int)]
        part += 2.5 * rng.standard_normal(part.shape, dtype=np.float32)
        part /= np.linalg.norm(part, axis=1, keepdims=True)
        feats[rows] = part
    return feats, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=10_000, help="query images per pair (ST and LT)")
    parser.add_argument("--gallery", type=int, default=10_000, help="gallery images per pair")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--mixed", action="store_true", help="also time the mixed test (fast path)")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--reference-scenarios", default="AD-ST",
                        help="comma-separated scenarios the reference runs (its total is extrapolated)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.queries} queries x {args.gallery} gallery per pair, dim {args.dim}", flush=True)

    feats, labels = synthetic_test_set(args.queries, args.gallery, args.dim)
    label_arrays = (labels["pid"], labels["clothes"], labels["camera"], labels["flag"])
    rss_before = peak_rss_mb()
    print(f"features ready: {feats.nbytes / 2**20:.0f} MB, peak RSS so far {rss_before:.0f} MB", flush=True)

    start = time.perf_counter()
    fast = evaluate_features(feats, *label_arrays, chunk_size=args.chunk_size, mixed=False, progress=True)
    fast_seconds = time.perf_counter() - start
    fast_rss = peak_rss_mb()
    print(f"fast, six scenarios: {fast_seconds:.1f} s, peak RSS {fast_rss:.0f} MB "
          f"(+{fast_rss - rss_before:.0f} MB over the data)", flush=True)
    for name in SCENARIO_NAMES:
        row = fast[name]
        print(f"  {name}: {row['queries']} queries, R1 {100 * row['rank1']:.2f}, mAP {100 * row['mAP']:.2f}, "
              f"mINP {100 * row['mINP']:.2f}")
    if args.mixed:
        start = time.perf_counter()
        evaluate_features(feats, *label_arrays, chunk_size=args.chunk_size, mixed=True, progress=True)
        print(f"fast, six scenarios + mixed test: {time.perf_counter() - start:.1f} s, "
              f"peak RSS {peak_rss_mb():.0f} MB", flush=True)

    if args.skip_reference:
        return 0
    names = [name.strip() for name in args.reference_scenarios.split(",") if name.strip()]
    data = prepare(feats, *label_arrays)
    reference_seconds, mismatches = 0.0, []
    for name in names:
        scenario = SCENARIOS[SCENARIO_NAMES.index(name)]
        start = time.perf_counter()
        summary = summarize(reference_scenario(data, scenario))
        seconds = time.perf_counter() - start
        reference_seconds += seconds
        print(f"reference {name}: {seconds:.1f} s", flush=True)
        differences = {key: abs(summary[key] - fast[name][key]) for key in METRIC_KEYS}
        print(f"  largest metric difference {max(differences.values()):.2e}", flush=True)
        mismatches += [f"{name} {key}" for key, value in differences.items() if value > TOLERANCE]
    estimate = reference_seconds / len(names) * len(SCENARIOS)
    print()
    print(f"{'':28}{'seconds':>10}{'speed-up':>10}")
    print(f"{'reference, six (estimated)':28}{estimate:>10.1f}{'1.0x':>10}   "
          f"(measured on {', '.join(names)}, x{len(SCENARIOS) / len(names):g})")
    print(f"{'fast, six scenarios':28}{fast_seconds:>10.1f}{estimate / fast_seconds:>9.1f}x   "
          f"peak RSS {fast_rss:.0f} MB (+{fast_rss - rss_before:.0f} MB)")
    print(f"metrics agree within {TOLERANCE:g}" if not mismatches else f"METRICS DIFFER: {', '.join(mismatches)}")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
