"""The six-scenario evaluation: hand-computed metrics, filters, ties, oracle equality, files, CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from atzoo.cli.main import cli
from atzoo.errors import FeaturesError
from atzoo.evaluation import evaluate_features, load_features, save_features
from atzoo.evaluation.inputs import Labels
from atzoo.evaluation.ranking import JunkRule, rank_queries
from atzoo.evaluation.reference import evaluate_features_reference
from atzoo.protocol import PROTOCOL_VERSION, SCENARIO_NAMES


def unit(cosine):
    return [cosine, float(np.sqrt(1 - cosine ** 2))]


def rank(query, gallery, rule=JunkRule("sc"), chunk_size=None):
    """query: (cosine-free label tuple); gallery: list of (cosine to query, person, clothes, camera)."""
    q_feat = torch.tensor([[1.0, 0.0]])
    g_feat = torch.tensor([unit(c) for c, *_ in gallery], dtype=torch.float32)
    labels = np.array([g[1:] for g in gallery]).T
    return rank_queries(q_feat, g_feat, Labels(*(np.array([v]) for v in query)), Labels(*labels), rule,
                        chunk_size=chunk_size)


def test_ranks_ap_and_inp_hand_computed():
    result = rank((7, 0, 1), [(0.9, 1, 0, 2), (0.8, 7, 0, 2), (0.7, 2, 0, 3), (0.5, 7, 0, 3)])
    assert list(result.first_rank) == [2]
    assert result.ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result.inp[0] == pytest.approx(2 / 4)


def test_same_camera_and_clothes_filters_drop_only_same_person():
    gallery = [(0.99, 7, 0, 1),   # same person, same camera: dropped
               (0.97, 7, 1, 2),   # same person, other clothes: dropped under sc, the target under cc
               (0.95, 3, 1, 2),   # other person in other clothes: never dropped
               (0.9, 7, 0, 2)]    # same person, same clothes: the target under sc, dropped under cc
    same = rank((7, 0, 1), gallery, JunkRule("sc"))
    assert list(same.first_rank) == [2] and same.ap[0] == pytest.approx(1 / 2)
    changed = rank((7, 0, 1), gallery, JunkRule("cc"))
    assert list(changed.first_rank) == [1] and changed.ap[0] == pytest.approx(1.0)


def test_modality_rules_of_the_mixed_test():
    gallery = [(0.99, 7, 0, 12), (0.95, 5, 0, 11), (0.9, 7, 0, 3)]  # IR match, IR distractor, RGB match
    query = (7, 0, 1)  # RGB camera 1
    assert list(rank(query, gallery, JunkRule("sc", "rgb")).first_rank) == [2]
    assert list(rank(query, gallery, JunkRule("sc", "ir")).first_rank) == [1]
    assert list(rank(query, gallery, JunkRule("sc", "other")).first_rank) == [1]
    assert len(rank(query, [(0.9, 7, 0, 3)], JunkRule("sc", "other"))) == 0  # no valid target: not counted


@pytest.mark.parametrize("negative_first, expected", [(True, 2), (False, 1)])
def test_ties_are_broken_by_gallery_order(negative_first, expected):
    tied = [(0.5, 3, 0, 2), (0.5, 7, 0, 2)]
    result = rank((7, 0, 1), tied if negative_first else tied[::-1])
    assert list(result.first_rank) == [expected]


def random_problem(seed, heads, n=240):
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, 5, n)
    clothes = rng.integers(0, 3, n)
    camera = rng.integers(1, 17, n)
    flag = rng.integers(0, 11, n)
    shape = (n, heads, 6) if heads > 1 else (n, 6)
    feats = rng.normal(size=shape).astype(np.float32)
    if seed % 3 == 0:  # unit vectors of four +-0.5 entries: exact products, many ties
        signs = np.where(rng.random(shape) < 0.5, -0.5, 0.5)
        zeros = np.argsort(rng.random(shape), axis=-1) < 2
        feats = np.where(zeros, 0.0, signs).astype(np.float32)
    return feats, pid, clothes, camera, flag


def flatten(result, prefix=""):
    out = {}
    for key, value in result.items():
        out.update(flatten(value, f"{prefix}{key}/") if isinstance(value, dict) else {prefix + key: value})
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("heads", [1, 6])
def test_fast_evaluation_equals_the_reference_oracle(seed, heads):
    problem = random_problem(seed, heads)
    expected = flatten(evaluate_features_reference(*problem))
    for chunk_size in (1, 5, None):
        got = flatten(evaluate_features(*problem, chunk_size=chunk_size))
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-9), (key, chunk_size)


@pytest.mark.parametrize("pair_comparisons", [1, 7, 1 << 22])  # removed items compared row by row .. at once
@pytest.mark.parametrize("seed", [0, 1, 3])
def test_every_comparison_chunking_of_removed_items_equals_the_oracle(monkeypatch, seed, pair_comparisons):
    import atzoo.evaluation.ranking as ranking
    problem = random_problem(seed, 6)
    expected = flatten(evaluate_features_reference(*problem))
    monkeypatch.setattr(ranking, "PAIR_COMPARISONS", pair_comparisons)
    for chunk_size in (1, 7, None):
        got = flatten(evaluate_features(*problem, chunk_size=chunk_size))
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-9), (key, chunk_size)


def test_exact_ties_with_true_matches_follow_gallery_order():
    gallery = [(0.5, 3, 0, 2), (0.5, 7, 0, 2), (0.5, 4, 0, 2), (0.5, 7, 0, 3), (0.25, 9, 0, 2)]
    result = rank((7, 0, 1), gallery)
    assert list(result.first_rank) == [2]
    assert result.ap[0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert result.inp[0] == pytest.approx(2 / 4)


def test_removed_items_tied_with_a_match_do_not_count_before_it():
    # same person, same camera (removed) tied with and before the target; a negative tied after it
    gallery = [(0.5, 7, 0, 1), (0.5, 7, 0, 2), (0.5, 3, 0, 2), (0.9, 7, 0, 1)]
    result = rank((7, 0, 1), gallery)
    assert list(result.first_rank) == [1] and result.inp[0] == 1.0


def test_negative_zero_ties_with_zero():
    g_feat = np.array([[0.0, 1.0], [-0.0, 1.0], [0.0, 1.0]], dtype=np.float32)  # similarities 0, -0, 0
    labels = Labels(np.array([3, 7, 7]), np.array([0, 0, 0]), np.array([2, 2, 3]))
    result = rank_queries(np.array([[1.0, 0.0]], np.float32), g_feat, Labels(np.array([7]), np.array([0]),
                          np.array([1])), labels, JunkRule("sc"))
    assert list(result.first_rank) == [2] and result.inp[0] == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(4))
def test_segments_rank_like_one_sorted_gallery(seed):
    """A gallery split into interleaved segments ranks exactly like the whole gallery, ties by order."""
    from atzoo.evaluation.ranking import RankCase, Segment, rank_segments
    qf, gf, ql, gl = labelled_problem(seed)
    qf, gf = qf.numpy(), gf.numpy()
    if seed % 2:  # exact ties everywhere
        qf, gf = np.sign(qf) * 0.5, np.sign(gf) * 0.5
    parts = [np.arange(0, 60, 3), np.setdiff1d(np.arange(60), np.arange(0, 60, 3))]
    segments = [Segment(gf[rows], gl.take(rows), rows) for rows in parts]
    rule = JunkRule("sc", "other")
    both, first = rank_segments(qf, segments, ql, [RankCase(rule, slice(None)), RankCase(rule, slice(5, 30), (0,))],
                                chunk_size=7)
    assert_same_results(both, rank_queries(qf, gf, ql, gl, rule))
    assert_same_results(first, rank_queries(qf[5:30], gf[parts[0]], ql.take(np.arange(5, 30)),
                                            gl.take(parts[0]), rule))


def test_empty_segment_and_person_absent_from_a_segment():
    from atzoo.evaluation.ranking import RankCase, Segment, rank_segments
    qf, gf, ql, gl = labelled_problem(5)
    qf, gf = qf.numpy(), gf.numpy()
    rows = np.flatnonzero(gl.person != 0)
    empty = Segment(gf[:0], gl.take(np.arange(0)), np.arange(0))
    segments = [empty, Segment(gf[rows], gl.take(rows), rows)]
    got = rank_segments(qf, segments, ql, [RankCase(JunkRule("cc"), slice(None))])[0]
    assert_same_results(got, rank_queries(qf, gf[rows], ql, gl.take(rows), JunkRule("cc")))


def test_block_rows_follow_the_budget_and_the_available_memory():
    from atzoo.evaluation.ranking import BLOCK_BUDGET, MAX_CHUNK_ROWS, block_rows
    assert block_rows(5_000, available=1 << 40) * 5_000 * 8 <= BLOCK_BUDGET
    assert block_rows(50_000, budget=1 << 30, available=1 << 40) == (1 << 30) // (8 * 50_000)
    assert block_rows(50_000, budget=1 << 30, available=1 << 28) == (1 << 26) // (8 * 50_000)  # a quarter
    assert block_rows(10**9, available=1 << 40) == 1
    assert block_rows(0, available=1 << 40) == MAX_CHUNK_ROWS


def test_evaluation_and_eval_features_import_no_torch(tmp_path):
    import subprocess
    import sys
    path = save_features(tmp_path / "f.npz", *random_problem(1, 6))
    code = ("import sys, atzoo.evaluation\n"
            "from atzoo.cli.main import main\n"
            "try:\n"
            f"    main(['eval-features', {str(path)!r}, '--json'])\n"
            "except SystemExit as stop:\n"
            "    assert not stop.code, stop.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["Any-Time"]["rank1"] >= 0


def test_torch_tensors_give_the_same_ranking_as_numpy():
    qf, gf, ql, gl = labelled_problem(4)
    assert_same_results(rank_queries(qf, gf, ql, gl, JunkRule("cc")),
                        rank_queries(qf.numpy(), gf.numpy(), ql, gl, JunkRule("cc")))
    products = evaluate_features(*random_problem(2, 6), device="cpu")
    assert products == evaluate_features(*random_problem(2, 6), device=torch.device("cpu"))


def test_reference_precision_loop_and_vectorised_variant_agree():
    from atzoo.evaluation.inputs import prepare
    from atzoo.evaluation.reference import reference_mixed_case, reference_scenario
    from atzoo.protocol import SCENARIOS
    data = prepare(*random_problem(4, 6))
    for scenario in SCENARIOS:
        for function in (reference_scenario, reference_mixed_case):
            looped, vectorised = function(data, scenario), function(data, scenario, precision_loop=False)
            assert list(looped.first_rank) == list(vectorised.first_rank)
            np.testing.assert_allclose(looped.ap, vectorised.ap, rtol=0, atol=1e-12)


def test_result_layout_and_six_output_heads():
    feats, *labels = random_problem(1, 6)
    result = evaluate_features(torch.from_numpy(feats), *labels)
    assert result["protocol_version"] == PROTOCOL_VERSION
    for name in SCENARIO_NAMES:
        assert set(result[name]) == {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP", "queries"}
    assert result["Any-Time"]["mAP"] == pytest.approx(np.mean([result[n]["mAP"] for n in SCENARIO_NAMES]))
    assert result["mixed"]["Any-Time"]["queries"] == sum(result["mixed"][n]["queries"] for n in SCENARIO_NAMES)
    json.dumps(result)
    only_head_0 = feats.copy()
    only_head_0[:, 1:] = feats[:, :1]
    assert evaluate_features(only_head_0, *labels, mixed=False) != evaluate_features(feats, *labels, mixed=False)
    assert evaluate_features(feats[:, 0], *labels, mixed=False)["DT-ST"] == \
        evaluate_features(only_head_0, *labels, mixed=False)["DT-ST"]


def test_scenario_without_valid_query_is_an_error():
    feats, pid, clothes, camera, flag = random_problem(2, 1)
    flag = np.where(flag == 5, 10, flag)
    with pytest.raises(FeaturesError, match="NT-LT"):
        evaluate_features(feats, pid, clothes, camera, flag)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(camera=np.full_like(a["camera"], 17)), "camera"),
    (lambda a: a.update(flag=a["flag"] + 11), "flag"),
    (lambda a: a.update(pid=a["pid"][:-1]), "pid"),
    (lambda a: a["feats"].__setitem__((0, 0), np.nan), "NaN"),
    (lambda a: a.update(feats=a["feats"][:, :, None, None]), "shape"),
    (lambda a: a.pop("clothes"), "clothes"),
    (lambda a: a.update(paths=np.array([{"x": 1}] * len(a["pid"]), dtype=object)), "pickle"),
])
def test_load_features_rejects_malformed_files(tmp_path, change, message):
    feats, pid, clothes, camera, flag = random_problem(1, 1)
    arrays = {"feats": feats, "pid": pid, "clothes": clothes, "camera": camera, "flag": flag}
    change(arrays)
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(FeaturesError, match=message) as error:
        load_features(path)
    assert "bad.npz" in str(error.value)


def test_load_features_rejects_a_non_zip_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("not a zip")
    with pytest.raises(FeaturesError, match="notes.npz"):
        load_features(path)


def test_save_and_load_round_trip(tmp_path):
    problem = random_problem(4, 6)
    path = save_features(tmp_path / "f.npz", *problem, paths=[f"img{i}.jpg" for i in range(len(problem[1]))])
    loaded = load_features(path)
    assert loaded.feats.shape == problem[0].shape and loaded.paths[3] == "img3.jpg"
    assert loaded.evaluate(mixed=False) == evaluate_features(*problem, mixed=False)


def test_cli_json_table_and_error(tmp_path):
    path = save_features(tmp_path / "f.npz", *random_problem(5, 1))
    runner = CliRunner()
    as_json = runner.invoke(cli, ["eval-features", str(path), "--json", "--chunk-size", "7"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["DT-ST"]["queries"] > 0
    table = runner.invoke(cli, ["eval-features", str(path), "--no-mixed"])
    assert table.exit_code == 0 and all(name in table.output for name in SCENARIO_NAMES)
    assert "Mixed" not in table.output
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"junk")
    from atzoo.cli.main import main
    with pytest.raises(SystemExit) as exit_info:
        main(["eval-features", str(bad)])
    assert exit_info.value.code == 2


def labelled_problem(seed, n_query=40, n_gallery=60):
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    feats = torch.nn.functional.normalize(torch.randn(n_query + n_gallery, 8, generator=generator), dim=1)
    labels = Labels(rng.integers(0, 4, n_query + n_gallery), rng.integers(0, 2, n_query + n_gallery),
                    rng.integers(1, 17, n_query + n_gallery))
    q, g = np.arange(n_query), np.arange(n_query, n_query + n_gallery)
    return feats[q], feats[g], labels.take(q), labels.take(g)


def assert_same_results(got, expected):
    assert list(got.first_rank) == list(expected.first_rank)
    assert list(got.ap) == list(expected.ap) and list(got.inp) == list(expected.inp)


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_cases_sharing_one_product_equal_separate_rankings(chunk_size):
    from atzoo.evaluation.ranking import RankCase, rank_cases
    qf, gf, ql, gl = labelled_problem(3)
    cases = [RankCase(JunkRule("sc", "rgb"), slice(0, 15)), RankCase(JunkRule("cc", "ir"), slice(15, 40)),
             RankCase(JunkRule("sc", "other"), slice(None)), RankCase(JunkRule("cc"), slice(None))]
    shared = rank_cases(qf, gf, ql, gl, cases, chunk_size=chunk_size)
    for case, got in zip(cases, shared):
        rows = np.arange(40)[case.rows]
        # later cases see the similarities the earlier ones set to -inf restored
        assert len(got) > 0
        assert_same_results(got, rank_queries(qf[rows], gf, ql.take(rows), gl, case.rule, chunk_size=chunk_size))


def test_cases_must_cover_contiguous_rows():
    from atzoo.evaluation.ranking import RankCase, rank_cases
    qf, gf, ql, gl = labelled_problem(1)
    with pytest.raises(FeaturesError, match="contiguous"):
        rank_cases(qf, gf, ql, gl, [RankCase(JunkRule("sc"), slice(0, 10, 2))])


def test_mixed_test_shares_the_products_of_the_scenarios(monkeypatch):
    import atzoo.evaluation.ranking as ranking
    calls = []
    original = ranking.rank_segments
    monkeypatch.setattr(ranking, "rank_segments",
                        lambda queries, segments, *args, **kw: calls.append(len(queries) * sum(map(len, segments)))
                        or original(queries, segments, *args, **kw))
    import atzoo.evaluation.scenarios as scenarios
    monkeypatch.setattr(scenarios, "rank_segments", ranking.rank_segments)
    for heads in (1, 6):
        problem = random_problem(1, heads)
        feats, pid, clothes, camera, flag = problem  # flags as the protocol pairs them with modalities
        rgb = camera <= 8
        flag = np.select([flag % 2 == 0, True], [np.where(rgb, 2, 4), np.where(rgb, 3, 5)])
        flag = np.where(np.arange(len(flag)) % 2 == 0, flag + 4, flag)
        problem = feats, pid, clothes, camera, flag
        evaluate_features(*problem, mixed=False)
        scenario_pairs = sum(calls)
        calls.clear()
        result = evaluate_features(*problem)
        data = scenarios.prepare(*problem)
        term_pairs = sum(len(data.rows(pair.query_flags)) * len(data.rows(pair.gallery_flags))
                         for pair in (scenarios.SCENARIOS[0].pair, scenarios.SCENARIOS[1].pair))
        if heads == 1:  # the mixed test's products hold every scenario's: nothing is computed twice
            assert sum(calls) == term_pairs
        else:  # AD-LT's cross-modality products serve the long-term mixed cases
            assert sum(calls) < scenario_pairs + term_pairs
        calls.clear()
        expected = flatten(evaluate_features_reference(*problem))
        for key, value in flatten(result).items():
            assert value == pytest.approx(expected[key], abs=1e-9), key


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_feature_in_an_ignored_row_is_still_rejected(bad):
    feats, pid, clothes, camera, flag = random_problem(1, 1)
    flag[0] = 0
    feats[0, 3] = bad
    with pytest.raises(FeaturesError, match="NaN or infinite"):
        evaluate_features(feats, pid, clothes, camera, flag)


def test_huge_finite_features_are_refused_as_too_large_not_as_infinite():
    from atzoo.evaluation.inputs import value_problem
    huge = np.full((3, 1, 4), 1e20, dtype=np.float32)  # squared norms overflow float32, values are finite
    huge[0, 0, 0] = 3e38
    assert "reach 3e+38 in magnitude" in value_problem(huge)
    huge[1, 0, 2] = np.inf
    assert "NaN or infinite values (first in row 1)" in value_problem(huge)


def test_torch_device_path_ranks_like_numpy(monkeypatch):
    """The products and sorts on a torch device (exercised here on the CPU through the same code)."""
    import atzoo.evaluation.ranking as ranking
    problem = random_problem(0, 6)  # exactly representable products: both paths give equal floats
    expected = evaluate_features(*problem)
    monkeypatch.setattr(ranking, "_is_cpu", lambda device: False)
    assert evaluate_features(*problem, device="cpu", chunk_size=7) == expected
