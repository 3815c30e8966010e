"""The zero-shot cross-dataset test: a dataset's settings on the chunked ranking.

Every setting reduces to rankings the AT-USTC machinery already does exactly (`rank_queries` with
a `JunkRule`, bounded memory): the setting's filters become label arrays and row selections.
- no clothes rule: the rule "sc" on clothes labels that are all equal (nothing is dropped);
- no same-camera rule (DeepChange): query and gallery cameras that never coincide;
- an excluded (query camera, gallery camera) pair (SYSU-MM01's 3 -> 2): the queries of that
  camera are ranked against the gallery without that camera.
Seeded trials (single-shot galleries, RegDB's splits) report the mean and the standard deviation
(population) of each metric over the trials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from atzoo.data.layouts.base import CrossDataset
from atzoo.errors import FeaturesError
from atzoo.evaluation.cross_protocols import (CROSS_PROTOCOL_VERSION, PAPER_AVERAGE, DatasetProtocol, Setting,
                                              get_protocol, head_index, trial_count)
from atzoo.evaluation.inputs import Labels, check_features
from atzoo.evaluation.metrics import METRIC_KEYS, QueryResults, summarize
from atzoo.evaluation.ranking import JunkRule, rank_queries

SUMMARY_KEYS = ("rank1", "rank5", "rank10", "rank20", "mAP", "mINP")


def single_shot_gallery(dataset: CrossDataset, rows: np.ndarray, seed: int, trial: int) -> np.ndarray:
    """One row per (person, camera) of `rows`, drawn with a generator seeded by (seed, trial);
    the result is in ascending row order."""
    rng = np.random.default_rng([seed, trial])
    keys = dataset.person[rows] * 1_000_000 + dataset.camera[rows]
    order = np.lexsort((rows, keys))
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    picks = starts + (rng.random(len(starts)) * counts).astype(np.int64)
    return np.sort(rows[order[picks]])


def setting_pairs(dataset: CrossDataset, setting: Setting, *, seed: int = 0, trials: int | None = None
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(query rows, gallery rows) of each trial, with the setting's camera filters applied."""
    pairs = []
    for trial in range(trial_count(setting, trials)):
        query_name, gallery_name = setting.set_names(trial)
        query, gallery = dataset.rows(query_name), dataset.rows(gallery_name)
        if setting.cameras is not None:
            query = query[np.isin(dataset.camera[query], setting.cameras)]
            gallery = gallery[np.isin(dataset.camera[gallery], setting.cameras)]
        if setting.gallery_cameras is not None:
            gallery = gallery[np.isin(dataset.camera[gallery], setting.gallery_cameras)]
        if setting.single_shot:
            gallery = single_shot_gallery(dataset, gallery, seed, trial)
        pairs.append((query, gallery))
    return pairs


def _labels(dataset: CrossDataset, rows: np.ndarray, setting: Setting, side: str) -> Labels:
    clothes = dataset.clothes[rows] if setting.clothes != "any" else np.zeros(len(rows), np.int64)
    if setting.same_camera:
        camera = dataset.camera[rows]
    else:
        camera = np.full(len(rows), 1 if side == "query" else 2, np.int64)
    return Labels(dataset.person[rows], clothes, camera)


RankFunction = Callable[[np.ndarray, np.ndarray, Labels, Labels, JunkRule], QueryResults]


def _rank_numpy(query_features: np.ndarray, gallery_features: np.ndarray, query: Labels, gallery: Labels,
                rule: JunkRule, chunk_size: int | None) -> QueryResults:
    import torch

    return rank_queries(torch.from_numpy(query_features), torch.from_numpy(gallery_features), query, gallery, rule,
                        chunk_size=chunk_size)


def rank_trial(dataset: CrossDataset, features: np.ndarray, setting: Setting, query: np.ndarray,
               gallery: np.ndarray, chunk_size: int | None = None) -> QueryResults:
    """Per-query results of one trial; `features` (N, D) L2-normalised rows of `dataset`."""
    rule = JunkRule("sc" if setting.clothes == "any" else setting.clothes)
    excluded: dict[int, set[int]] = {}
    for query_camera, gallery_camera in setting.excluded_pairs:
        excluded.setdefault(query_camera, set()).add(gallery_camera)
    groups = [(query[~np.isin(dataset.camera[query], list(excluded))], gallery)]
    for query_camera, gallery_cameras in excluded.items():
        groups.append((query[dataset.camera[query] == query_camera],
                       gallery[~np.isin(dataset.camera[gallery], list(gallery_cameras))]))
    parts = []
    for q_rows, g_rows in groups:
        if len(q_rows) and len(g_rows):
            parts.append(_rank_numpy(np.ascontiguousarray(features[q_rows]), np.ascontiguousarray(features[g_rows]),
                                     _labels(dataset, q_rows, setting, "query"),
                                     _labels(dataset, g_rows, setting, "gallery"), rule, chunk_size))
    return QueryResults.concat(parts)


