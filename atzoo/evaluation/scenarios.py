"""The six scenarios, Any-Time and the scenario-agnostic mixed test, on the chunked ranking.

Every ranking is planned first and grouped by (model output, query rows): the galleries are split
by modality into segments, so a group multiplies its queries once by each segment it needs and
every ranking of the group (a scenario's part, the mixed test's cases) counts on those products.
With one output the six scenarios and the mixed test share every product; with six, the mixed
test's long-term cross-modality products are AD-LT's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atzoo.errors import FeaturesError
from atzoo.evaluation.inputs import TestData, prepare
from atzoo.evaluation.metrics import QueryResults, mean_of, summarize
from atzoo.evaluation.ranking import JunkRule, RankCase, Segment, rank_segments
from atzoo.protocol import (ANY_TIME, GALLERY_FLAGS, IR, MIXED_TEST_HEAD, PROTOCOL_VERSION, QUERY_FLAGS, RGB,
                            SCENARIOS, Scenario)

MIXED_GROUPS = {
    "Daytime": ("DT-ST", "DT-LT"),
    "Nighttime": ("NT-ST", "NT-LT"),
    "All-day": ("AD-ST", "AD-LT"),
    "Short-term": ("DT-ST", "NT-ST", "AD-ST"),
    "Long-term": ("DT-LT", "NT-LT", "AD-LT"),
    ANY_TIME: tuple(s.name for s in SCENARIOS),
}
"""Groups of the mixed test, weighted by valid queries."""

QUERY_MODALITIES = {"vm": (RGB,), "im": (IR,), "cm": (RGB, IR)}
"""Query modalities a scenario counts (an IR query has no gallery under `vm`)."""
MIXED_KEEP = {"vm": "rgb", "im": "ir", "cm": "other"}
"""The mixed test's modality rule for same-person targets."""


@dataclass
class RankingGroup:
    """Rankings of the same queries with the same output, over segments of galleries."""

    head: int
    queries: np.ndarray
    galleries: list[np.ndarray] = field(default_factory=list)
    rankings: list[tuple[tuple[str, str], JunkRule, tuple[int, ...]]] = field(default_factory=list)

    def segment(self, rows: np.ndarray) -> int:
        for number, gallery in enumerate(self.galleries):
            if np.array_equal(gallery, rows):
                return number
        self.galleries.append(rows)
        return len(self.galleries) - 1


class RankingPlan:
    """Every ranking of an evaluation, grouped so that equal products are computed once."""

    def __init__(self, data: TestData):
        self.data = data
        self.groups: dict[tuple[int, bytes], RankingGroup] = {}

    def _head(self, head: int) -> int:
        return head if self.data.features.shape[1] > 1 else 0

    def _with_modality(self, rows: np.ndarray, modality: int) -> np.ndarray:
        return rows[self.data.modality[rows] == modality]

    def add(self, key: tuple[str, str], head: int, queries: np.ndarray, galleries: list[np.ndarray],
            rule: JunkRule) -> None:
        if not len(queries):
            return
        head = self._head(head)
        group = self.groups.setdefault((head, queries.tobytes()), RankingGroup(head, queries))
        group.rankings.append((key, rule, tuple(group.segment(g) for g in galleries)))

    def add_scenario(self, scenario: Scenario) -> None:
        """Official filtering: the modality filter selects query and gallery subsets; the same-camera
        and clothes filters then only remove same-person items."""
        queries = self.data.rows(QUERY_FLAGS[scenario.name])
        gallery = self.data.rows(GALLERY_FLAGS[scenario.name])
        for modality in QUERY_MODALITIES[scenario.modality]:
            gallery_modality = modality if scenario.modality != "cm" else (IR if modality == RGB else RGB)
            self.add(("scenario", scenario.name), scenario.index, self._with_modality(queries, modality),
                     [self._with_modality(gallery, gallery_modality)], JunkRule(scenario.clothes))

    def add_mixed_case(self, scenario: Scenario) -> None:
        """The whole all-day gallery of the term (as its RGB and IR segments) with every other
        identity kept; only invalid same-person targets are removed."""
        queries = self.data.rows(QUERY_FLAGS[scenario.name])
        gallery = self.data.rows(scenario.pair.gallery_flags)
        segments = [self._with_modality(gallery, RGB), self._with_modality(gallery, IR)]
        rule = JunkRule(scenario.clothes, MIXED_KEEP[scenario.modality])
        for modality in QUERY_MODALITIES[scenario.modality]:
            self.add(("mixed", scenario.name), MIXED_TEST_HEAD, self._with_modality(queries, modality), segments,
                     rule)

    def run(self, chunk_size: int | None, device: Any, progress: bool) -> dict[tuple[str, str], QueryResults]:
        parts: dict[tuple[str, str], list[QueryResults]] = {}
        for group in self.groups.values():
            segments = [Segment(self.data.features[rows, group.head], self.data.labels.take(rows), rows)
                        for rows in group.galleries]
            cases = [RankCase(rule, slice(None), used) for _, rule, used in group.rankings]
            names = sorted({name for (_, name), _, _ in group.rankings})
            results = rank_segments(self.data.features[group.queries, group.head], segments,
                                    self.data.labels.take(group.queries), cases, chunk_size=chunk_size,
                                    device=device, progress=progress, description=", ".join(names))
            for (key, _, _), result in zip(group.rankings, results):
                parts.setdefault(key, []).append(result)
        return {key: QueryResults.concat(value) for key, value in parts.items()}


