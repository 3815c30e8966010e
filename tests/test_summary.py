"""`summarize` and `atzoo data summary` on a hand-made root; expected figures are worked out by hand."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from atzoo.cli.main import cli
from atzoo.data.layout import parse_root
from atzoo.data.sets import require_test_sets
from atzoo.data.summary import SUMMARY_SET_NAMES, release_guess, summarize
from atzoo.errors import DataError
from tests.atustc_tree import HAND_MADE, write_tree


def _stats(identities, clothes_mean, clothes_min, clothes_max, rgb, ir, images):
    return {"identities": identities,
            "clothes_per_identity": {"mean": clothes_mean, "min": clothes_min, "max": clothes_max},
            "rgb_cameras_per_identity": rgb, "ir_cameras_per_identity": ir, "images": images}


# HAND_MADE, by hand. train: person 1 clothes {1,2} RGB cams {1,3} IR {10}; person 3 clothes {1,2}
# RGB {1,2} IR {9}; person 7 clothes {1} IR {11}. val: person 1 cam 2, person 3 cam 9.
# test: person 10 clothes {1,2} RGB {1,2,3} IR {9,10,12}; person 11 clothes {1,2} RGB {4,5,6} IR {13,14}.
EXPECTED = {
    "train": _stats(3, 5 / 3, 1, 2, 4 / 3, 1.0, 7),
    "train-RGB": _stats(2, 2.0, 2, 2, 2.0, 0.0, 4),
    "train-IR": _stats(3, 1.0, 1, 1, 0.0, 1.0, 3),
    "val": _stats(2, 1.0, 1, 1, 0.5, 0.5, 2),
    "test": _stats(2, 2.0, 2, 2, 3.0, 2.5, 15),
    "query-DT-ST": _stats(2, 1.0, 1, 1, 1.0, 0.0, 2),
    "gallery-DT-ST": _stats(2, 1.0, 1, 1, 1.0, 0.0, 2),
    "query-DT-LT": _stats(2, 1.0, 1, 1, 1.0, 0.0, 2),
    "gallery-DT-LT": _stats(2, 1.0, 1, 1, 1.0, 0.0, 2),
    "query-NT-ST": _stats(2, 1.0, 1, 1, 0.0, 1.0, 2),
    "gallery-NT-ST": _stats(2, 1.0, 1, 1, 0.0, 1.0, 2),
    "query-NT-LT": _stats(1, 1.0, 1, 1, 0.0, 1.0, 1),
    "gallery-NT-LT": _stats(1, 1.0, 1, 1, 0.0, 1.0, 1),
    "query-AD-ST": _stats(2, 1.0, 1, 1, 1.0, 1.0, 4),
    "gallery-AD-ST": _stats(2, 1.0, 1, 1, 1.0, 1.0, 4),
    "query-AD-LT": _stats(2, 1.0, 1, 1, 1.0, 0.5, 3),
    "gallery-AD-LT": _stats(2, 1.0, 1, 1, 1.0, 0.5, 3),
}


@pytest.fixture
def root(tmp_path):
    return write_tree(tmp_path / "AT-USTC")


def _rounded(value):
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    return round(value, 9) if isinstance(value, float) else value


def _invoke(*args: str):
    return CliRunner().invoke(cli, ["data", "summary", *args])


def test_summary_figures_match_the_hand_count(root):
    result = summarize(parse_root(root))
    assert list(result["sets"]) == list(SUMMARY_SET_NAMES) == list(EXPECTED)
    assert _rounded(result["sets"]) == _rounded(EXPECTED)
    assert (result["root"], result["images"], result["release"]) == (str(root), 24, "other")
    assert result["empty_sets"] == []
    assert result["missing_for_training_or_evaluation"] == []


def test_summary_is_json_able(root):
    result = summarize(parse_root(root))
    assert json.loads(json.dumps(result)) == result


def test_empty_sets_are_shown_not_refused_and_agree_with_require_test_sets(tmp_path):
    kept = [name for name in HAND_MADE if "-f5-" not in name and "-f1-" not in name]
    records = parse_root(write_tree(tmp_path, kept))
    result = summarize(records)
    assert result["empty_sets"] == ["val", "query-NT-LT"]
    assert result["missing_for_training_or_evaluation"] == ["query-NT-LT"]
    assert result["sets"]["query-NT-LT"] == _stats(0, None, None, None, None, None, 0)
    assert result["sets"]["query-AD-LT"]["images"] == 2
    with pytest.raises(DataError, match="NT-LT query set is empty"):
        require_test_sets(records)


@pytest.mark.parametrize("images, release", [
    (403_599, "403k"), (396_000, "403k"), (411_000, "403k"), (390_000, "other"), (420_000, "other"),
    (135_000, "135k"), (133_000, "135k"), (130_000, "other"), (286_087, "other"), (24, "other"), (0, "other"),
])
def test_release_guess_names_a_release_only_near_its_size(images, release):
    assert release_guess(images) == release


def test_cli_prints_a_table_of_every_set(root):
    result = _invoke(str(root))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("24 images" in line and "other" in line for line in lines)
    for name in SUMMARY_SET_NAMES:
        assert any(line.split("│")[1:2] and line.split("│")[1].strip() == name for line in lines), name
    train_row = next(line for line in lines if line.split("│")[1:2] and line.split("│")[1].strip() == "train")
    assert [cell.strip() for cell in train_row.split("│")[2:-1]] == ["3", "1.67", "1-2", "1.33", "1.00", "7"]
    assert result.stderr == ""


def test_cli_json_is_the_library_summary(root):
    result = _invoke(str(root), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == summarize(parse_root(root))


def test_cli_shows_empty_sets_and_warns_with_exit_status_0(tmp_path):
    root = write_tree(tmp_path, [name for name in HAND_MADE if "-f9-" not in name and "-f7-" not in name])
    result = _invoke(str(root))
    assert result.exit_code == 0, result.output
    assert "gallery-DT-LT (empty)" in result.stdout
    assert "gallery-NT-LT (empty)" in result.stdout
    assert result.stderr.splitlines() == [
        "Warning: 3 empty set(s) that training and evaluation need: gallery-DT-LT, gallery-NT-LT, gallery-AD-LT"]


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: tmp / "missing", "dataset root {root} does not exist"),
    (lambda tmp: (tmp / "file.txt", (tmp / "file.txt").write_text("x"))[0], "dataset root {root} is not a directory"),
    (lambda tmp: (tmp / "empty", (tmp / "empty").mkdir())[0], "no images found under {root}"),
    (lambda tmp: write_tree(tmp / "bad", ["p001-d01-c01/img.jpg"]), "1 image file(s) under {root} do not match"),
    (lambda tmp: write_tree(tmp / "cam", ["p001-d01-c01/cam17-f0-0001.jpg"]), "have a camera outside 1-16"),
    (lambda tmp: write_tree(tmp / "flag", ["p001-d01-c01/cam01-f11-0001.jpg"]), "have a flag outside 0-10"),
])
def test_cli_errors_are_one_line_with_exit_status_2(tmp_path, make, expected):
    root = make(tmp_path)
    result = _invoke(str(root))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: ")
    assert expected.format(root=root) in result.stderr


def test_cli_skip_bad_names_warns_on_stderr_and_summarizes_the_rest(tmp_path):
    root = write_tree(tmp_path, [*HAND_MADE, "p001-d01-c02/IMG_0001.jpg"])
    refused = _invoke(str(root))
    assert refused.exit_code == 2
    assert "p001-d01-c02/IMG_0001.jpg" in refused.stderr and "--skip-bad-names" in refused.stderr
    result = _invoke(str(root), "--skip-bad-names", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 24
    assert result.stderr.startswith("Warning: 1 image file(s) under")
    assert "p001-d01-c02/IMG_0001.jpg; skipped" in result.stderr


def test_data_group_lists_summary():
    result = CliRunner().invoke(cli, ["data", "--help"])
    assert result.exit_code == 0
    assert "summary" in result.stdout