def summarize_trials(trial_results: list[QueryResults], what: str) -> dict[str, Any]:
    """Mean over trials of each metric, its spread (standard deviation), and the valid queries."""
    summaries = []
    for trial, results in enumerate(trial_results):
        if len(results) == 0:
            raise FeaturesError(f"{what}: trial {trial + 1} has no valid query (no query keeps a true match "
                                "in its gallery)")
        summaries.append(summarize(results))
    result: dict[str, Any] = {key: float(np.mean([s[key] for s in summaries])) for key in METRIC_KEYS}
    result["spread"] = {key: float(np.std([s[key] for s in summaries])) for key in METRIC_KEYS}
    result["queries"] = int(summaries[0]["queries"]) if len(summaries) == 1 else float(
        np.mean([s["queries"] for s in summaries]))
    result["trials"] = len(summaries)
    return result


def _normalised(features: np.ndarray) -> np.ndarray:
    features = np.ascontiguousarray(features, dtype=np.float32)
    norms = np.sqrt(np.einsum("nhd,nhd->nh", features, features))[:, :, None]
    return (features / np.maximum(norms, np.float32(1e-12))).astype(np.float32, copy=False)


def evaluate_dataset(dataset: CrossDataset, features: Any, *, heads: dict | None = None, seed: int = 0,
                     trials: int | None = None, chunk_size: int | None = None) -> dict[str, Any]:
    """Every setting of `dataset`'s protocol and its headline figure.

    `features`: (N, D) or (N, 6, D) embeddings of `dataset`'s rows in order (numpy or torch).
    `heads`: a method's declared head mapping (see `head_index`). `trials` overrides the number
    of trials of randomised settings (RegDB: at most its ten splits).
    """
    protocol = get_protocol(dataset.layout)
    array = check_features(features, len(dataset))
    if not np.all(np.isfinite(array)):
        raise FeaturesError("features contain NaN or infinite values")
    array = _normalised(array)
    settings: dict[str, Any] = {}
    absent = [s.name for s in protocol.settings if any(n not in dataset.sets for n in s.set_names(0))]
    for setting in protocol.settings:
        if setting.name in absent:
            continue
        head = head_index(protocol.layout, setting, array.shape[1], heads)
        head_features = np.ascontiguousarray(array[:, head])
        what = f"{protocol.title} {setting.name}"
        results = [rank_trial(dataset, head_features, setting, query, gallery, chunk_size)
                   for query, gallery in setting_pairs(dataset, setting, seed=seed, trials=trials)]
        settings[setting.name] = {"head": head, "scenario": setting.scenario, **summarize_trials(results, what)}
    return {"protocol_version": CROSS_PROTOCOL_VERSION, "layout": protocol.layout, "title": protocol.title,
            "outputs": int(array.shape[1]), "seed": seed, "settings": settings, "absent_settings": absent,
            "headline": headline(protocol, settings)}


def headline(protocol: DatasetProtocol, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The dataset's figure: the mean of its headline settings' metrics (None when the root lacks
    one of them, as a CUHK03 root with labeled boxes only lacks the detected setting)."""
    if any(name not in settings for name in protocol.headline):
        return None
    chosen = [settings[name] for name in protocol.headline]
    return {"settings": list(protocol.headline),
            **{key: float(np.mean([s[key] for s in chosen])) for key in SUMMARY_KEYS}}


def paper_average(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The paper's cross-dataset average (rank-1 and mAP over `PAPER_AVERAGE`'s headline figures);
    None values with the missing datasets named when not all five were evaluated."""
    missing = [name for name in PAPER_AVERAGE if results.get(name, {}).get("headline") is None]
    if missing:
        return {"rank1": None, "mAP": None, "datasets": list(PAPER_AVERAGE), "missing": missing}
    return {"rank1": float(np.mean([results[n]["headline"]["rank1"] for n in PAPER_AVERAGE])),
            "mAP": float(np.mean([results[n]["headline"]["mAP"] for n in PAPER_AVERAGE])),
            "datasets": list(PAPER_AVERAGE), "missing": []}
