"""The leaderboard app's pure logic: the table (filters, hiding, sorting, CSV), the Compare figures
and the retrieval demo (models, image checks, ranking, the synthetic gallery)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from atzoo.errors import AtzooError, LeaderboardError
from atzoo.app import demo, plots
from atzoo.leaderboard.store import load_snapshot
from atzoo.leaderboard.table import (COLUMNS, Filters, backbone_choices, build_table, entry_choices,
                                     hidden_message, leaderboard_rows, rows_to_csv, task_family_choices)
from atzoo.protocol import SCENARIO_NAMES
from tests.trust import listed_signer, signed

SEEDED = Path(__file__).resolve().parents[1] / "leaderboard" / "entries"


def seeded_entry(name: str = "paper-uni-at") -> dict:
    return json.loads((SEEDED / f"{name}.json").read_text())


def full_metrics(base: float) -> dict:
    return {name: {"rank1": base + i, "rank5": base + i + 5, "rank10": base + i + 6, "rank20": base + i + 7,
                   "mAP": base - 10 + i, "mINP": base - 20 + i} for i, name in enumerate(SCENARIO_NAMES)}


def submission(entry_id: str, *, release: str = "403k", base: float = 60.0, num_params: int = 25_000_000,
               verified_shift: float | None = None, **changes) -> dict:
    data = seeded_entry()
    data.update(id=entry_id, origin="submission", submitter="tester", reported=full_metrics(base))
    data["method"] = dict(data["method"], name=entry_id.title(), task_family="AT-ReID")
    data["dataset"] = {"release": release, "protocol_version": "1.0", "evaluator_version": "atzoo-1.0"}
    data["weights"] = {"repo": "org/model", "revision": "a" * 40, "filename": "model.safetensors",
                       "sha256": f"{abs(hash(entry_id)):064x}"[-64:], "num_params": num_params}
    if verified_shift is not None:
        data["verified"] = {"status": "verified", "date": "2026-01-02T00:00:00Z", "tolerance": 0.5,
                            "metrics": full_metrics(base + verified_shift), "max_difference": abs(verified_shift)}
    for key, value in changes.items():
        data[key] = dict(data[key], **value) if isinstance(value, dict) else value
    return data


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """The twelve seeded rows plus submissions: verified, flagged, withdrawn, tricks, other releases."""
    root = tmp_path_factory.mktemp("registry")
    (root / "entries").mkdir()
    signer = listed_signer(root, tmp_path_factory.mktemp("keys"))
    for path in SEEDED.glob("paper-*.json"):
        shutil.copy(path, root / "entries" / path.name)
    extra = [
        submission("sub-verified", base=70.0, verified_shift=0.2),
        submission("sub-flagged", moderation={"flagged": True, "flag_reason": "numbers look copied"}),
        submission("sub-withdrawn", moderation={"withdrawn": True}),
        submission("sub-tta", disclosures={"test_time_augmentation": ["flip"]}),
        submission("sub-synthetic", release="synthetic", base=40.0, verified_shift=3.0),
        submission("sub-135k", release="135k"),
    ]
    for data in extra:
        data = signed(data, signer) if data.get("verified") else data
        (root / "entries" / f"{data['id']}.json").write_text(json.dumps(data))
    snapshot = load_snapshot(root)
    assert not snapshot.problems
    return root


# ---------------------------------------------------------------------------------------------
# table


def test_seeded_rows_rank_uni_at_first_and_any_time_is_the_mean():
    rows = leaderboard_rows(load_snapshot(SEEDED.parent), "rank1", Filters())
    papers = [row for row in rows if row["ID"].startswith("paper-")]
    assert len(papers) == 12
    assert rows[0]["Method"] == "Uni-AT" and rows[0]["Rank"] == 1
    assert rows[0]["Any-Time"] == pytest.approx(55.80, abs=0.01)
    assert rows[0]["Any-Time"] == pytest.approx(np.mean([rows[0][name] for name in SCENARIO_NAMES]), abs=0.01)
    scores = [row["Any-Time"] for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert [row["Rank"] for row in rows] == list(range(1, len(rows) + 1))
    assert {row["Status"] for row in papers} == {"reported by paper"}


def test_default_view_hides_flagged_withdrawn_and_tricks_and_says_so(registry):
    table = build_table(load_snapshot(registry), "rank1", Filters())
    ids = [row["ID"] for row in table.rows]
    assert len(ids) == 13 and ids[0] == "sub-verified"
    assert not {"sub-flagged", "sub-withdrawn", "sub-tta", "sub-synthetic", "sub-135k"} & set(ids)
    assert table.hidden_message == "3 hidden: 1 withdrawn, 1 flagged, 1 use test-time tricks"


def test_hidden_entries_appear_when_asked_for_with_their_flags(registry):
    snapshot = load_snapshot(registry)
    flagged = {row["ID"]: row for row in leaderboard_rows(snapshot, filters=Filters(show_flagged=True))}
    assert flagged["sub-flagged"]["Flags"] == "flagged: numbers look copied"
    assert "sub-withdrawn" not in flagged
    tricks = {row["ID"]: row for row in leaderboard_rows(snapshot, filters=Filters(include_tricks=True))}
    assert tricks["sub-tta"]["Flags"] == "TTA: flip"
    everything = build_table(snapshot, filters=Filters(show_flagged=True, include_tricks=True,
                                                       include_withdrawn=True))
    assert len(everything.rows) == 16 and everything.hidden_message == ""


def test_releases_never_share_a_table(registry):
    snapshot = load_snapshot(registry)
    synthetic = leaderboard_rows(snapshot, filters=Filters(release="synthetic"))
    assert [row["ID"] for row in synthetic] == ["sub-synthetic"]
    assert [row["ID"] for row in leaderboard_rows(snapshot, filters=Filters(release="135k"))] == ["sub-135k"]
    assert all(not row["ID"].startswith("paper-") for row in synthetic)


def test_filters_verified_family_backbone_and_search(registry):
    snapshot = load_snapshot(registry)
    verified = leaderboard_rows(snapshot, filters=Filters(verified_only=True))
    assert [(row["ID"], row["Status"]) for row in verified] == [("sub-verified", "verified")]
    tr = leaderboard_rows(snapshot, filters=Filters(task_families=("Tr-ReID",)))
    assert {row["Method"] for row in tr} == {"BoT", "TransReID", "CLIP-ReID (R50)", "CLIP-ReID (ViT-B)"}
    resnet = leaderboard_rows(snapshot, filters=Filters(backbones=("ResNet-50",)))
    assert resnet and all(row["Backbone"] == "ResNet-50" for row in resnet)
    found = leaderboard_rows(snapshot, filters=Filters(search="  clip VIT "))
    assert [row["ID"] for row in found] == ["paper-clip-reid-vit-b"]
    assert leaderboard_rows(snapshot, filters=Filters(search="no such method")) == []


def test_metric_switch_and_missing_values(registry):
    snapshot = load_snapshot(registry)
    by_id = {row["ID"]: row for row in leaderboard_rows(snapshot, "mINP")}
    assert by_id["paper-uni-at"]["Any-Time"] is None and by_id["paper-uni-at"]["DT-ST"] is None
    assert by_id["sub-verified"]["DT-ST"] == 50.0 and by_id["sub-verified"]["Any-Time"] == 52.5
    assert list(by_id)[0] == "sub-verified", "rows without the metric sort last"
    assert by_id["sub-verified"]["Params (M)"] == 25.0


def test_sort_by_method_and_scenario(registry):
    snapshot = load_snapshot(registry)
    by_method = leaderboard_rows(snapshot, sort_by="Method")
    assert [row["Tier"] for row in by_method] == sorted(row["Tier"] for row in by_method)
    papers = [row["Method"] for row in by_method if row["Status"] == "reported by paper"]
    assert by_method[0]["Method"] == "Sub-Verified" and papers == sorted(papers, key=str.lower)
    by_night = [row for row in leaderboard_rows(snapshot, sort_by="NT-ST") if row["Status"] == "reported by paper"]
    assert [row["NT-ST"] for row in by_night] == sorted((row["NT-ST"] for row in by_night), reverse=True)
    assert by_night[0]["Rank"] == 2, "the verified entry is ranked first whatever its NT-ST score"
    by_day_lt = leaderboard_rows(load_snapshot(SEEDED.parent), sort_by="DT-LT")
    tied = {row["Method"]: row["Rank"] for row in by_day_lt if row["DT-LT"] == 34.17}
    assert tied == {"CAJ": 6, "TransReID": 6}
    assert [row["Rank"] for row in by_day_lt][5:8] == [6, 6, 8]

    with pytest.raises(LeaderboardError, match="cannot sort by 'Color'"):
        leaderboard_rows(snapshot, sort_by="Color")


def test_rows_without_the_metric_have_no_rank():
    rows = leaderboard_rows(load_snapshot(SEEDED.parent), "mINP", Filters())
    assert len(rows) == 12 and all(row["Rank"] is None and row["Any-Time"] is None for row in rows)


def test_bad_metric_and_release_are_refused(registry):
    with pytest.raises(LeaderboardError, match="unknown metric 'top1'"):
        leaderboard_rows(load_snapshot(registry), "top1")
    with pytest.raises(LeaderboardError, match="unknown dataset release '400k'"):
        Filters(release="400k")


def test_csv_round_trips_the_rows(registry):
    rows = leaderboard_rows(load_snapshot(registry), "mAP")
    parsed = list(csv.DictReader(io.StringIO(rows_to_csv(rows))))
    assert list(parsed[0]) == list(COLUMNS)
    assert len(parsed) == len(rows)
    assert parsed[1]["Method"] == rows[1]["Method"] and float(parsed[1]["DT-ST"]) == rows[1]["DT-ST"]
    assert parsed[1]["Params (M)"] == ""


def test_choice_lists(registry):
    snapshot = load_snapshot(registry)
    assert task_family_choices(snapshot) == ["Tr-ReID", "CC-ReID", "CM-ReID", "AT-ReID"]
    assert "ResNet-50" in backbone_choices(snapshot, "403k")
    assert ("Uni-AT (paper-uni-at)", "paper-uni-at") in entry_choices(snapshot, "403k")
    assert [value for _, value in entry_choices(snapshot, "synthetic")] == ["sub-synthetic"]


def test_hidden_message_wording():
    from collections import Counter

    assert hidden_message(Counter()) == ""
    assert hidden_message(Counter({"flagged": 1, "use test-time tricks": 2})) == \
        "3 hidden: 1 flagged, 2 use test-time tricks"


# ---------------------------------------------------------------------------------------------
# plots


def _texts(figure: Figure) -> str:
    return " ".join(text.get_text() for axes in figure.axes for text in axes.texts)


def test_radar_draws_one_line_per_entry_and_explains_when_empty(registry):
    snapshot = load_snapshot(registry)
    entries = [snapshot.get("paper-uni-at"), snapshot.get("paper-bot")]
    figure = plots.radar_plot(entries, "rank1")
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].lines) == 2
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["Uni-AT", "BoT"]
    empty = plots.radar_plot(entries, "mINP")
    assert "all six scenarios" in _texts(empty)
    for plot in (plots.radar_plot, plots.gap_plot, plots.reported_vs_verified_plot, plots.anytime_vs_params_plot):
        assert "Select at least one entry" in _texts(plot([], "mAP"))


def test_gaps_are_short_minus_long_and_day_minus_night(registry):
    values = [90.0, 40.0, 80.0, 30.0, 50.0, 20.0]
    assert plots.gaps(values) == pytest.approx(((90 + 80 + 50) / 3 - (40 + 30 + 20) / 3, 65.0 - 55.0))
    figure = plots.gap_plot([load_snapshot(registry).get("paper-uni-at")], "mAP")
    assert len(figure.axes[0].patches) == 2


def test_reported_vs_verified_plots_verified_entries_only(registry):
    snapshot = load_snapshot(registry)
    figure = plots.reported_vs_verified_plot([snapshot.get("sub-verified"), snapshot.get("paper-bot")], "rank1")
    axes = figure.axes[0]
    assert len(axes.collections) == 2, "the tolerance band and one scatter"
    offsets = axes.collections[1].get_offsets()
    assert len(offsets) == 6 and np.allclose(offsets[:, 1] - offsets[:, 0], 0.2)
    assert "0.5" in " ".join(t.get_text() for t in axes.get_legend().get_texts())
    empty = plots.reported_vs_verified_plot([snapshot.get("paper-bot")], "rank1")
    assert "No verified entries" in _texts(empty)


def test_anytime_vs_params_needs_weights(registry):
    snapshot = load_snapshot(registry)
    figure = plots.anytime_vs_params_plot([snapshot.get("sub-verified"), snapshot.get("paper-uni-at")], "rank1")
    assert figure.axes[0].get_xscale() == "log"
    assert len(figure.axes[0].collections) == 1
    assert "parameter count" in _texts(plots.anytime_vs_params_plot([snapshot.get("paper-uni-at")]))


# ---------------------------------------------------------------------------------------------
# demo


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    from tests.packages import make_package

    return make_package(tmp_path_factory.mktemp("demo-package"))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> demo.SyntheticGallery:
    return demo.synthetic_gallery(tmp_path_factory.mktemp("demo-cache"))


def test_synthetic_gallery_is_generated_once_into_the_cache(tmp_path_factory, gallery):
    assert gallery.query.is_file() and "demo-gallery" in str(gallery.query)
    assert len(gallery.gallery) == 32 and all(path.is_file() for path in gallery.gallery)
    assert len({path.parent.name + path.name[:5] for path in gallery.gallery}) == 32, "one image per clip"
    again = demo.synthetic_gallery(gallery.query.parents[3])
    assert again == gallery


def test_load_package_and_run_directory(package, tmp_path):
    from tests.packages import make_run_dir

    model = demo.load_demo_model(str(package))
    assert model.input_size == (32, 16) and model.num_heads == 1 and model.head_names == ["single output"]
    run = demo.load_demo_model(str(make_run_dir(tmp_path / "run")))
    assert run.input_size == (32, 16) and not run.model.training


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(AtzooError, match="choose a zoo model"):
        demo.load_demo_model("  ")
    with pytest.raises(AtzooError, match="has no config.json"):
        demo.load_demo_model(str(tmp_path))
    with pytest.raises(AtzooError, match="neither an existing folder nor a zoo model"):
        demo.load_demo_model("no-such-thing")
    with pytest.raises(AtzooError, match="METHOD@TAG"):
        demo.load_zoo_model("@403k")


def test_rank_gallery_puts_the_query_itself_first(package, gallery):
    model = demo.ModelCache().get(str(package))
    images = [*gallery.gallery[:5], gallery.query, *gallery.gallery[5:10]]
    ranked = demo.rank_gallery(model, gallery.query, images, "AD-LT")
    assert len(ranked) == 11
    scores = [score for _, score in ranked]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(np.asarray(ranked[0][0]), np.asarray(Image.open(gallery.query).convert("RGB")))


class SixHeads(torch.nn.Module):
    """Head i sees only colour channel i % 3: the ranking depends on the head."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        channels = images.mean(dim=(2, 3))
        heads = [torch.stack([channels[:, i % 3], torch.ones_like(channels[:, 0])], dim=1) for i in range(6)]
        return torch.stack(heads, dim=1)


