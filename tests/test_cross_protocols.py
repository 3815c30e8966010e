"""Each cross-dataset protocol on hand-built cases whose answer is known, and the head mapping."""

from pathlib import Path

import numpy as np
import pytest

from atzoo.data.layouts.base import CrossDataset
from atzoo.errors import FeaturesError
from atzoo.evaluation.cross import evaluate_dataset, setting_pairs, single_shot_gallery
from atzoo.evaluation.cross_protocols import get_protocol, head_index


def dataset(layout, rows, sets):
    """rows: (person, camera, modality, clothes); sets: name -> row indices."""
    person, camera, modality, clothes = (np.asarray(c, np.int64) for c in zip(*rows))
    path = np.asarray([f"img{i}.jpg" for i in range(len(rows))], dtype=object)
    return CrossDataset(layout, Path("/nowhere"), path, person, camera, modality, clothes,
                        {k: np.asarray(v, np.int64) for k, v in sets.items()})


def line_features(scores):
    """2-D unit features whose cosine with the query direction (1, 0) is each given score."""
    scores = np.asarray(scores, np.float64)
    return np.stack([scores, np.sqrt(1 - scores ** 2)], 1).astype(np.float32)


def test_market_same_camera_is_junk_and_distractors_count_as_wrong():
    # query person 1 camera 1; gallery: same person same camera (junk, best score), distractor 0, person 1 cam 2
    data = dataset("market1501", [(1, 1, 1, 0), (1, 1, 1, 0), (0, 3, 1, 0), (1, 2, 1, 0), (2, 2, 1, 0)],
                   {"query": [0], "gallery": [1, 2, 3, 4]})
    features = line_features([1.0, 0.99, 0.9, 0.8, 0.7])
    setting = evaluate_dataset(data, features)["settings"]["single-query"]
    assert setting["rank1"] == 0.0 and setting["rank5"] == 1.0
    assert setting["mAP"] == pytest.approx(0.5) and setting["mINP"] == pytest.approx(0.5)


def test_sysu_camera_three_never_meets_camera_two_even_for_other_persons():
    # IR query camera 3; gallery: person 2 camera 2 (excluded, best), person 1 cameras 1 and 2
    data = dataset("sysu-mm01", [(1, 3, 2, 0), (2, 2, 1, 0), (1, 2, 1, 0), (1, 1, 1, 0), (3, 4, 1, 0)],
                   {"query": [0], "gallery": [1, 2, 3, 4]})
    features = line_features([1.0, 0.99, 0.95, 0.5, 0.6])
    all_search = evaluate_dataset(data, features, trials=1)["settings"]["all-search"]
    assert all_search["rank1"] == 0.0 and all_search["mAP"] == pytest.approx(0.5)
    indoor = evaluate_dataset(data, features, trials=1)["settings"]["indoor-search"]
    assert indoor["rank1"] == 1.0


def test_single_shot_gallery_keeps_one_image_per_person_and_camera_seeded():
    rows = [(p, c, 1, 0) for p in (1, 2) for c in (1, 2) for _ in range(5)]
    data = dataset("sysu-mm01", rows, {"gallery": list(range(20))})
    draws = [single_shot_gallery(data, data.sets["gallery"], 0, trial) for trial in range(10)]
    for draw in draws:
        keys = sorted(zip(data.person[draw], data.camera[draw]))
        assert keys == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert np.array_equal(draws[3], single_shot_gallery(data, data.sets["gallery"], 0, 3))
    assert len({tuple(d) for d in draws}) > 1
    assert not np.array_equal(draws[0], single_shot_gallery(data, data.sets["gallery"], 1, 0))


def test_trials_report_mean_and_spread():
    rows = [(1, 3, 2, 0)] + [(1, 1, 1, 0)] * 2 + [(2, 1, 1, 0)]
    data = dataset("sysu-mm01", rows, {"query": [0], "gallery": [1, 2, 3]})
    # person 1's two camera-1 images score 0.9 and 0.1, person 2 scores 0.5: rank 1 or 2 by the draw
    features = line_features([1.0, 0.9, 0.1, 0.5])
    setting = evaluate_dataset(data, features, trials=10)["settings"]["all-search"]
    picks = [int(single_shot_gallery(data, data.sets["gallery"], 0, t)[0]) for t in range(10)]
    expected = np.mean([1.0 if p == 1 else 0.0 for p in picks])
    assert setting["rank1"] == pytest.approx(expected) and setting["trials"] == 10
    assert setting["spread"]["rank1"] == pytest.approx(np.std([1.0 if p == 1 else 0.0 for p in picks]))


def test_clothes_rules_of_prcc():
    # query-changed person 1 (clothes 2, camera C=3); gallery camera A: person 1 clothes 1, person 2
    data = dataset("prcc", [(1, 3, 1, 2), (1, 2, 1, 1), (1, 1, 1, 1), (2, 1, 1, 1), (1, 1, 1, 2)],
                   {"query-changed": [0], "query-same": [1], "gallery": [2, 3, 4]})
    features = line_features([1.0, 1.0, 0.5, 0.9, 0.95])
    result = evaluate_dataset(data, features)["settings"]
    # cc: gallery row 4 (same clothes 2) is dropped -> person 2 first, then row 2
    assert result["clothes-changing"]["rank1"] == 0.0 and result["clothes-changing"]["mAP"] == pytest.approx(0.5)
    # sc for the camera-B query (clothes 1): row 4 (clothes 2) dropped, row 2 valid
    assert result["same-clothes"]["mAP"] == pytest.approx(0.5)


