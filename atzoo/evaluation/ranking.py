"""Chunked ranking: the rank of every true match of every query, without sorting any gallery.

For a chunk of queries the similarity block (chunk x gallery) comes from one matrix product.
Invalid same-person items are set to -inf. An item's bucket is the number of the query's valid
true matches it outranks; a histogram of buckets per row, summed from the top, gives each true
match's rank minus one. Only items scoring at least the query's worst valid true match can
outrank one (the candidates). Few candidates: each gets an int64 key ordering it by (query row,
similarity, earlier gallery index first), and one `searchsorted` among the true matches' sorted
keys gives its bucket. Many candidates: one batched `searchsorted` of the whole block among each
row's sorted true-match similarities does, and only exact ties with a true match take the key
path. Either way ties are broken by gallery order. Memory is one chunk's block; time is the
product (on every thread) plus a few linear passes (on one thread). Several rankings of parts of
the same queries against the same gallery (`rank_cases`) share each chunk's product.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from atzoo.errors import FeaturesError
from atzoo.evaluation.inputs import Labels
from atzoo.evaluation.metrics import QueryResults

CHUNK_ELEMENTS = 1 << 24
"""Default similarity-block size (elements, 64 MB of float32): large blocks keep the matrix product
near its best throughput (measured on a 5k x 5k product: 1,024-row blocks 20% and 1,677-row
blocks 8% slower than 5,000-row ones)."""


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


LARGE_GALLERY_ELEMENTS = 1 << 26
"""Block size allowed (256 MB) to keep at least `MIN_CHUNK_ROWS` rows for a very large gallery."""
MIN_CHUNK_ROWS = 512
"""Below about 512 rows per block the product streams the whole gallery for too few queries (a
5k x 5k product with 256-row blocks took 1.9 times as long as with 5,000-row ones)."""


def default_chunk_size(gallery_size: int) -> int:
    gallery_size = max(gallery_size, 1)
    rows = max(CHUNK_ELEMENTS // gallery_size, min(MIN_CHUNK_ROWS, LARGE_GALLERY_ELEMENTS // gallery_size))
    return int(min(4096, max(16, rows)))


def max_chunk_size(gallery_size: int) -> int:
    """The most query rows whose keys (row, 32-bit value, column) still fit a non-negative int64."""
    return 1 << (31 - (gallery_size + 1).bit_length())


class SamePersonIndex:
    """For each query, the gallery indices of the same person (padded with -1)."""

    def __init__(self, gallery_person: np.ndarray):
        self.order = np.argsort(gallery_person, kind="stable")
        self.persons, self.starts, self.counts = np.unique(gallery_person[self.order], return_index=True,
                                                           return_counts=True)

    def lookup(self, query_person: np.ndarray) -> np.ndarray:
        """(queries x widest group) gallery indices; the gallery must not be empty."""
        slot = np.clip(np.searchsorted(self.persons, query_person), 0, len(self.persons) - 1)
        count = np.where(self.persons[slot] == query_person, self.counts[slot], 0)
        offset = np.arange(max(int(count.max(initial=0)), 1))
        present = offset[None, :] < count[:, None]
        positions = np.where(present, self.starts[slot][:, None] + offset[None, :], 0)
        return np.where(present, self.order[positions], -1)


def _keys(values: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor, index_bits: int) -> torch.Tensor:
    """Non-negative int64 keys increasing with (row, value, earlier column)."""
    bits = (values + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0: the zeros tie as floats do
    ordered = (bits ^ ((bits >> 31) & 0x7FFFFFFF)).to(torch.int64) + (1 << 31)
    reverse_column = (1 << index_bits) - 1 - columns
    return (rows << (32 + index_bits)) | (ordered << index_bits) | reverse_column


DENSE_FRACTION = 0.25
"""Above this fraction of candidates in a block, buckets are found for the whole block at once."""


def _sparse_histogram(similarity: torch.Tensor, matches: torch.Tensor, valid: torch.Tensor,
                      candidates: torch.Tensor) -> torch.Tensor:
    """(c x P+1) counts: items of each row with exactly b valid true matches ranked below them,
    over the `candidates` (a boolean mask that holds every item some true match does not outrank)."""
    c, width = matches.shape
    index_bits = max(int(similarity.shape[1]).bit_length(), 1)
    rows, columns = torch.nonzero(candidates, as_tuple=True)
    candidate_keys = _keys(similarity[rows, columns], rows, columns, index_bits)
    match_rows = torch.arange(c, device=similarity.device)[:, None].expand(c, width)[valid]
    match_values = similarity.gather(1, matches)[valid]
    match_keys = _keys(match_values, match_rows, matches[valid], index_bits).sort().values
    count = valid.sum(1)
    first_of_row = torch.cumsum(count, 0) - count
    bucket = torch.searchsorted(match_keys, candidate_keys) - first_of_row[rows]
    return torch.bincount(rows * (width + 1) + bucket, minlength=c * (width + 1)).view(c, width + 1)


def _dense_histogram(similarity: torch.Tensor, matches: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The same counts as `_sparse_histogram`, for blocks where most items are candidates: one
    batched search of every item among its row's sorted true-match values. Items whose value
    equals a true match's (the matches themselves, exact ties) go through the sparse path, which
    orders equal values by gallery index."""
    c, width = matches.shape
    match_values = torch.where(valid, similarity.gather(1, matches), torch.inf).sort(1).values
    bucket = torch.searchsorted(match_values, similarity, out_int32=True)
    row_offset = torch.arange(0, c * (width + 1), width + 1, device=similarity.device, dtype=torch.int32)[:, None]
    bucket += row_offset  # the histogram bin; also the bucket's value in the table padded with +inf below
    padded = torch.cat([match_values, match_values.new_full((c, 1), torch.inf)], 1).view(-1)
    tied = similarity == padded.index_select(0, bucket.view(-1)).view_as(similarity)
    torch.where(tied, row_offset, bucket, out=bucket)  # counted by the key path instead; bin 0 adds no rank
    histogram = torch.bincount(bucket.view(-1), minlength=c * (width + 1)).view(c, width + 1)
    return histogram + _sparse_histogram(similarity, matches, valid, tied)


