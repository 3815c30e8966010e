"""Per-query results and their summaries: CMC at 1/5/10/20, mAP and mINP as fractions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CMC_RANKS = (1, 5, 10, 20)
METRIC_KEYS = tuple(f"rank{k}" for k in CMC_RANKS) + ("mAP", "mINP")


@dataclass(frozen=True)
class QueryResults:
    """One entry per valid query (a query with at least one true match among its kept gallery):
    rank (1-based) of its best true match, its average precision and its inverse negative penalty."""

    first_rank: np.ndarray
    ap: np.ndarray
    inp: np.ndarray

    def __len__(self) -> int:
        return len(self.first_rank)

    @staticmethod
    def empty() -> QueryResults:
        return QueryResults(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))

    @staticmethod
    def concat(parts: list[QueryResults]) -> QueryResults:
        if not parts:
            return QueryResults.empty()
        return QueryResults(np.concatenate([p.first_rank for p in parts]).astype(np.int64),
                            np.concatenate([p.ap for p in parts]).astype(np.float64),
                            np.concatenate([p.inp for p in parts]).astype(np.float64))


def summarize(results: QueryResults) -> dict[str, float | int]:
    """Means over the valid queries, plus their count under "queries"."""
    n = len(results)
    summary: dict[str, float | int] = {f"rank{k}": float(np.sum(results.first_rank <= k) / n) for k in CMC_RANKS}
    summary["mAP"] = float(np.sum(results.ap) / n)
    summary["mINP"] = float(np.sum(results.inp) / n)
    summary["queries"] = int(n)
    return summary


def mean_of(summaries: list[dict]) -> dict[str, float]:
    """Plain (unweighted) mean of several summaries' metrics, as the Any-Time figure is defined."""
    return {key: float(np.mean([s[key] for s in summaries])) for key in METRIC_KEYS}
