"""The ten public layout readers on synthetic roots: counts against the files on disk, detection,
and every kind of bad root (wrong layout, mixed layouts, missing lists, off-scheme names, ranges)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from atzoo.cli.main import cli
from atzoo.data.layouts import LAYOUT_NAMES, detect_layout, get_layout, read_layout
from atzoo.data.synthetic_layouts import generate_layout
from atzoo.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".png", ".bmp")


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    return {name: generate_layout(base / name, name) for name in LAYOUT_NAMES}


def copy_root(roots, name, tmp_path) -> Path:
    return Path(shutil.copytree(roots[name], tmp_path / name))


def images_on_disk(root: Path, folder: str) -> int:
    return sum(1 for p in (root / folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def list_lines(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def test_every_layout_is_detected_and_read(roots):
    for name, root in roots.items():
        assert detect_layout(root).name == name
        dataset = read_layout(root)
        assert dataset.layout == name and len(dataset) > 0
        assert all(len(rows) > 0 for rows in dataset.sets.values())
        assert set(np.unique(dataset.modality)) <= {1, 2}


def test_summary_counts_agree_with_the_files_on_disk(roots):
    counts = {}
    for name, root in roots.items():
        result = CliRunner().invoke(cli, ["data", "summary", str(root), "--layout", name, "--json"])
        assert result.exit_code == 0, result.output
        counts[name] = {k: v["images"] for k, v in json.loads(result.output)["sets"].items()}
    market = roots["market1501"]
    junk = len(list((market / "bounding_box_test").glob("-1_*")))
    assert junk > 0 and len(list((market / "bounding_box_test").glob("0000_*"))) > 0
    assert counts["market1501"] == {"train": images_on_disk(market, "bounding_box_train"),
                                    "query": images_on_disk(market, "query"),
                                    "gallery": images_on_disk(market, "bounding_box_test") - junk}
    cuhk = roots["cuhk03"]
    for kind in ("detected", "labeled"):
        assert counts["cuhk03"][f"{kind}/gallery"] == images_on_disk(cuhk, f"{kind}/bounding_box_test")
    msmt = roots["msmt17"]
    assert counts["msmt17"]["train"] == list_lines(msmt / "list_train.txt") + list_lines(msmt / "list_val.txt")
    assert counts["msmt17"]["query"] + counts["msmt17"]["gallery"] == images_on_disk(msmt, "test")
    sysu = roots["sysu-mm01"]
    assert counts["sysu-mm01"]["query"] == images_on_disk(sysu, "cam3") + images_on_disk(sysu, "cam6") - sum(
        images_on_disk(sysu, f"cam{c}/{p:04d}") for c in (3, 6) for p in (1, 2, 3))
    regdb = roots["regdb"]
    assert counts["regdb"]["trial4/test-thermal"] == list_lines(regdb / "idx/test_thermal_4.txt")
    llcm = roots["llcm"]
    assert counts["llcm"]["test-infrared"] == images_on_disk(llcm, "test_nir")
    prcc = roots["prcc"]
    assert counts["prcc"]["query-changed"] == images_on_disk(prcc, "rgb/test/C")
    assert counts["prcc"]["train"] == images_on_disk(prcc, "rgb/train") + images_on_disk(prcc, "rgb/val")
    assert counts["ltcc"]["gallery"] == images_on_disk(roots["ltcc"], "test")
    assert counts["deepchange"]["val-query"] == images_on_disk(roots["deepchange"], "val-set-query")
    assert counts["vc-clothes"]["query"] == images_on_disk(roots["vc-clothes"], "query")


def test_labels_follow_each_layout(roots):
    sysu = read_layout(roots["sysu-mm01"])
    assert set(sysu.camera[sysu.sets["query"]]) == {3, 6} and set(sysu.modality[sysu.sets["query"]]) == {2}
    prcc = read_layout(roots["prcc"])
    assert set(prcc.clothes[prcc.sets["query-changed"]]) == {2} and set(prcc.camera[prcc.sets["gallery"]]) == {1}
    market = read_layout(roots["market1501"])
    assert 0 in market.person[market.sets["gallery"]] and 0 not in market.person[market.sets["query"]]
    regdb = read_layout(roots["regdb"])
    assert len(regdb) == 54, "an image listed in several trials is stored once"


def test_synthetic_layouts_are_deterministic(roots, tmp_path):
    again = generate_layout(tmp_path / "again", "ltcc")
    for path in sorted(roots["ltcc"].rglob("*.png"))[:5]:
        assert path.read_bytes() == (again / path.relative_to(roots["ltcc"])).read_bytes()


def run_summary(root, layout):
    return CliRunner().invoke(cli, ["data", "summary", str(root), "--layout", layout])


def test_a_root_of_another_layout_says_what_it_looks_like(roots):
    result = run_summary(roots["sysu-mm01"], "ltcc")
    assert result.exit_code == 2 and "looks like SYSU-MM01 instead" in result.output


def test_unknown_layout_lists_the_known_ones(roots):
    result = run_summary(roots["ltcc"], "viper")
    assert result.exit_code == 2 and "market1501" in result.output and "vc-clothes" in result.output


def test_mixed_layouts_are_refused(roots, tmp_path):
    root = copy_root(roots, "market1501", tmp_path)
    shutil.copytree(roots["sysu-mm01"] / "cam1", root / "cam1")
    for camera in ("cam3", "cam6"):
        shutil.copytree(roots["sysu-mm01"] / camera, root / camera)
    with pytest.raises(DataError, match="several layouts"):
        detect_layout(root)


def test_sysu_without_its_id_lists(roots, tmp_path):
    root = copy_root(roots, "sysu-mm01", tmp_path)
    shutil.rmtree(root / "exp")
    with pytest.raises(DataError, match="exp/"):
        read_layout(root, "sysu-mm01")


def test_regdb_trial_files_missing_or_out_of_range(roots, tmp_path):
    root = copy_root(roots, "regdb", tmp_path)
    (root / "idx/test_thermal_7.txt").unlink()
    with pytest.raises(DataError, match="test_thermal_7.txt"):
        read_layout(root, "regdb")
    root = copy_root(roots, "regdb", tmp_path / "b")
    shutil.copy(root / "idx/test_thermal_1.txt", root / "idx/test_thermal_11.txt")
    with pytest.raises(DataError, match="trial 11 is outside"):
        read_layout(root, "regdb")


def test_llcm_list_naming_a_missing_image(roots, tmp_path):
    root = copy_root(roots, "llcm", tmp_path)
    first = (root / "idx/train_vis.txt").read_text().splitlines()[0].split()[0]
    (root / first).unlink()
    with pytest.raises(DataError, match="does not exist"):
        read_layout(root, "llcm")


def test_a_file_off_the_naming_scheme_is_named(roots, tmp_path):
    root = copy_root(roots, "ltcc", tmp_path)
    shutil.copy(next((root / "test").iterdir()), root / "test" / "holiday.png")
    with pytest.raises(DataError, match=r"holiday\.png does not follow the naming scheme"):
        read_layout(root, "ltcc")


def test_an_empty_split_is_named(roots, tmp_path):
    root = copy_root(roots, "vc-clothes", tmp_path)
    for path in (root / "query").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="the query set of this vc-clothes root is empty"):
        read_layout(root, "vc-clothes")


def test_a_person_id_out_of_range_is_named(roots, tmp_path):
    root = copy_root(roots, "vc-clothes", tmp_path)
    source = next((root / "gallery").iterdir())
    source.rename(root / "gallery" / ("0999" + source.name[4:]))
    with pytest.raises(DataError, match="person id 999 is outside 1-512"):
        read_layout(root, "vc-clothes")


def test_a_missing_folder_is_named(roots, tmp_path):
    root = copy_root(roots, "prcc", tmp_path)
    shutil.rmtree(root / "rgb/test/B")
    with pytest.raises(DataError, match=r"no folder rgb/test/B/"):
        read_layout(root, "prcc")


def test_synth_layout_command_and_refusals(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["synth", "--layout", "regdb", "--preset", "tiny", str(tmp_path / "regdb")])
    assert result.exit_code == 0, result.output
    assert get_layout("regdb").looks_like(tmp_path / "regdb")
    result = runner.invoke(cli, ["synth", "--layout", "nope", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "known:" in result.output and not (tmp_path / "nope").exists()
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "regdb").rglob("*"))
    result = runner.invoke(cli, ["synth", "--layout", "regdb", str(tmp_path / "regdb")])
    assert result.exit_code == 2 and "is a dataset root" in result.output
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "regdb").rglob("*")) == before


def test_the_upload_guard_stops_an_image_of_every_layout(roots, tmp_path):
    from atzoo.errors import UploadBlockedError
    from atzoo.hub import guard
    from tests.packages import make_package

    package = make_package(tmp_path)
    guard(package)
    for root in roots.values():
        image = next(p for p in sorted(root.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
        stray = package / image.name
        shutil.copy(image, stray)
        with pytest.raises(UploadBlockedError, match=image.name.replace(".", r"\.")):
            guard(package)
        stray.unlink()


def test_summary_detects_a_public_layout_and_keeps_at_ustc_the_default(roots, tiny_synth_root):
    result = CliRunner().invoke(cli, ["data", "summary", str(roots["prcc"]), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["layout"] == "prcc"
    result = CliRunner().invoke(cli, ["data", "summary", str(tiny_synth_root), "--json"])
    assert result.exit_code == 0 and "release" in json.loads(result.output)