def _chunk_results(similarity: torch.Tensor, matches: torch.Tensor, valid: torch.Tensor) -> QueryResults:
    """Per-query results of one chunk; `matches` (c x P) index the columns of `similarity` (c x G),
    `valid` marks the valid true matches among them (invalid same-person items are already -inf;
    the other slots are padding and are ignored).

    Only items scoring at least the row's worst valid true match can outrank one; when they are
    few the sparse path handles just them, otherwise the dense path handles the whole block."""
    c, width = matches.shape
    device = similarity.device
    threshold = torch.where(valid, similarity.gather(1, matches), torch.inf).amin(1)
    candidates = similarity >= threshold[:, None]
    if int(torch.count_nonzero(candidates)) > DENSE_FRACTION * candidates.numel():
        del candidates
        histogram = _dense_histogram(similarity, matches, valid)
    else:
        histogram = _sparse_histogram(similarity, matches, valid, candidates)
    rank = (histogram.sum(1, keepdim=True) - histogram.cumsum(1)[:, :-1] + 1).double()
    count = valid.sum(1)
    j = torch.arange(width, device=device)
    in_use = j[None, :] < count[:, None]
    count_f = count.double()
    precision = torch.where(in_use, (count_f[:, None] - j[None, :]) / rank, 0.0)
    has_match = count > 0
    ap = precision.sum(1) / count_f.clamp(min=1)
    first = rank.gather(1, (count - 1).clamp(min=0)[:, None]).squeeze(1)
    inp = count_f / rank[:, 0]
    return QueryResults(first[has_match].long().cpu().numpy(), ap[has_match].cpu().numpy(),
                        inp[has_match].cpu().numpy())


