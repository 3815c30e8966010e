"""Chunked ranking in NumPy: the rank of every true match of every query, exactly as a full sort
of each query's kept gallery would give it, ties broken by gallery order.

A gallery is ranked as one or more parts (segments, e.g. its RGB and its IR images). For a chunk
of queries each segment's similarity block comes from one matrix product and is sorted row by row
(NumPy's vectorised sort of float32). A true match of value v then ranks after every item above v
(two binary searches in each sorted row: items < v and items <= v) and after the items equal to v
that come earlier in gallery order (only counted when v is tied, which real features rarely are),
minus the same-person items the protocol removes (few: compared directly). Nothing is ever set to
-inf, so every ranking that uses the same queries, output and gallery parts shares one product and
one sort per chunk (`RankCase`). Memory is two blocks per segment (similarities and their sorted
copy), sized from a budget and the memory available (`block_rows`).

With `device` a torch device (e.g. CUDA), the products and sorts run there and the sorted blocks
come back to the CPU for the counting; torch is imported only then.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from atzoo.errors import FeaturesError
from atzoo.evaluation.inputs import Labels
from atzoo.evaluation.metrics import QueryResults

BLOCK_BUDGET = 256 << 20
"""Default bytes for one chunk's blocks (similarities and their sorted copy, every segment)."""
MEMORY_SHARE = 0.25
"""Blocks never take more than this share of the memory available when the ranking starts."""
MAX_CHUNK_ROWS = 8192
PAIR_COMPARISONS = 1 << 22
"""Elements of the (rows x matches x matches) comparison of same-person items done at once."""


@dataclass(frozen=True)
class JunkRule:
    """Which same-person gallery items are not valid targets for a query (other persons never are).

    Always: same camera. clothes "sc": different clothes; "cc": same clothes.
    keep_modality: None (no modality rule), "rgb" / "ir" (only that gallery modality is a valid
    target), "other" (only the modality the query is not).
    """

    clothes: str
    keep_modality: str | None = None

    def junk(self, query: Labels, gallery: Labels, q_rows: np.ndarray, g_rows: np.ndarray) -> np.ndarray:
        """Boolean, for same-person pairs (q_rows[i], g_rows[i])."""
        junk = query.camera[q_rows] == gallery.camera[g_rows]
        same_clothes = query.clothes[q_rows] == gallery.clothes[g_rows]
        junk |= ~same_clothes if self.clothes == "sc" else same_clothes
        g_modality = gallery.modality[g_rows]
        if self.keep_modality == "rgb":
            junk |= g_modality != 1
        elif self.keep_modality == "ir":
            junk |= g_modality != 2
        elif self.keep_modality == "other":
            junk |= g_modality == query.modality[q_rows]
        return junk