def test_six_head_models_rank_with_the_chosen_head():
    model = demo.DemoModel(SixHeads(), (8, 8), ((0.5,) * 3, (0.25,) * 3), 6, "test")
    query = np.zeros((8, 8, 3), np.uint8) + np.array([255, 0, 128], np.uint8)
    red = np.zeros((8, 8, 3), np.uint8) + np.array([255, 255, 0], np.uint8)
    green = np.zeros((8, 8, 3), np.uint8) + np.array([0, 0, 128], np.uint8)
    by_red = demo.rank_gallery(model, query, [green, red], "DT-ST")
    by_green = demo.rank_gallery(model, query, [green, red], "DT-LT")
    assert np.asarray(by_red[0][0])[0, 0, 1] == 255
    assert np.asarray(by_green[0][0])[0, 0, 1] == 0
    with pytest.raises(AtzooError, match="unknown scenario head 'XX'"):
        demo.rank_gallery(model, query, [red], "XX")


def test_bad_images_are_refused_with_their_name(tmp_path, package, gallery, monkeypatch):
    model = demo.load_demo_model(str(package))
    fake = tmp_path / "holiday.png"
    fake.write_text("this is not an image")
    with pytest.raises(AtzooError, match="holiday.png is not an image"):
        demo.rank_gallery(model, fake, gallery.gallery[:2])
    with pytest.raises(AtzooError, match="gallery is empty"):
        demo.rank_gallery(model, gallery.query, [])
    wide = tmp_path / "wide.png"
    Image.new("RGB", (5000, 4)).save(wide)
    with pytest.raises(AtzooError, match=r"wide.png is 5000x4 pixels; images may be at most 4096"):
        demo.open_image(wide)
    monkeypatch.setattr(demo, "MAX_BYTES", 100)
    with pytest.raises(AtzooError, match="may be at most 0 MB|MB; images may be at most"):
        demo.open_image(gallery.query)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(AtzooError, match="empty.jpg is empty"):
        demo.open_image(empty)


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    Image.new("L", (400, 400)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(AtzooError, match="bomb.png cannot be decoded"):
        demo.open_image(bomb)
