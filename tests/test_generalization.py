"""The Generalization board: cross-dataset results in entries (schema, the paper's reported
averages), submitted from `evaluate --cross`, re-measured by `leaderboard verify --cross`, and the
app's Generalization view through gradio_client and in headless Chromium."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner
from gradio_client import Client
from playwright.sync_api import sync_playwright

from atzoo.cli.main import cli
from atzoo.data.synthetic_layouts import generate_layout
from atzoo.errors import LeaderboardError
from atzoo.formats.entry import entry_problems
from atzoo.leaderboard.cross_verify import entry_cross_dataset
from atzoo.leaderboard.generalization import generalization_rows
from atzoo.leaderboard.signing import trusted_entry_problems
from atzoo.leaderboard.store import load_snapshot, read_entry, update_entry
from atzoo.leaderboard.submit import submit
from atzoo.leaderboard.verify import verify_entry
from tests.packages import make_measured_package, populate_hf_cache

pytestmark = [pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

SEEDED = Path(__file__).resolve().parents[1] / "leaderboard"
REPO = "org/tiny-cross"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
BROWSER_WAIT_MS = 120_000


def test_the_papers_averages_are_reported_rows():
    rows = generalization_rows(load_snapshot(SEEDED))
    assert [(r["Rank"], r["ID"], r["Avg R1"], r["Avg mAP"], r["Status"], r["Figures"]) for r in rows] == [
        (1, "paper-uni-at", 39.81, 31.76, "reported by paper", "reported"),
        (2, "paper-baseline", 31.47, 24.16, "reported by paper", "reported")]
    assert generalization_rows(load_snapshot(SEEDED), "synthetic") == []


def paper_entry_with(cross) -> dict:
    data = json.loads((SEEDED / "entries" / "paper-baseline.json").read_text())
    data["cross_dataset"] = cross
    return data


def test_cross_dataset_results_are_checked():
    five = {name: {"rank1": 10.0 * (i + 1), "mAP": 5.0 * (i + 1)}
            for i, name in enumerate(("market1501", "cuhk03", "sysu-mm01", "prcc", "ltcc"))}
    assert entry_problems(paper_entry_with({"protocol_version": "cross-1.0", "datasets": five})) == []
    wrong_average = {"protocol_version": "cross-1.0", "datasets": five, "average": {"rank1": 31.0, "mAP": 15.0}}
    assert any("not the mean" in p for p in entry_problems(paper_entry_with(wrong_average)))
    unknown = {"protocol_version": "cross-1.0", "datasets": {"viper": {"rank1": 1.0, "mAP": 1.0}}}
    assert any("unknown cross-dataset name(s) viper" in p for p in entry_problems(paper_entry_with(unknown)))
    assert any("per-dataset figures or the average" in p
               for p in entry_problems(paper_entry_with({"protocol_version": "x"})))
    out_of_range = {"protocol_version": "x", "average": {"rank1": 130.0, "mAP": 1.0}}
    assert entry_problems(paper_entry_with(out_of_range))


@pytest.fixture()
def cross_submission(tmp_path, hf_cache, registry, tiny_synth_root):
    """A measured package, its `evaluate --cross` results on synthetic LTCC and PRCC, and its entry."""
    package = make_measured_package(tmp_path, tiny_synth_root)
    roots = {name: generate_layout(tmp_path / name, name) for name in ("ltcc", "prcc")}
    results = tmp_path / "cross.json"
    outcome = CliRunner().invoke(cli, ["evaluate", str(package), "--cross", f"ltcc={roots['ltcc']}",
                                       "--cross", f"prcc={roots['prcc']}", "--out", str(results), "--json"])
    assert outcome.exit_code == 0, outcome.output
    assert sorted(p.name for p in package.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                         "results.json"], "the package is left as it is"
    commit = populate_hf_cache(hf_cache, REPO, package)
    path = submit(package, registry, weights_ref=f"{REPO}@{commit}", submitter="Tester", pretraining="none",
                  cross_results=results)
    return path, roots, json.loads(results.read_text())


def test_submitted_cross_results_are_re_measured_where_the_verifier_has_the_data(cross_submission, tiny_synth_root,
                                                                               signer, registry):
    path, roots, measured = cross_submission
    reported = read_entry(path).cross_dataset
    assert set(reported.datasets) == {"ltcc", "prcc"}
    assert reported.datasets["ltcc"].rank1 == round(100 * measured["datasets"]["ltcc"]["headline"]["rank1"], 2)
    entry = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer,
                         cross=[("ltcc", roots["ltcc"])])
    verified = entry.verified
    assert verified.status == "verified", verified.message
    assert set(verified.cross_dataset.datasets) == {"ltcc"} and verified.cross_unavailable == ["prcc"]
    assert verified.cross_dataset.datasets["ltcc"] == reported.datasets["ltcc"]
    assert "not available here: prcc" in verified.message
    assert trusted_entry_problems(read_entry(path), load_snapshot(registry).verifiers) == []
    row = next(r for r in generalization_rows(load_snapshot(registry), "synthetic") if r["ID"] == entry.id)
    assert row["Status"] == "verified" and "not re-measured: prcc" in row["Figures"] and row["PRCC"] == ""


def test_edited_cross_figures_are_a_mismatch(cross_submission, tiny_synth_root, signer):
    path, roots, _ = cross_submission
    data = read_entry(path).to_json()["cross_dataset"]
    old = data["datasets"]["ltcc"]["mAP"]
    data["datasets"]["ltcc"]["mAP"] = round(old + 3 if old <= 97 else old - 3, 2)
    update_entry(path, cross_dataset=data)
    verified = verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer,
                            cross=[("ltcc", roots["ltcc"])]).verified
    assert verified.status == "mismatch" and "ltcc mAP" in verified.message
    assert verified.max_difference == pytest.approx(3.0, abs=1e-6)


def test_verify_cross_refusals(cross_submission, tiny_synth_root, signer, tmp_path):
    path, roots, measured = cross_submission
    with pytest.raises(LeaderboardError, match="does not look like LTCC"):
        verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer,
                     cross=[("ltcc", roots["prcc"])])
    update_entry(path, cross_dataset=None)
    assert "cross_dataset" not in json.loads(path.read_text())
    with pytest.raises(LeaderboardError, match="reports no cross-dataset results"):
        verify_entry(path, tiny_synth_root, device="cpu", progress=False, signer=signer,
                     cross=[("ltcc", roots["ltcc"])])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**measured, "model": {**measured["model"], "weights_sha256": "0" * 64}}))
    with pytest.raises(LeaderboardError, match="measured with other weights"):
        entry_cross_dataset(other, measured["model"]["weights_sha256"])
    tampered = json.loads(json.dumps(measured))
    tampered["datasets"]["ltcc"]["headline"]["rank1"] = 1.5
    other.write_text(json.dumps(tampered))
    with pytest.raises(LeaderboardError, match=r"datasets\.ltcc\.headline\.rank1"):
        entry_cross_dataset(other, measured["model"]["weights_sha256"])
    other.write_text(json.dumps(measured)[:-1] + ', "format_version": 1}')
    with pytest.raises(LeaderboardError, match="format_version"):
        entry_cross_dataset(other, measured["model"]["weights_sha256"])


# ---------------------------------------------------------------------------------------------
# the app


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    from atzoo.app.app import serve

    registry = tmp_path_factory.mktemp("gen-app") / "registry"
    (registry / "entries").mkdir(parents=True)
    for path in (SEEDED / "entries").glob("paper-*.json"):
        shutil.copy(path, registry / "entries" / path.name)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    blocks = serve(registry, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    blocks.close()


def test_generalization_endpoint(url):
    frame, _plot, summary = Client(url, verbose=False).predict("mAP", "403k", api_name="/generalization")
    rows = [dict(zip(frame["headers"], row)) for row in frame["data"]]
    assert [(r["Method"], r["Avg mAP"]) for r in rows] == [("Uni-AT", 31.76), ("Baseline (6 tokens, ID loss)", 24.16)]
    assert "2 entries" in summary


def test_generalization_view_renders_in_the_browser(url):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; the browser tests need Chromium installed there")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(BROWSER_WAIT_MS)
            page.goto(url)
            page.get_by_role("tab", name="Generalization").click()
            page.wait_for_selector("#gen-table [data-testid=cell-0-1]", timeout=BROWSER_WAIT_MS)
            methods = page.locator("#gen-table [data-testid$='-1'][data-testid^='cell-']").all_inner_texts()
            assert [m.strip() for m in methods] == ["Uni-AT", "Baseline (6 tokens, ID loss)"]
            page.wait_for_selector("#gen-plot img", timeout=BROWSER_WAIT_MS)
            assert page.locator("#gen-plot img").bounding_box()["width"] > 300
            assert "2 entries" in page.locator("#gen-summary").inner_text()
            page.locator("#gen-release input").first.click()
            page.get_by_role("option", name="synthetic").click()
            page.wait_for_function("document.querySelector('#gen-summary').innerText.includes('No entry')",
                                   timeout=BROWSER_WAIT_MS)
        finally:
            browser.close()
