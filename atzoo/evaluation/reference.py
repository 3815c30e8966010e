"""A deliberately plain reimplementation of the official evaluation: one query at a time, a full
stable argsort of its similarities, boolean masks, cumulative sums. Slow by design; it is the
oracle the fast evaluation is tested against and the baseline of the speed benchmark.

Like the official code it computes the whole similarity matrix of a scenario at once (memory
grows with queries x gallery). Its float32 similarities can differ from the fast path's in the last
bit, which may swap two items whose scores differ by about 1e-7; on exactly representable
features both agree exactly."""

from __future__ import annotations

from typing import Any

import numpy as np

from atzoo.evaluation.inputs import TestData, prepare
from atzoo.evaluation.metrics import QueryResults
from atzoo.evaluation.scenarios import assemble
from atzoo.protocol import GALLERY_FLAGS, MIXED_TEST_HEAD, QUERY_FLAGS, RGB, SCENARIOS, Scenario


def _query_result(similarity: np.ndarray, matches: np.ndarray, keep: np.ndarray) -> tuple[int, float, float] | None:
    order = np.argsort(-similarity, kind="stable")
    hits = matches[order][keep[order]]
    if not hits.any():
        return None
    hit_positions = np.flatnonzero(hits)
    cmc_first = int(hit_positions[0]) + 1
    precisions = np.arange(1, len(hit_positions) + 1) / (hit_positions + 1.0)
    inp = len(hit_positions) / (hit_positions[-1] + 1.0)
    return cmc_first, float(precisions.mean()), float(inp)


def _scenario_keep(data: TestData, scenario: Scenario, q: int, gallery: np.ndarray, mixed: bool) -> np.ndarray | None:
    """Which gallery images this query is ranked against; None if the query does not count."""
    same_person = data.person[gallery] == data.person[q]
    keep = ~(same_person & (data.camera[gallery] == data.camera[q]))
    q_modality, g_modality = data.modality[q], data.modality[gallery]
    if scenario.modality in ("vm", "im"):
        wanted = RGB if scenario.modality == "vm" else 3 - RGB
        if q_modality != wanted:
            return None
        bad_modality = g_modality != wanted
    else:
        bad_modality = g_modality == q_modality
    keep &= ~((same_person if mixed else True) & bad_modality)
    same_clothes = data.clothes[gallery] == data.clothes[q]
    keep &= ~(same_person & (~same_clothes if scenario.clothes == "sc" else same_clothes))
    return keep


def _evaluate(data: TestData, scenario: Scenario, head: int, gallery_flags: tuple[int, ...], mixed: bool
              ) -> QueryResults:
    features = data.head(head)
    queries = data.rows(QUERY_FLAGS[scenario.name])
    gallery = data.rows(gallery_flags)
    similarities = features[queries] @ features[gallery].T  # the whole matrix at once, as the official code
    rows = []
    for q, similarity in zip(queries, similarities):
        keep = _scenario_keep(data, scenario, q, gallery, mixed)
        if keep is None:
            continue
        result = _query_result(similarity, data.person[gallery] == data.person[q], keep)
        if result is not None:
            rows.append(result)
    if not rows:
        return QueryResults.empty()
    first, ap, inp = zip(*rows)
    return QueryResults(np.array(first, np.int64), np.array(ap), np.array(inp))


def reference_scenario(data: TestData, scenario: Scenario) -> QueryResults:
    return _evaluate(data, scenario, scenario.index, GALLERY_FLAGS[scenario.name], mixed=False)


def reference_mixed_case(data: TestData, scenario: Scenario) -> QueryResults:
    return _evaluate(data, scenario, MIXED_TEST_HEAD, scenario.pair.gallery_flags, mixed=True)


def evaluate_features_reference(features: Any, person: Any, clothes: Any, camera: Any, flag: Any, *,
                                mixed: bool = True) -> dict[str, Any]:
    """Same inputs and result as `atzoo.evaluation.evaluate_features`, computed the slow way."""
    data = prepare(features, person, clothes, camera, flag)
    scenario_results = {s.name: reference_scenario(data, s) for s in SCENARIOS}
    mixed_results = {s.name: reference_mixed_case(data, s) for s in SCENARIOS} if mixed else None
    return assemble(scenario_results, mixed_results)