@dataclass(frozen=True)
class Segment:
    """One part of a gallery: L2-normalised features (G x D), labels, and `order`, the gallery
    order that breaks ties (strictly increasing within the segment, comparable across segments)."""

    features: np.ndarray
    labels: Labels
    order: np.ndarray

    def __len__(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class RankCase:
    """One ranking sharing the products of a chunk with others: the contiguous query rows it covers,
    the rule that removes its invalid same-person targets, and the segments that form its gallery
    (None: all)."""

    rule: JunkRule
    rows: slice
    segments: tuple[int, ...] | None = None


def available_memory() -> int:
    """Bytes of memory available now (Linux MemAvailable; else free pages; else 4 GiB)."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def block_rows(gallery_size: int, budget: int | None = None, available: int | None = None) -> int:
    """Query rows per chunk: the similarity block and its sorted copy (8 bytes per gallery item
    and row) fit in `budget` (default `BLOCK_BUDGET`) and in `MEMORY_SHARE` of the available memory;
    at least 1, at most `MAX_CHUNK_ROWS`."""
    limit = min(BLOCK_BUDGET if budget is None else budget,
                int(MEMORY_SHARE * (available_memory() if available is None else available)))
    return int(min(MAX_CHUNK_ROWS, max(1, limit // (8 * max(gallery_size, 1)))))


class SamePersonIndex:
    """For each query, the gallery indices of the same person (padded with -1)."""

    def __init__(self, gallery_person: np.ndarray):
        self.order = np.argsort(gallery_person, kind="stable")
        self.persons, self.starts, self.counts = np.unique(gallery_person[self.order], return_index=True,
                                                           return_counts=True)

    def lookup(self, query_person: np.ndarray) -> np.ndarray:
        """(queries x widest group) gallery indices."""
        if len(self.persons) == 0:
            return np.full((len(query_person), 1), -1, dtype=np.int64)
        slot = np.clip(np.searchsorted(self.persons, query_person), 0, len(self.persons) - 1)
        count = np.where(self.persons[slot] == query_person, self.counts[slot], 0)
        offset = np.arange(max(int(count.max(initial=0)), 1))
        present = offset[None, :] < count[:, None]
        positions = np.where(present, self.starts[slot][:, None] + offset[None, :], 0)
        return np.where(present, self.order[positions], -1)


Products = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""(query chunk, segment number) -> (similarities, the same sorted along each row), float32."""


def sorting_threads() -> int:
    """Threads that sort a block's rows: the CPUs this process may use (NumPy's sort releases the
    GIL; BLAS already spreads the products over them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _numpy_products(segments: Sequence[Segment], rows: int, pool: ThreadPoolExecutor, threads: int) -> Products:
    """Products by BLAS; each block's rows copied and sorted in `threads` parts on `pool`."""
    buffers = {i: (np.empty((rows, len(s)), np.float32), np.empty((rows, len(s)), np.float32))
               for i, s in enumerate(segments)}
    transposed = [s.features.T for s in segments]

    def sort_rows(block: np.ndarray, ordered: np.ndarray, part: slice) -> None:
        ordered[part] = block[part]
        ordered[part].sort(axis=1)

    def products(queries: np.ndarray, segment: int) -> tuple[np.ndarray, np.ndarray]:
        block, ordered = (buffer[:len(queries)] for buffer in buffers[segment])
        np.matmul(queries, transposed[segment], out=block)
        step = -(-len(queries) // threads)
        parts = [slice(start, start + step) for start in range(0, len(queries), step)]
        for done in [pool.submit(sort_rows, block, ordered, part) for part in parts]:
            done.result()
        return block, ordered

    return products


def _torch_products(segments: Sequence[Segment], device: Any) -> Products:
    import torch

    on_device = [torch.from_numpy(np.ascontiguousarray(s.features)).to(device) for s in segments]

    def products(queries: np.ndarray, segment: int) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            block = torch.from_numpy(np.ascontiguousarray(queries)).to(device) @ on_device[segment].T
            ordered = block.sort(dim=1).values
            return block.cpu().numpy(), ordered.cpu().numpy()

    return products


def _is_cpu(device: Any) -> bool:
    return device is None or str(device) == "cpu"


@dataclass
class _Matches:
    """The same-person items of a chunk's rows in a case's segments (rows x slots)."""

    values: np.ndarray
    order: np.ndarray
    valid: np.ndarray
    junk: np.ndarray


def _matches(blocks: dict[int, np.ndarray], segments: Sequence[Segment], indexes: Sequence[SamePersonIndex],
             used: Sequence[int], query: Labels, rows: np.ndarray, local: slice, rule: JunkRule) -> _Matches:
    parts = []
    for s in used:
        same = indexes[s].lookup(query.person[rows])
        present = same >= 0
        slot = np.where(present, same, 0)
        junk = np.zeros_like(present)
        junk[present] = rule.junk(query, segments[s].labels, np.broadcast_to(rows[:, None], same.shape)[present],
                                  same[present])
        block = blocks[s][local]
        flat = slot + (np.arange(len(slot)) * block.shape[1])[:, None]
        values = block.reshape(-1).take(flat) if block.shape[1] else np.zeros(slot.shape, np.float32)
        parts.append((values, segments[s].order[slot] if len(segments[s]) else slot, present & ~junk,
                      present & junk))
    return _Matches(*(np.concatenate(column, axis=1) for column in zip(*parts)))


def _removed_above(matches: _Matches) -> np.ndarray:
    """For every slot, how many removed same-person items rank ahead of it (higher similarity, or
    equal and earlier in gallery order)."""
    values, order, junk = matches.values, matches.order, matches.junk
    removed = np.zeros(values.shape, np.int64)
    if not junk.any():
        return removed
    width = values.shape[1]
    step = max(1, PAIR_COMPARISONS // max(width * width, 1))
    for start in range(0, len(values), step):
        part = slice(start, start + step)
        v, o = values[part], order[part]
        ahead = (v[:, None, :] > v[:, :, None]) | ((v[:, None, :] == v[:, :, None]) & (o[:, None, :] < o[:, :, None]))
        removed[part] = np.count_nonzero(ahead & junk[part][:, None, :], axis=2)
    return removed


def _earlier_ties(blocks: dict[int, np.ndarray], segments: Sequence[Segment], used: Sequence[int], local: slice,
                  matches: _Matches, tied: np.ndarray) -> np.ndarray:
    """For the tied slots: items of equal similarity earlier in gallery order (removed ones included)."""
    earlier = np.zeros(tied.shape, np.int64)
    for row in np.flatnonzero(tied.any(1)):
        slots = np.flatnonzero(tied[row])
        values, order = matches.values[row, slots], matches.order[row, slots]
        for s in used:
            if not len(segments[s]):
                continue
            cut = np.searchsorted(segments[s].order, order)
            similarity = blocks[s][local][row]
            equal = similarity[None, :] == values[:, None]
            earlier[row, slots] += np.count_nonzero(equal & (np.arange(len(similarity))[None, :] < cut[:, None]), 1)
    return earlier


def _results(rank: np.ndarray, valid: np.ndarray) -> QueryResults:
    """Per-query CMC rank, AP and INP from the ranks of the valid true matches."""
    count = valid.sum(1)
    has_match = count > 0
    rank, count = rank[has_match], count[has_match]
    ranks = np.sort(np.where(valid[has_match], rank, np.iinfo(np.int64).max), axis=1).astype(np.float64)
    position = np.arange(ranks.shape[1])
    in_use = position[None, :] < count[:, None]
    precision = np.where(in_use, (position[None, :] + 1.0) / ranks, 0.0)
    ap = precision.sum(1) / count
    last = np.take_along_axis(ranks, (count - 1)[:, None], axis=1)[:, 0]
    return QueryResults(ranks[:, 0].astype(np.int64), ap, count / last)


def _case_results(blocks: dict[int, np.ndarray], sorted_blocks: dict[int, np.ndarray],
                  segments: Sequence[Segment], indexes: Sequence[SamePersonIndex], used: Sequence[int],
                  query: Labels, rows: np.ndarray, local: slice, rule: JunkRule) -> QueryResults:
    matches = _matches(blocks, segments, indexes, used, query, rows, local, rule)
    values = matches.values
    needles = np.concatenate([values, np.nextafter(values, np.float32(np.inf))], axis=1)
    below = np.zeros(needles.shape, np.int64)  # items < v, then items <= v
    for s in used:
        ordered = sorted_blocks[s][local]
        if ordered.shape[1]:
            for row in np.flatnonzero(matches.valid.any(1)):
                below[row] += ordered[row].searchsorted(needles[row])
    width = values.shape[1]
    total = sum(len(segments[s]) for s in used)
    equal = below[:, width:] - below[:, :width]
    rank = 1 + (total - below[:, width:]) - _removed_above(matches)
    tied = matches.valid & (equal > 1)
    if tied.any():
        rank += _earlier_ties(blocks, segments, used, local, matches, tied)
    return _results(rank, matches.valid)


def _progress(iterable: range, description: str, show: bool) -> Iterator[int]:
    if not show:
        return iter(iterable)
    from tqdm.auto import tqdm

    return iter(tqdm(iterable, desc=description, leave=False, dynamic_ncols=True, disable=None))  # a terminal only


def rank_segments(query_features: np.ndarray, segments: Sequence[Segment], query: Labels,
                  cases: Sequence[RankCase], *, chunk_size: int | None = None, budget: int | None = None,
                  device: Any = None, progress: bool = False, description: str = "") -> list[QueryResults]:
    """Per-query results of several rankings of the same queries (float32, L2-normalised, N x D)
    against parts of one gallery: each chunk of queries is multiplied by each segment and sorted
    once, and every case counts its rows of the chunk over its segments."""
    if any(case.rows.step not in (None, 1) for case in cases):
        raise FeaturesError("every case's query rows must be a contiguous slice (step 1)")
    n_query = len(query_features)
    spans = [range(n_query)[case.rows] for case in cases]
    used = [tuple(range(len(segments))) if case.segments is None else case.segments for case in cases]
    needed = sorted({s for u in used for s in u})
    parts: list[list[QueryResults]] = [[] for _ in cases]
    if n_query == 0 or not needed:
        return [QueryResults.empty() for _ in cases]
    rows = min(chunk_size or block_rows(sum(len(segments[s]) for s in needed), budget), n_query)
    threads = sorting_threads() if _is_cpu(device) else 1
    indexes = [SamePersonIndex(s.labels.person) for s in segments]
    with ThreadPoolExecutor(threads) as pool:
        products = (_numpy_products(segments, rows, pool, threads) if _is_cpu(device)
                    else _torch_products(segments, device))
        for start in _progress(range(0, n_query, rows), description, progress):
            stop = min(start + rows, n_query)
            chunk = np.ascontiguousarray(query_features[start:stop])
            blocks, sorted_blocks = {}, {}
            for s in needed:
                blocks[s], sorted_blocks[s] = products(chunk, s)
            for case, span, segs, case_parts in zip(cases, spans, used, parts):
                low, high = max(start, span.start), min(stop, span.stop)
                if low < high:
                    case_parts.append(_case_results(blocks, sorted_blocks, segments, indexes, segs, query,
                                                    np.arange(low, high), slice(low - start, high - start),
                                                    case.rule))
    return [QueryResults.concat(case_parts) for case_parts in parts]


def _as_float32(features: Any) -> tuple[np.ndarray, Any]:
    """Features as a float32 numpy array, and the torch device they were on (None for numpy/CPU)."""
    device = getattr(features, "device", None)
    if hasattr(features, "detach"):
        features = features.detach().cpu().numpy()
    return np.ascontiguousarray(features, dtype=np.float32), None if _is_cpu(device) else device


def rank_cases(query_features: Any, gallery_features: Any, query: Labels, gallery: Labels,
               cases: Sequence[RankCase], *, chunk_size: int | None = None, progress: bool = False,
               description: str = "") -> list[QueryResults]:
    """Per-query results of several rankings against one whole gallery that share their products
    (features: numpy arrays or torch tensors, L2-normalised; tensors on a GPU are ranked there).
    Every case ranks the part of each chunk that falls in its rows."""
    queries, device = _as_float32(query_features)
    gallery_array, _ = _as_float32(gallery_features)
    segment = Segment(gallery_array, gallery, np.arange(len(gallery_array)))
    whole = [RankCase(case.rule, case.rows, None) for case in cases]
    return rank_segments(queries, [segment], query, whole, chunk_size=chunk_size, device=device,
                         progress=progress, description=description)


def rank_queries(query_features: Any, gallery_features: Any, query: Labels, gallery: Labels,
                 rule: JunkRule, *, chunk_size: int | None = None, progress: bool = False,
                 description: str = "") -> QueryResults:
    """Per-query results of ranking every query against the whole gallery (features L2-normalised).
    Only same-person items can be removed, by `rule`."""
    return rank_cases(query_features, gallery_features, query, gallery, [RankCase(rule, slice(None))],
                      chunk_size=chunk_size, progress=progress, description=description)[0]