def _same_person_pairs(index: SamePersonIndex, query: Labels, gallery: Labels, rule: JunkRule, rows: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For a chunk of query rows: same-person gallery indices (c x P, padding 0), which slots are
    real, and which real slots are junk under `rule`."""
    same = index.lookup(query.person[rows])
    present = same >= 0
    junk = np.zeros_like(present)
    junk[present] = rule.junk(query, gallery, np.broadcast_to(rows[:, None], same.shape)[present], same[present])
    return np.where(present, same, 0), present, junk


@contextmanager
def _single_threaded(device: torch.device) -> Iterator[None]:
    """Run the ranking passes on one CPU thread. Each is a single linear pass of a few milliseconds,
    so a second thread gains little, and on a loaded machine every parallel op waits for a
    descheduled worker (measured: 272 ms per block on two threads against 16 ms on one)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass(frozen=True)
class RankCase:
    """One ranking sharing a similarity product with others: the contiguous query rows it covers
    and the rule that removes its invalid same-person targets."""

    rule: JunkRule
    rows: slice


def _case_results(similarity: torch.Tensor, index: SamePersonIndex, query: Labels, gallery: Labels,
                  rule: JunkRule, rows: np.ndarray) -> QueryResults:
    """Results of the query rows `rows` whose similarities are `similarity`. Junk items are set to
    -inf for the count and then restored, so other cases can reuse the same block."""
    device = similarity.device
    matches, present, junk = _same_person_pairs(index, query, gallery, rule, rows)
    saved: tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    if junk.any():
        junk_rows, junk_slots = np.nonzero(junk)
        cells = (torch.from_numpy(junk_rows).to(device), torch.from_numpy(matches[junk_rows, junk_slots]).to(device))
        saved = (cells, similarity[cells])
        similarity[cells] = -torch.inf
    valid = torch.from_numpy(present & ~junk).to(device)
    results = _chunk_results(similarity, torch.from_numpy(matches).to(device), valid)
    if saved is not None:
        cells, values = saved
        similarity[cells] = values
    return results


def rank_cases(query_features: torch.Tensor, gallery_features: torch.Tensor, query: Labels, gallery: Labels,
               cases: Sequence[RankCase], *, chunk_size: int | None = None, progress: bool = False,
               description: str = "") -> list[QueryResults]:
    """Per-query results of several rankings against one gallery that share their similarity
    products: each chunk of queries is multiplied once, and every case ranks the part of the
    chunk that falls in its rows (a view, no copy). Features on one device, L2-normalised.

    One similarity block is allocated and reused for every chunk: the matrix product writes into
    a contiguous buffer (a strided output makes it markedly slower); the bucket search adds a few
    temporaries of the block's size at most."""
    n_query, n_gallery = query_features.shape[0], gallery_features.shape[0]
    if any(case.rows.step not in (None, 1) for case in cases):
        raise FeaturesError("every case's query rows must be a contiguous slice (step 1)")
    parts: list[list[QueryResults]] = [[] for _ in cases]
    spans = [range(n_query)[case.rows] for case in cases]
    if n_query == 0 or n_gallery == 0:
        return [QueryResults.empty() for _ in cases]
    device = query_features.device
    chunk_size = min(chunk_size or default_chunk_size(n_gallery), max_chunk_size(n_gallery), n_query)
    index = SamePersonIndex(gallery.person)
    gallery_t = gallery_features.T
    block = torch.empty((chunk_size, n_gallery), dtype=query_features.dtype, device=device)
    for start in tqdm(range(0, n_query, chunk_size), desc=description, disable=None if progress else True, leave=False,
                      dynamic_ncols=True):
        stop = min(start + chunk_size, n_query)
        similarity = block[:stop - start]
        torch.mm(query_features[start:stop], gallery_t, out=similarity)
        with _single_threaded(device):
            for case, span, case_parts in zip(cases, spans, parts):
                low, high = max(start, span.start), min(stop, span.stop)
                if low < high:
                    case_parts.append(_case_results(similarity[low - start:high - start], index, query, gallery,
                                                    case.rule, np.arange(low, high)))
    return [QueryResults.concat(case_parts) for case_parts in parts]


def rank_queries(query_features: torch.Tensor, gallery_features: torch.Tensor, query: Labels, gallery: Labels,
                 rule: JunkRule, *, chunk_size: int | None = None, progress: bool = False,
                 description: str = "") -> QueryResults:
    """Per-query results of ranking every query against the whole gallery (features on one device,
    L2-normalised). Only same-person items can be removed, by `rule`."""
    return rank_cases(query_features, gallery_features, query, gallery, [RankCase(rule, slice(None))],
                      chunk_size=chunk_size, progress=progress, description=description)[0]