def _require_queries(results: QueryResults, what: str) -> None:
    if len(results) == 0:
        raise FeaturesError(f"{what} has no valid query (no query keeps a true match in its gallery); "
                            "check the flag, camera, person and clothes arrays")


def assemble(scenario_results: dict[str, QueryResults], mixed_results: dict[str, QueryResults] | None
             ) -> dict[str, Any]:
    """The result dict shared by the fast path and the reference oracle."""
    result: dict[str, Any] = {"protocol_version": PROTOCOL_VERSION}
    for name, results in scenario_results.items():
        _require_queries(results, f"scenario {name}")
        result[name] = summarize(results)
    result[ANY_TIME] = mean_of([result[s.name] for s in SCENARIOS])
    if mixed_results is not None:
        mixed: dict[str, Any] = {}
        for name, results in mixed_results.items():
            _require_queries(results, f"mixed test case {name}")
            mixed[name] = summarize(results)
        for group, members in MIXED_GROUPS.items():
            mixed[group] = summarize(QueryResults.concat([mixed_results[m] for m in members]))
        result["mixed"] = mixed
    return result


def evaluate_features(features: Any, person: Any, clothes: Any, camera: Any, flag: Any, *,
                      chunk_size: int | None = None, device: Any = None, mixed: bool = True,
                      progress: bool = False) -> dict[str, Any]:
    """Six scenarios, Any-Time and (unless `mixed=False`) the mixed test of N test images.

    `features`: (N, D) or (N, 6, D), numpy or torch; the labels: int arrays of length N. Rows whose
    flag is not 2-10 are ignored. `chunk_size`: queries per similarity block (default: blocks sized
    by `atzoo.evaluation.ranking.block_rows`). `device`: None or "cpu" computes in NumPy; a torch
    device (e.g. "cuda") runs the products and sorts there.
    """
    if chunk_size is not None and chunk_size < 1:
        raise FeaturesError(f"chunk_size must be at least 1, got {chunk_size}")
    data = prepare(features, person, clothes, camera, flag)
    plan = RankingPlan(data)
    for scenario in SCENARIOS:
        plan.add_scenario(scenario)
        if mixed:
            plan.add_mixed_case(scenario)
    results = plan.run(chunk_size, device, progress)

    def collect(kind: str) -> dict[str, QueryResults]:
        return {s.name: results.get((kind, s.name), QueryResults.empty()) for s in SCENARIOS}

    return assemble(collect("scenario"), collect("mixed") if mixed else None)
