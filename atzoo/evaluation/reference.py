"""A deliberately plain reimplementation of the official evaluation, used as the oracle the fast
evaluation is tested against and as the baseline of the speed benchmark.

It follows the official algorithm step by step: the whole similarity matrix of a scenario, one
argsort of that matrix (every query's full gallery order), the "is a true match" matrix in that
order, then a Python loop over queries which reorders the gallery labels, builds the removal masks
(same person and camera, modality, clothes), keeps the rest, and computes CMC and AP from the
cumulative sum of the kept matches, the precision at every kept position coming from a Python
loop over those positions (`precision_loop=True`, as the official code does) or from one numpy
expression (`precision_loop=False`, same values, used as a lighter second baseline).

Memory grows with queries x gallery. Ties are broken by gallery order (a stable sort of the
negated similarities). Its float32 similarities can differ from the fast path's in the last bit,
which may swap two items whose scores differ by about 1e-7; on exactly representable features
both agree exactly."""

from __future__ import annotations

from typing import Any

import numpy as np

from atzoo.evaluation.inputs import TestData, prepare
from atzoo.evaluation.metrics import QueryResults
from atzoo.evaluation.scenarios import assemble
from atzoo.protocol import GALLERY_FLAGS, MIXED_TEST_HEAD, QUERY_FLAGS, RGB, SCENARIOS, Scenario


def _cmc_ap(hits: np.ndarray, precision_loop: bool) -> tuple[int, float, float] | None:
    """Rank of the first true match, AP and INP of one query's kept matches in ranked order."""
    if not hits.any():
        return None
    cumulative = hits.cumsum()
    if precision_loop:
        precision = np.asarray([found / (position + 1.0) for position, found in enumerate(cumulative)])
    else:
        precision = cumulative / np.arange(1.0, len(hits) + 1)
    ap = float((precision * hits).sum() / hits.sum())
    hit_positions = np.flatnonzero(hits)
    return int(hit_positions[0]) + 1, ap, float(len(hit_positions) / (hit_positions[-1] + 1.0))


def _removed(scenario: Scenario, mixed: bool, q_person: int, q_clothes: int, q_camera: int, q_modality: int,
             person: np.ndarray, clothes: np.ndarray, camera: np.ndarray, modality: np.ndarray) -> np.ndarray:
    """The official removal masks for one query, over the gallery labels (in ranked order)."""
    same_person = person == q_person
    removed = same_person & (camera == q_camera)
    if scenario.modality == "vm":
        bad_modality = (q_modality != RGB) | (modality != RGB)
    elif scenario.modality == "im":
        bad_modality = (q_modality == RGB) | (modality == RGB)
    else:
        bad_modality = modality == q_modality
    removed |= (same_person & bad_modality) if mixed else bad_modality
    same_clothes = clothes == q_clothes
    removed |= same_person & (~same_clothes if scenario.clothes == "sc" else same_clothes)
    return removed


def _evaluate(data: TestData, scenario: Scenario, head: int, gallery_flags: tuple[int, ...], mixed: bool,
              precision_loop: bool) -> QueryResults:
    features = data.head(head)
    queries = data.rows(QUERY_FLAGS[scenario.name])
    gallery = data.rows(gallery_flags)
    if scenario.modality != "cm" and mixed:
        queries = queries[data.modality[queries] == (RGB if scenario.modality == "vm" else 3 - RGB)]
    similarity = features[queries] @ features[gallery].T
    indices = np.argsort(-similarity, axis=1, kind="stable")
    del similarity
    g_person, g_clothes, g_camera, g_modality = (data.person[gallery], data.clothes[gallery],
                                                 data.camera[gallery], data.modality[gallery])
    matches = g_person[indices] == data.person[queries][:, None]
    rows = []
    for q_index, q in enumerate(queries):
        order = indices[q_index]
        removed = _removed(scenario, mixed, data.person[q], data.clothes[q], data.camera[q], data.modality[q],
                           g_person[order], g_clothes[order], g_camera[order], g_modality[order])
        result = _cmc_ap(matches[q_index][~removed], precision_loop)
        if result is not None:
            rows.append(result)
    if not rows:
        return QueryResults.empty()
    first, ap, inp = zip(*rows)
    return QueryResults(np.array(first, np.int64), np.array(ap), np.array(inp))


def reference_scenario(data: TestData, scenario: Scenario, *, precision_loop: bool = True) -> QueryResults:
    return _evaluate(data, scenario, scenario.index, GALLERY_FLAGS[scenario.name], False, precision_loop)


def reference_mixed_case(data: TestData, scenario: Scenario, *, precision_loop: bool = True) -> QueryResults:
    return _evaluate(data, scenario, MIXED_TEST_HEAD, scenario.pair.gallery_flags, True, precision_loop)


def evaluate_features_reference(features: Any, person: Any, clothes: Any, camera: Any, flag: Any, *,
                                mixed: bool = True) -> dict[str, Any]:
    """Same inputs and result as `atzoo.evaluation.evaluate_features`, computed the slow way."""
    data = prepare(features, person, clothes, camera, flag)
    scenario_results = {s.name: reference_scenario(data, s) for s in SCENARIOS}
    mixed_results = {s.name: reference_mixed_case(data, s) for s in SCENARIOS} if mixed else None
    return assemble(scenario_results, mixed_results)
