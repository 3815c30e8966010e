"""The six scenarios, Any-Time and the scenario-agnostic mixed test, on the fast chunked ranking."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from atzoo.errors import FeaturesError
from atzoo.evaluation.inputs import TestData, prepare
from atzoo.evaluation.metrics import QueryResults, mean_of, summarize
from atzoo.evaluation.ranking import JunkRule, RankCase, rank_cases
from atzoo.protocol import (ANY_TIME, GALLERY_FLAGS, IR, MIXED_TEST_HEAD, PROTOCOL_VERSION, QUERY_FLAGS, RGB,
                            SCENARIOS, QueryGalleryPair, Scenario)

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


class _Evaluator:
    def __init__(self, data: TestData, chunk_size: int | None, device: torch.device, progress: bool):
        self.data = data
        self.labels = data.labels
        self.chunk_size = chunk_size
        self.device = device
        self.progress = progress

    def _features(self, head: int, rows: np.ndarray) -> torch.Tensor:
        """Output `head` of `rows`, gathered straight into one contiguous array (no copy of the whole
        output first)."""
        key = head if self.data.features.shape[1] > 1 else 0
        return torch.from_numpy(self.data.features[rows, key]).to(self.device)

    def rank_shared(self, head: int, q_rows: np.ndarray, g_rows: np.ndarray, cases: list[RankCase], name: str
                    ) -> list[QueryResults]:
        return rank_cases(self._features(head, q_rows), self._features(head, g_rows), self.labels.take(q_rows),
                          self.labels.take(g_rows), cases, chunk_size=self.chunk_size, progress=self.progress,
                          description=name)

    def rank(self, head: int, q_rows: np.ndarray, g_rows: np.ndarray, rule: JunkRule, name: str) -> QueryResults:
        return self.rank_shared(head, q_rows, g_rows, [RankCase(rule, slice(None))], name)[0]

    def _with_modality(self, rows: np.ndarray, modality: int) -> np.ndarray:
        return rows[self.data.modality[rows] == modality]

    def scenario(self, scenario: Scenario) -> QueryResults:
        """Official filtering: the modality filter selects query and gallery subsets; the same-camera and
        clothes filters then only remove same-person items."""
        queries = self.data.rows(QUERY_FLAGS[scenario.name])
        gallery = self.data.rows(GALLERY_FLAGS[scenario.name])
        rule = JunkRule(scenario.clothes)
        parts = []
        for modality in QUERY_MODALITIES[scenario.modality]:
            gallery_modality = modality if scenario.modality != "cm" else (IR if modality == RGB else RGB)
            parts.append(self.rank(scenario.index, self._with_modality(queries, modality),
                                   self._with_modality(gallery, gallery_modality), rule, scenario.name))
        return QueryResults.concat(parts)

    def _mixed_queries(self, scenario: Scenario) -> np.ndarray:
        queries = self.data.rows(QUERY_FLAGS[scenario.name])
        if scenario.modality != "cm":
            queries = self._with_modality(queries, QUERY_MODALITIES[scenario.modality][0])
        return queries

    def mixed_term(self, pair: QueryGalleryPair) -> dict[str, QueryResults]:
        """The three mixed cases of one term. The DT and NT queries are disjoint parts of the AD
        queries, ranked against the same all-day gallery with the same output, so the queries are
        ordered DT, NT, then the rest, and each chunk's product is computed once for all three
        cases. Only invalid same-person targets are removed."""
        term = [s for s in SCENARIOS if s.pair == pair]
        single = [s for s in term if s.modality != "cm"]
        parts = [self._mixed_queries(s) for s in single]
        queries = self._mixed_queries(next(s for s in term if s.modality == "cm"))
        rest = np.setdiff1d(queries, np.concatenate(parts), assume_unique=True)
        ordered = np.concatenate(parts + [rest])
        if len(ordered) != len(queries):
            raise FeaturesError(f"the daytime and nighttime queries of term {pair.name} must be disjoint "
                                "parts of its all-day queries")
        bounds = np.cumsum([0] + [len(p) for p in parts])
        keep = {"vm": "rgb", "im": "ir", "cm": "other"}
        cases = [RankCase(JunkRule(s.clothes, keep[s.modality]),
                          slice(int(bounds[single.index(s)]), int(bounds[single.index(s) + 1]))
                          if s in single else slice(None)) for s in term]
        results = self.rank_shared(MIXED_TEST_HEAD, ordered, self.data.rows(pair.gallery_flags), cases,
                                   f"mixed {pair.name}")
        return {s.name: result for s, result in zip(term, results)}

    def mixed(self) -> dict[str, QueryResults]:
        results: dict[str, QueryResults] = {}
        for pair in dict.fromkeys(s.pair for s in SCENARIOS):
            results.update(self.mixed_term(pair))
        return {s.name: results[s.name] for s in SCENARIOS}


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
                      chunk_size: int | None = None, device: str | torch.device | None = None,
                      mixed: bool = True, progress: bool = False) -> dict[str, Any]:
    """Six scenarios, Any-Time and (unless `mixed=False`) the mixed test of N test images.

    `features`: (N, D) or (N, 6, D), numpy or torch; the labels: int arrays of length N. Rows whose
    flag is not 2-10 are ignored. `chunk_size`: queries per similarity block (default: a block of
    about 16M similarities, 64 MB). `device`: where to compute (default CPU).
    """
    if chunk_size is not None and chunk_size < 1:
        raise FeaturesError(f"chunk_size must be at least 1, got {chunk_size}")
    data = prepare(features, person, clothes, camera, flag)
    evaluator = _Evaluator(data, chunk_size, torch.device(device or "cpu"), progress)
    with torch.inference_mode():
        scenario_results = {s.name: evaluator.scenario(s) for s in SCENARIOS}
        mixed_results = evaluator.mixed() if mixed else None
    return assemble(scenario_results, mixed_results)
