"""The protocol's sets on a hand-made root; expected labels and contents are worked out by hand."""

from __future__ import annotations

import pytest

from atzoo.data.layout import parse_root
from atzoo.data.sets import build_train_set, protocol_sets, require_test_sets
from atzoo.errors import DataError
from atzoo.protocol import SCENARIO_NAMES
from tests.atustc_tree import HAND_MADE, write_tree


@pytest.fixture
def records(tmp_path):
    return parse_root(write_tree(tmp_path))


def _names(records) -> list[str]:
    return records.path.tolist()


def test_train_set_relabels_persons_and_clothes_identities_in_sorted_order(records):
    train = build_train_set(records)
    assert _names(train.records) == [
        "p001-d01-c02/cam01-f0-0001.jpg",  # person 1, clothing 2
        "p001-d01-c02/cam10-f0-0001.jpg",  # person 1, clothing 2
        "p001-d03-c01/cam03-f0-0005.png",  # person 1, clothing 1
        "p003-d01-c01/cam01-f0-0001.jpg",  # person 3, clothing 1
        "p003-d01-c01/cam09-f0-0002.png",  # person 3, clothing 1
        "p003-d02-c02/cam02-f0-0003.jpg",  # person 3, clothing 2
        "p007-d01-c01/cam11-f0-0001.jpg",  # person 7, clothing 1
    ]
    # persons 1, 3, 7 -> 0, 1, 2; clothes identities (1,1) (1,2) (3,1) (3,2) (7,1) -> 0..4
    assert train.person_label.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert train.clothes_label.tolist() == [1, 1, 0, 2, 2, 3, 4]
    assert train.clothes_to_person.tolist() == [0, 0, 1, 1, 2]
    assert (train.num_persons, train.num_clothes, len(train)) == (3, 5, 7)


def test_clothes_identities_are_per_person_not_per_clothing_number(tmp_path):
    # clothing 1 of person 5 and clothing 1 of person 2 are different clothes identities
    root = write_tree(tmp_path, ["p005-d01-c01/cam01-f0-0001.jpg", "p002-d01-c01/cam01-f0-0001.jpg",
                                 "p002-d02-c03/cam01-f0-0002.jpg"])
    train = build_train_set(parse_root(root))
    assert train.person_label.tolist() == [0, 0, 1]
    assert train.clothes_label.tolist() == [0, 1, 2]
    assert train.clothes_to_person.tolist() == [0, 0, 1]


def test_a_root_without_training_images_cannot_be_trained_on(tmp_path):
    root = write_tree(tmp_path, ["p010-d01-c01/cam01-f2-0001.jpg"])
    with pytest.raises(DataError, match=f"no training images \\(flag 0\\) under {tmp_path}"):
        build_train_set(parse_root(root))


def test_protocol_sets_hold_the_images_of_their_flags(records):
    sets = protocol_sets(records)
    assert _names(sets["val"]) == ["p001-d01-c02/cam02-f1-0002.jpg", "p003-d01-c01/cam09-f1-0003.jpg"]
    assert len(sets["train"]) == 7
    assert len(sets["test"]) == 15
    assert "p010-d01-c01/cam03-f10-0005.jpg" in _names(sets["test"])
    assert _names(sets["query-DT-ST"]) == ["p010-d01-c01/cam01-f2-0001.jpg", "p011-d01-c01/cam04-f2-0001.jpg"]
    assert _names(sets["gallery-DT-LT"]) == ["p010-d02-c02/cam02-f7-0007.jpg", "p011-d03-c02/cam06-f7-0006.jpg"]
    assert _names(sets["query-NT-LT"]) == ["p010-d02-c02/cam09-f5-0008.jpg"]
    assert _names(sets["gallery-NT-ST"]) == ["p010-d01-c01/cam10-f8-0004.png", "p011-d01-c01/cam14-f8-0004.png"]
    assert _names(sets["query-AD-LT"]) == ["p010-d02-c02/cam01-f3-0006.jpg", "p010-d02-c02/cam09-f5-0008.jpg",
                                           "p011-d03-c02/cam04-f3-0005.jpg"]
    assert _names(sets["gallery-AD-ST"]) == ["p010-d01-c01/cam02-f6-0002.jpg", "p010-d01-c01/cam10-f8-0004.png",
                                             "p011-d01-c01/cam05-f6-0002.jpg", "p011-d01-c01/cam14-f8-0004.png"]


def test_the_st_and_lt_pairs_equal_the_all_day_sets(records):
    sets = protocol_sets(records)
    for term in ("ST", "LT"):
        for side in ("query", "gallery"):
            assert _names(sets[f"{side}-{term}"]) == _names(sets[f"{side}-AD-{term}"])


def test_no_image_is_in_two_of_train_val_and_test(records):
    sets = protocol_sets(records)
    parts = [set(_names(sets[name])) for name in ("train", "val", "test")]
    assert sum(len(part) for part in parts) == len(HAND_MADE)
    assert set.union(*parts) == set(HAND_MADE)


def test_require_test_sets_returns_the_sets_when_all_twelve_are_present(records):
    sets = require_test_sets(records)
    assert all(len(sets[f"{side}-{name}"]) > 0 for name in SCENARIO_NAMES for side in ("query", "gallery"))


def test_require_test_sets_names_an_empty_scenario_set(tmp_path):
    without_nt_lt_gallery = [name for name in HAND_MADE if "-f9-" not in name]
    records = parse_root(write_tree(tmp_path, without_nt_lt_gallery))
    with pytest.raises(DataError, match=f"the NT-LT gallery set is empty: no images with flag 9 under {tmp_path}"):
        require_test_sets(records)


def test_require_test_sets_names_the_first_empty_set_in_scenario_order(tmp_path):
    records = parse_root(write_tree(tmp_path, ["p001-d01-c01/cam01-f0-0001.jpg"]))
    with pytest.raises(DataError, match="the DT-ST query set is empty: no images with flag 2 "):
        require_test_sets(records)
