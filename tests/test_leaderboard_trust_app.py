"""Trust in the app, served on a free port: tier order (API, CSV and the page in headless Chromium),
the entry detail view (row click and ?entry=ID), the Submit tab listing every problem in plain words,
Compare limited to one release, and the board served from its Hugging Face dataset export."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from gradio_client import Client

from atzoo.app.app import LeaderboardApp, serve
from atzoo.cli.main import cli
from atzoo.errors import AtzooError
from atzoo.leaderboard.board_dataset import export_dataset, load_board_dataset, metric_column
from atzoo.leaderboard.store import load_snapshot
from tests.test_leaderboard_app import BROWSER_WAIT_MS, LEADERBOARD_ARGS, browser, free_port  # noqa: F401
from tests.test_leaderboard_table import SEEDED, submission
from tests.test_leaderboard_trust import verified_block, write
from tests.trust import listed_signer, signed

pytestmark = [pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """Seeded papers, plus best scores on a mismatch and a failed entry, an unverified one, a verified
    one with the lowest scores, and a synthetic-release entry."""
    root = tmp_path_factory.mktemp("trust-app") / "leaderboard"
    (root / "entries").mkdir(parents=True)
    for path in SEEDED.glob("paper-*.json"):
        shutil.copy(path, root / "entries" / path.name)
    signer = listed_signer(root, tmp_path_factory.mktemp("keys"))
    mismatch = {**submission("sub-mismatch", base=88.0),
                "verified": verified_block(82.0, "mismatch", message="18 metric(s) beyond 0.5 points")}
    failed = {**submission("sub-failed", base=86.0), "verified": verified_block(0, "failed", message="shape mismatch")}
    verified = {**submission("sub-verified", base=20.0), "verified": verified_block(20.0, shift=0.1)}
    verified["verified"]["environment"] = {"atzoo": "0.9.0", "torch": "2.5.0", "device": "cuda"}
    for data in (mismatch, failed, verified):
        write(root, signed(data, signer))
    write(root, submission("sub-unverified", base=80.0))
    write(root, submission("sub-synthetic", release="synthetic", base=30.0))
    return root


@pytest.fixture(scope="module")
def url(registry):
    port = free_port()
    blocks = serve(registry, port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    blocks.close()


@pytest.fixture(scope="module")
def client(url) -> Client:
    return Client(url, verbose=False)


def rows(client: Client, **changes) -> list[dict]:
    frame, _ = client.predict(*{**LEADERBOARD_ARGS, **changes}.values(), api_name="/leaderboard")
    return [dict(zip(frame["headers"], row)) for row in frame["data"]]


# ---------------------------------------------------------------------------------------------
# API


def test_the_api_and_csv_order_rows_by_trust_tier(client):
    shown = rows(client)
    ids = [row["ID"] for row in shown]
    assert ids[:2] == ["sub-verified", "paper-uni-at"] and ids[13] == "sub-unverified"
    assert ids[-2:] == ["sub-mismatch", "sub-failed"] and "sub-synthetic" not in ids
    assert shown[-1]["Rank"] in (None, "") and shown[-2]["Rank"] in (None, "")
    by_method = [row["ID"] for row in rows(client, sort_by="Method")]
    assert by_method[0] == "sub-verified" and set(by_method[-2:]) == {"sub-mismatch", "sub-failed"}
    path = client.predict(*LEADERBOARD_ARGS.values(), api_name="/csv")
    listed = [row["ID"] for row in csv.DictReader(open(path, encoding="utf-8"))]
    assert listed == ids


def test_the_detail_endpoint_shows_the_whole_entry(client):
    text = client.predict("sub-verified", api_name="/entry_detail")
    assert "by **test-runner** (signature valid)" in text and "torch 2.5.0" in text and "device cuda" in text
    assert "| NT-ST | rank1 | 22.00 | 22.10 | +0.10 |" in text and "`?entry=sub-verified`" in text
    with pytest.raises(Exception, match="did you mean sub-verified"):
        client.predict("sub-verifed", api_name="/entry_detail")


def test_the_submit_check_lists_every_problem_in_plain_words(client):
    data = json.loads((SEEDED / "paper-bot.json").read_text())
    for metrics in data["reported"].values():
        for key, value in metrics.items():
            if value is not None:
                metrics[key] = round(value / 100, 4)
    data.update(id="Bad Id", verified={"status": "verified"})
    text = client.predict(json.dumps(data), None, api_name="/validate_entry")
    assert "**verified**: a submission may not carry a verified block" in text
    assert "**id**: is \"Bad Id\" (a string); expected 2 to 80 lowercase letters" in text
    assert "**reported.DT-ST.rank1**: is 0.8932: percentages expected, did you mean 89.32?" in text
    assert "**reported.AD-LT.mAP**: is 0.0855: percentages expected, did you mean 8.55?" in text
    assert text.count("did you mean") == 12 and "^[a-z0-9]" not in text and "Hint:" in text


def test_compare_shows_one_release_at_a_time(registry):
    app = LeaderboardApp(registry)
    assert app.compare_release("synthetic")["choices"] == [("Sub-Synthetic (sub-synthetic)", "sub-synthetic")]
    with pytest.raises(AtzooError, match="sub-synthetic is not on the 403k release"):
        app.compare(["paper-uni-at", "sub-synthetic"], "rank1", "403k")


# ---------------------------------------------------------------------------------------------
# the board as a dataset


def test_export_dataset_writes_typed_parquet_loadable_with_datasets(registry, tmp_path):
    from datasets import load_dataset

    result = CliRunner().invoke(cli, ["leaderboard", "export-dataset", str(tmp_path / "board"), "--dir",
                                      str(registry)])
    assert result.exit_code == 0, result.output
    table = load_dataset("parquet", data_files=str(tmp_path / "board" / "data" / "*.parquet"), split="train",
                         download_mode="force_redownload")
    assert table.num_rows == len(load_snapshot(registry).entries) == 17
    assert table.features["rank"].dtype == "int32" and table.features["num_params"].dtype == "int64"
    assert table.features[metric_column("verified", "AD-LT", "mAP")].dtype == "float64"
    by_id = {row["id"]: row for row in table}
    assert by_id["sub-verified"]["tier"] == "verified" and by_id["sub-verified"]["rank"] == 1
    assert by_id["sub-verified"]["verifier"] == "test-runner" and len(by_id["sub-verified"]["signature"]) == 88
    assert by_id["sub-mismatch"]["tier"] == "unranked" and by_id["sub-mismatch"]["rank"] is None
    assert by_id["paper-uni-at"][metric_column("reported", "Any-Time", "rank1")] == pytest.approx(55.80, abs=0.01)
    assert by_id["paper-uni-at"][metric_column("verified", "DT-ST", "rank1")] is None
    assert by_id["sub-synthetic"]["release"] == "synthetic"


def test_export_dataset_refuses_a_non_empty_folder(registry, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    result = CliRunner().invoke(cli, ["leaderboard", "export-dataset", str(tmp_path / "busy"), "--dir",
                                      str(registry)])
    assert result.exit_code == 2 and "is not an empty folder" in result.output
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["mine.txt"]


def test_the_app_serves_the_board_from_its_dataset(registry, tmp_path):
    board = export_dataset(load_snapshot(registry), tmp_path / "board")
    served = LeaderboardApp(tmp_path / "unused", source=str(board))
    frame, summary = served.leaderboard(*LEADERBOARD_ARGS.values())
    assert list(frame.data["ID"])[:2] == ["sub-verified", "paper-uni-at"] and "16 entries" in summary
    assert "signature valid" in served.detail("sub-verified")


def test_a_dataset_row_with_a_forged_verified_block_is_refused(registry, tmp_path):
    import pyarrow.parquet as pq

    board = export_dataset(load_snapshot(registry), tmp_path / "board")
    data_file = next((board / "data").glob("*.parquet"))
    table = pq.read_table(data_file).to_pylist()
    for row in table:
        if row["id"] == "sub-mismatch":
            entry = json.loads(row["entry_json"])
            entry["verified"]["status"] = "verified"
            row["entry_json"] = json.dumps(entry)
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table, schema=pq.read_schema(data_file)), data_file)
    snapshot = load_board_dataset(board)
    assert "sub-mismatch" not in snapshot.ids
    assert any("does not verify against 'test-runner'" in problems[0] for problems in snapshot.problems.values())


def test_a_source_that_is_not_a_board_dataset_is_refused(registry, tmp_path):
    (tmp_path / "plain").mkdir()
    result = CliRunner().invoke(cli, ["leaderboard", "serve", "--source", str(tmp_path / "plain"), "--dir",
                                      str(registry)])
    assert result.exit_code == 2 and "is not an atzoo board dataset" in result.output
    (tmp_path / "plain" / "data").mkdir()
    (tmp_path / "plain" / "data" / "board-00000-of-00001.parquet").write_text("not parquet")
    with pytest.raises(AtzooError, match="cannot be read as a board dataset"):
        LeaderboardApp(registry, source=str(tmp_path / "plain"))
    missing = CliRunner().invoke(cli, ["leaderboard", "serve", "--source", "no-such-thing", "--dir", str(registry)])
    assert missing.exit_code == 2 and "not a Hub dataset written ORG/NAME@REVISION" in missing.output


# ---------------------------------------------------------------------------------------------
# headless Chromium


@pytest.fixture
def page(browser, url):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(BROWSER_WAIT_MS)
    yield page
    page.close()


def _open_board(page, url: str, query: str = "") -> None:
    page.goto(url + query)
    page.wait_for_selector("#lb-table [data-testid=cell-0-1]", timeout=BROWSER_WAIT_MS)


def _column(page, index: int) -> list[str]:
    cells = page.locator(f"#lb-table [data-testid^='cell-'][data-testid$='-{index}']").all_inner_texts()
    return [text.strip() for text in cells]


def test_page_ranks_verified_first_and_mismatch_failed_unranked_last(page, url):
    _open_board(page, url)
    page.wait_for_function("document.querySelectorAll(\"#lb-table [data-testid^='cell-'][data-testid$='-2']\")"
                           ".length === 16", timeout=BROWSER_WAIT_MS)
    ids = _column(page, 2)
    assert ids[:2] == ["sub-verified", "paper-uni-at"] and ids[-2:] == ["sub-mismatch", "sub-failed"]
    ranks = _column(page, 0)
    assert ranks[0] == "1" and ranks[-2:] == ["", ""]
    statuses = _column(page, 10)
    assert statuses[-2:] == ["mismatch", "failed"]


def test_page_row_click_opens_the_detail(page, url):
    _open_board(page, url)
    page.locator("#lb-table [data-testid=cell-0-1]").click()
    page.wait_for_selector("#lb-detail :text('signature valid')", timeout=BROWSER_WAIT_MS)
    text = page.locator("#lb-detail").inner_text()
    assert "Sub-Verified" in text and "test-runner" in text and "torch 2.5.0" in text


def test_page_url_parameter_opens_the_detail(page, url):
    _open_board(page, url, "?entry=paper-deen")
    page.wait_for_selector("#lb-detail :text('The paper prints Any-Time 53.52/33.48')", timeout=BROWSER_WAIT_MS)
    assert "Not verified by the shared runner." in page.locator("#lb-detail").inner_text()


def test_page_submit_tab_lists_every_problem(page, url):
    _open_board(page, url)
    data = json.loads((SEEDED / "paper-bot.json").read_text())
    data["reported"] = {name: {k: (round(v / 100, 4) if v is not None else None) for k, v in values.items()}
                        for name, values in data["reported"].items()}
    data["id"] = "Bad Id"
    page.get_by_role("tab", name="Submit").click()
    page.locator("#submit-text textarea").fill(json.dumps(data))
    page.click("#submit-run")
    page.wait_for_selector("#submit-result :text('13 problems')", timeout=BROWSER_WAIT_MS)
    text = page.locator("#submit-result").inner_text()
    assert "reported.NT-ST.rank1: is 0.6369: percentages expected, did you mean 63.69?" in text
    assert "id: is \"Bad Id\"" in text and "Hint:" in text
