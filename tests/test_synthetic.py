"""The synthetic AT-USTC: layout, determinism, protocol flags, image structure, CLI, atomicity."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from atzoo.cli.main import cli
from atzoo.cli.synth_command import parse_size
from atzoo.data import synthetic
from atzoo.data.layout import parse_root
from atzoo.data.sets import build_train_set, require_test_sets
from atzoo.data.synthetic import (MANIFEST_NAME, TINY, DestinationError, SynthConfig, SynthConfigError,
                                  contact_sheet, generate, plan_clips, with_overrides)
from atzoo.protocol import GALLERY_FLAGS, IR, QUERY_FLAGS, RGB, SCENARIOS, UNUSED_TEST_FLAG, VAL_FLAG

SMALL = with_overrides(TINY, ids=4)


@pytest.fixture(scope="module")
def records(tiny_synth_root):
    return parse_root(tiny_synth_root)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def is_test(records) -> np.ndarray:
    return records.flag >= 2


# --- layout and determinism -------------------------------------------------------------------


def test_the_tree_follows_the_layout_and_holds_every_planned_image(tiny_synth_root, records):
    assert len(records) == TINY.num_images == sum(len(c.frames) for c in plan_clips(TINY))
    assert set(np.unique(records.person)) == set(range(1, TINY.ids + 1))
    assert {Path(p).suffix for p in records.path} == {".jpg", ".png"}
    manifest = json.loads((tiny_synth_root / MANIFEST_NAME).read_text())
    assert manifest["images"] == TINY.num_images and manifest["config"]["ids"] == TINY.ids
    with Image.open(records.absolute_paths()[0]) as image:
        assert image.mode == "RGB" and image.size == (TINY.size[1], TINY.size[0])


def test_the_same_seed_gives_the_same_bytes_whatever_the_number_of_workers(tiny_synth_root, tmp_path):
    again = generate(tmp_path / "again", TINY, progress=False, workers=2)
    assert tree_digest(again) == tree_digest(tiny_synth_root)


def test_another_seed_gives_other_images_and_another_split(tmp_path):
    first = tree_digest(generate(tmp_path / "a", SMALL, progress=False))
    second = tree_digest(generate(tmp_path / "b", with_overrides(SMALL, seed=1), progress=False))
    assert set(first) != set(second)
    assert synthetic.split_identities(SMALL) != synthetic.split_identities(with_overrides(SMALL, seed=3))


# --- the protocol's flags ---------------------------------------------------------------------


def test_identities_split_one_to_one_into_train_and_test(records):
    train = set(records.person[records.flag <= VAL_FLAG])
    test = set(records.person[is_test(records)])
    assert len(train) == len(test) == TINY.ids // 2
    assert not train & test


def test_about_a_fifth_of_the_training_images_are_held_out_for_validation(records):
    train_side = records.flag <= VAL_FLAG
    share = np.mean(records.flag[train_side] == VAL_FLAG)
    assert abs(share - TINY.val_share) < 0.01
    assert build_train_set(records).num_persons == TINY.ids // 2


def test_every_test_clip_gives_three_query_and_three_gallery_images_per_term(records):
    test = records.subset(is_test(records))
    clips = {}
    for person, clothes, camera, flag in zip(test.person, test.clothes, test.camera, test.flag):
        clips.setdefault((person, clothes, camera), []).append(int(flag))
    assert len(clips) == (TINY.ids // 2) * TINY.clothings * (TINY.rgb_cameras + TINY.ir_cameras)
    for (_, _, camera), flags in clips.items():
        expected = (2, 6, 3, 7) if camera <= 8 else (4, 8, 5, 9)
        counts = {flag: flags.count(flag) for flag in set(flags)}
        assert counts == {**{f: 3 for f in expected}, UNUSED_TEST_FLAG: TINY.frames - 12}


def true_matches(records, query: int, gallery: np.ndarray, modality: str, clothes: str) -> int:
    """Kept true matches of one query under the official filters, written out independently."""
    same_person = records.person[gallery] == records.person[query]
    kept = ~(same_person & (records.camera[gallery] == records.camera[query]))
    same_modality = records.modality[gallery] == records.modality[query]
    if modality == "vm":
        kept &= (records.modality[query] == RGB) & (records.modality[gallery] == RGB)
    elif modality == "im":
        kept &= (records.modality[query] == IR) & (records.modality[gallery] == IR)
    else:
        kept &= ~same_modality
    same_clothes = records.clothes[gallery] == records.clothes[query]
    kept &= ~(same_person & (~same_clothes if clothes == "sc" else same_clothes))
    return int(np.sum(kept & same_person))


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_query_has_a_true_match_under_each_scenario(records, scenario):
    queries = np.flatnonzero(np.isin(records.flag, QUERY_FLAGS[scenario.name]))
    gallery = np.flatnonzero(np.isin(records.flag, GALLERY_FLAGS[scenario.name]))
    assert queries.size and gallery.size
    matches = [true_matches(records, q, gallery, scenario.modality, scenario.clothes) for q in queries]
    assert min(matches) >= 1


def test_the_six_scenarios_sets_are_present(records):
    sets = require_test_sets(records)
    assert len(sets["query-AD-LT"]) == len(sets["query-DT-LT"]) + len(sets["query-NT-LT"])


# --- persons, clothes, cameras ----------------------------------------------------------------


def test_each_person_has_several_dates_each_with_its_own_clothing(records):
    for person in np.unique(records.person):
        mine = records.person == person
        pairs = set(zip(records.date[mine], records.clothes[mine]))
        assert len(pairs) == TINY.clothings
        assert len({d for d, _ in pairs}) == len({c for _, c in pairs}) == TINY.clothings


def test_each_person_in_each_clothing_is_seen_by_rgb_and_ir_cameras(records):
    for person in np.unique(records.person):
        for clothes in range(1, TINY.clothings + 1):
            mine = (records.person == person) & (records.clothes == clothes)
            cameras = np.unique(records.camera[mine])
            assert np.sum(cameras <= 8) == TINY.rgb_cameras and np.sum(cameras >= 9) == TINY.ir_cameras


def channel_spread(path: Path) -> float:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    return float(np.abs(pixels - pixels.mean(axis=2, keepdims=True)).max(axis=2).mean())


def test_ir_images_are_grey_and_rgb_images_are_coloured(records):
    paths = records.absolute_paths()
    ir = [channel_spread(paths[i]) for i in np.flatnonzero(records.modality == IR)[::40]]
    rgb = [channel_spread(paths[i]) for i in np.flatnonzero(records.modality == RGB)[::40]]
    assert max(ir) < 1.5
    assert min(rgb) > 5


def region_colour(images: np.ndarray, rows: slice) -> np.ndarray:
    """Mean colour of a band of rows around the image's centre line: robust to the frame jitter."""
    width = images.shape[2]
    return images[:, rows, width // 4:3 * width // 4].astype(float).mean(axis=(1, 2))


def test_clothes_change_the_torso_colours_while_the_head_stays_the_persons():
    renderer = synthetic.Renderer(with_overrides(TINY, size=(64, 32)))
    torso, head = slice(22, 36), slice(10, 20)
    same_clip, other_clothes, head_other_clothes, head_other_person = [], [], [], []
    for person in range(1, 11):
        first, second = (renderer.clip_images(person, clothing, 1, 2) for clothing in (1, 2))
        stranger = renderer.clip_images(person % 10 + 1, 1, 1, 1)
        same_clip.append(np.linalg.norm(region_colour(first, torso)[0] - region_colour(first, torso)[1]))
        other_clothes.append(np.linalg.norm(region_colour(first, torso)[0] - region_colour(second, torso)[0]))
        head_other_clothes.append(np.linalg.norm(region_colour(first, head)[0] - region_colour(second, head)[0]))
        head_other_person.append(np.linalg.norm(region_colour(first, head)[0] - region_colour(stranger, head)[0]))
    assert np.mean(other_clothes) > 3 * np.mean(same_clip)
    assert np.mean(head_other_clothes) < np.mean(head_other_person)


def test_infrared_renders_the_same_body_without_colour():
    renderer = synthetic.Renderer(with_overrides(TINY, size=(64, 32)))
    ir = renderer.clip_images(2, 1, 9, 2)
    assert np.array_equal(ir[..., 0], ir[..., 1]) and np.array_equal(ir[..., 1], ir[..., 2])
    assert ir.std() > 15


def test_contact_sheet_shape():
    sheet = contact_sheet(TINY, persons=(1, 2))
    assert sheet.shape == (2 * 32 + 2, 6 * 16 + 10, 3) and sheet.dtype == np.uint8


# --- settings and destination -----------------------------------------------------------------


@pytest.mark.parametrize("overrides, named", [
    ({"ids": 5}, "ids=5"), ({"ids": 2}, "ids=2"), ({"size": (8, 8)}, "size=8x8"), ({"clothings": 1}, "clothings=1"),
    ({"rgb_cameras": 1}, "rgb_cameras=1"), ({"ir_cameras": 9}, "ir_cameras=9"), ({"frames": 11}, "frames=11"),
    ({"val_share": 1.0}, "val_share=1.0"), ({"ids": "80"}, "ids='80'"), ({"size": 5}, "size=5"),
    ({"size": (64.0, 32)}, "size=(64.0, 32)"), ({"seed": -1}, "seed=-1"),
])
def test_bad_settings_are_refused_naming_the_value(overrides, named):
    with pytest.raises(SynthConfigError, match=re.escape(named)):
        SynthConfig(**overrides)


def test_an_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    real_save = synthetic._save
    calls = []

    def failing_save(array, path, quality):
        calls.append(path)
        if len(calls) == 50:
            raise OSError("disk full")
        real_save(array, path, quality)

    monkeypatch.setattr(synthetic, "_save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        generate(tmp_path / "root", SMALL, progress=False, workers=1)
    assert len(calls) == 50
    assert list(tmp_path.iterdir()) == []


def test_a_failed_overwrite_keeps_the_old_dataset(tmp_path, monkeypatch):
    root = generate(tmp_path / "root", SMALL, progress=False)
    before = tree_digest(root)
    monkeypatch.setattr(synthetic, "_save", lambda *args: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        generate(root, with_overrides(SMALL, seed=5), overwrite=True, progress=False)
    assert tree_digest(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["root"]


def test_overwrite_replaces_only_a_synthetic_dataset(tmp_path):
    root = generate(tmp_path / "root", SMALL, progress=False)
    generate(root, with_overrides(SMALL, seed=2), overwrite=True, progress=False)
    assert json.loads((root / MANIFEST_NAME).read_text())["config"]["seed"] == 2
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DestinationError, match="photos"):
        generate(other, SMALL, overwrite=True, progress=False)
    assert (other / "keep.txt").read_text() == "mine"


# --- command line -----------------------------------------------------------------------------


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cli_writes_the_tree_and_prints_a_summary(tmp_path):
    root = tmp_path / "synth"
    result = invoke("synth", str(root), "--preset", "tiny", "--ids", "4", "--seed", "7", "--size", "40x20",
                    "--frames", "12", "--quiet")
    assert result.exit_code == 0, result.output
    config = with_overrides(SMALL, seed=7, size=(40, 20), frames=12)
    assert f"{config.num_images:,} images" in result.output and str(root) in result.output
    assert len(parse_root(root)) == config.num_images
    assert json.loads((root / MANIFEST_NAME).read_text())["config"]["size"] == [40, 20]


def test_cli_refuses_an_existing_folder_without_overwrite(tmp_path):
    root = tmp_path / "taken"
    root.mkdir()
    (root / "note.txt").write_text("keep")
    result = invoke("synth", str(root), "--preset", "tiny", "--quiet")
    assert result.exit_code == 2
    assert str(root) in result.output and "--overwrite" in result.output
    assert [p.name for p in root.iterdir()] == ["note.txt"]


def test_cli_overwrite_replaces_a_synthetic_dataset(tmp_path):
    root = generate(tmp_path / "synth", SMALL, progress=False)
    result = invoke("synth", str(root), "--preset", "tiny", "--ids", "6", "--overwrite", "--quiet")
    assert result.exit_code == 0, result.output
    assert len(np.unique(parse_root(root).person)) == 6


@pytest.mark.parametrize("args, named", [
    (["--size", "128-64"], "128-64"), (["--size", "big"], "big"), (["--ids", "7"], "ids=7"),
    (["--frames", "3"], "frames=3"), (["--size", "8x8"], "8x8"),
])
def test_cli_refuses_bad_settings(tmp_path, args, named):
    result = invoke("synth", str(tmp_path / "x"), "--preset", "tiny", "--quiet", *args)
    assert result.exit_code == 2
    assert named in result.output
    assert not (tmp_path / "x").exists()


def test_parse_size_accepts_height_x_width():
    assert parse_size("128x64") == (128, 64)
    assert parse_size(" 256X128 ") == (256, 128)


def test_data_summary_reads_the_synthetic_tree(tiny_synth_root):
    result = invoke("data", "summary", str(tiny_synth_root), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == TINY.num_images
    assert summary["missing_for_training_or_evaluation"] == []