def test_deepchange_keeps_same_camera_but_drops_the_same_tracklet():
    data = dataset("deepchange", [(1, 1, 1, 7), (1, 1, 1, 7), (1, 1, 1, 8), (2, 2, 1, 9)],
                   {"query": [0], "gallery": [1, 2, 3]})
    features = line_features([1.0, 0.99, 0.9, 0.95])
    setting = evaluate_dataset(data, features)["settings"]["test"]
    assert setting["rank1"] == 0.0 and setting["mAP"] == pytest.approx(0.5)


def test_vc_clothes_camera_subsets():
    rows = [(1, 2, 1, 1), (1, 3, 1, 1), (1, 4, 1, 2), (1, 1, 1, 1)]
    data = dataset("vc-clothes", rows, {"query": [0, 1], "gallery": [0, 1, 2, 3]})
    pairs = {s.name: setting_pairs(data, s)[0] for s in get_protocol("vc-clothes").settings}
    assert set(data.camera[pairs["same-clothes"][1]]) == {2, 3}
    assert set(data.camera[pairs["clothes-changing"][0]]) == {3}
    assert set(data.camera[pairs["clothes-changing"][1]]) == {3, 4}


def test_regdb_uses_each_trials_own_split():
    rows = [(p, cam, cam, 0) for p in (1, 2, 3) for cam in (1, 2)]
    sets = {}
    for trial in range(1, 11):
        test = [1, 2] if trial % 2 else [2, 3]
        sets[f"trial{trial}/test-visible"] = [2 * (p - 1) for p in test]
        sets[f"trial{trial}/test-thermal"] = [2 * (p - 1) + 1 for p in test]
    data = dataset("regdb", rows, sets)
    setting = get_protocol("regdb").setting("visible-to-thermal")
    pairs = setting_pairs(data, setting)
    assert len(pairs) == 10
    assert set(data.person[pairs[0][0]]) == {1, 2} and set(data.person[pairs[1][0]]) == {2, 3}
    assert set(data.modality[pairs[0][1]]) == {2}
    with pytest.raises(FeaturesError, match="10 fixed trials"):
        setting_pairs(data, setting, trials=11)


def test_a_trial_count_of_zero_is_refused():
    with pytest.raises(FeaturesError, match="at least 1"):
        setting_pairs(dataset("sysu-mm01", [(1, 3, 2, 0)], {"query": [0], "gallery": [0]}),
                      get_protocol("sysu-mm01").settings[0], trials=0)


def test_head_mapping():
    market = get_protocol("market1501").settings[0]
    prcc_cc = get_protocol("prcc").setting("clothes-changing")
    sysu = get_protocol("sysu-mm01").settings[0]
    assert [head_index(p, s, 6) for p, s in (("market1501", market), ("prcc", prcc_cc), ("sysu-mm01", sysu))] == [
        0, 1, 4]
    assert head_index("sysu-mm01", sysu, 1) == 0
    assert head_index("sysu-mm01", sysu, 6, {"sysu-mm01": "AD-LT"}) == 5
    assert head_index("prcc", prcc_cc, 2, {"prcc/clothes-changing": 1}) == 1
    with pytest.raises(FeaturesError, match="declares no head"):
        head_index("prcc", prcc_cc, 2)
    with pytest.raises(FeaturesError, match="not a scenario name"):
        head_index("prcc", prcc_cc, 6, {"prcc": 9})


def test_a_setting_without_valid_queries_is_an_error():
    data = dataset("market1501", [(1, 1, 1, 0), (1, 1, 1, 0)], {"query": [0], "gallery": [1]})
    with pytest.raises(FeaturesError, match="no valid query"):
        evaluate_dataset(data, line_features([1.0, 0.5]))


def test_ltcc_general_and_clothes_changing():
    # query person 1 clothes 1 camera 1; gallery: same clothes camera 2 (best), other clothes camera 3, person 2
    data = dataset("ltcc", [(1, 1, 1, 1), (1, 2, 1, 1), (1, 3, 1, 2), (2, 4, 1, 1)],
                   {"query": [0], "gallery": [1, 2, 3]})
    features = line_features([1.0, 0.9, 0.5, 0.7])
    result = evaluate_dataset(data, features)["settings"]
    assert result["general"]["rank1"] == 1.0 and result["general"]["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert result["clothes-changing"]["rank1"] == 0.0 and result["clothes-changing"]["mAP"] == pytest.approx(0.5)


def test_llcm_drops_the_same_camera_in_the_other_modality_and_samples_single_shot():
    # visible query person 1 camera 1; infrared gallery: person 1 camera 1 (dropped, best), camera 2, person 2
    data = dataset("llcm", [(1, 1, 1, 0), (1, 1, 2, 0), (1, 2, 2, 0), (2, 1, 2, 0)],
                   {"test-visible": [0], "test-infrared": [1, 2, 3]})
    features = line_features([1.0, 0.99, 0.5, 0.8])
    setting = evaluate_dataset(data, features, trials=2)["settings"]["visible-to-infrared"]
    assert setting["rank1"] == 0.0 and setting["mAP"] == pytest.approx(0.5) and setting["trials"] == 2
