"""The leaderboard app, started on a free port: its API through gradio_client and its page in
headless Chromium (Playwright), on a registry holding the twelve seeded rows."""

from __future__ import annotations

import csv
import json
import shutil
import socket
from pathlib import Path

import pytest
from PIL import Image

from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from playwright.sync_api import sync_playwright

from atzoo.errors import AtzooError
from atzoo.app.app import LeaderboardApp, serve

pytestmark = [pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

SEEDED = Path(__file__).resolve().parents[1] / "leaderboard" / "entries"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"]
MODEL = "tiny test package"
SHIPPED = "baseline@synthetic-demo"
LEADERBOARD_ARGS = dict(metric="rank1", release="403k", verified_only=False, task_families=[], backbones=[],
                        show_flagged=False, include_tricks=False, search="", sort_by="Any-Time")
# Waits in the page only guard against a hang: a loaded CI machine can take far longer than an idle one.
BROWSER_WAIT_MS = 120_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from tests.packages import make_package

    root = tmp_path_factory.mktemp("app")
    registry = root / "registry"
    (registry / "entries").mkdir(parents=True)
    for path in SEEDED.glob("paper-*.json"):
        shutil.copy(path, registry / "entries" / path.name)
    images = root / "images"
    images.mkdir()
    for index, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        Image.new("RGB", (32, 64), colour).save(images / f"person{index}.png")
    fake = images / "not-an-image.png"
    fake.write_text("plain text pretending to be a PNG")
    return {"registry": registry, "package": make_package(root), "images": images, "fake": fake}


@pytest.fixture(scope="module")
def url(files):
    port = free_port()
    blocks = serve(files["registry"], port=port, prevent_thread_lock=True, quiet=True,
                   demo_models={MODEL: str(files["package"])})
    yield f"http://127.0.0.1:{port}/"
    blocks.close()


@pytest.fixture(scope="module")
def client(url) -> Client:
    return Client(url, verbose=False)


def table(client: Client, **changes) -> list[dict]:
    frame, summary = client.predict(*{**LEADERBOARD_ARGS, **changes}.values(), api_name="/leaderboard")
    return [dict(zip(frame["headers"], row)) for row in frame["data"]]


# ---------------------------------------------------------------------------------------------
# gradio_client


def test_api_names(client):
    names = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/leaderboard", "/csv", "/compare", "/demo", "/validate_entry", "/queue"} <= names


def test_leaderboard_endpoint_serves_the_seeded_rows(client):
    rows = table(client)
    assert len(rows) == 12
    assert rows[0]["Method"] == "Uni-AT" and rows[0]["Any-Time"] == pytest.approx(55.80, abs=0.01)
    assert all(row["Status"] == "reported by paper" for row in rows)
    _, summary = client.predict(*LEADERBOARD_ARGS.values(), api_name="/leaderboard")
    assert "12 entries" in summary and "403k" in summary


def test_filters_and_search_change_the_rows(client):
    assert {row["Method"] for row in table(client, task_families=["CC-ReID"])} == {"CAL", "AIM", "CCIL"}
    assert [row["ID"] for row in table(client, search="deen")] == ["paper-deen"]
    by_map = table(client, metric="mAP", sort_by="DT-ST")
    assert [row["DT-ST"] for row in by_map] == sorted((row["DT-ST"] for row in by_map), reverse=True)


def test_the_synthetic_release_shows_no_paper_rows(client):
    assert table(client, release="synthetic") == []
    _, summary = client.predict(*{**LEADERBOARD_ARGS, "release": "synthetic"}.values(), api_name="/leaderboard")
    assert "0 entries" in summary


def test_csv_endpoint(client):
    path = client.predict(*{**LEADERBOARD_ARGS, "task_families": ["Tr-ReID"]}.values(), api_name="/csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and rows[0]["Method"] == "CLIP-ReID (ViT-B)" and rows[0]["Rank"] == "1"


def test_compare_endpoint_returns_four_plots(client):
    plots = client.predict(["paper-uni-at", "paper-bot"], "mAP", api_name="/compare")
    assert len(plots) == 4
    assert all(plot["type"] == "matplotlib" and plot["plot"].startswith("data:image") for plot in plots)
    with pytest.raises(AppError, match="no entry 'nope'"):
        client.predict(["nope"], "rank1", api_name="/compare")


def test_validate_entry_lists_every_problem(client, tmp_path):
    bad = json.loads((SEEDED / "paper-bot.json").read_text())
    bad.update(id="Bad ID", date="yesterday", reported={"DT-ST": {"rank1": 120, "mAP": 50}})
    result = client.predict(json.dumps(bad), None, api_name="/validate_entry")
    assert "problems" in result
    for expected in ("id:", "date:", "DT-ST.rank1", "DT-LT"):
        assert expected in result
    duplicate = (SEEDED / "paper-bot.json").read_text()
    assert "already taken" in client.predict(duplicate, None, api_name="/validate_entry")
    fresh = dict(json.loads(duplicate), id="paper-bot-copy")
    upload = tmp_path / "paper-bot-copy.json"
    upload.write_text(json.dumps(fresh))
    assert "### Valid" in client.predict("", handle_file(str(upload)), api_name="/validate_entry")
    assert "### Valid" in client.predict(json.dumps(fresh), None, api_name="/validate_entry")


def test_messages_to_visitors_name_no_server_path(client, files):
    duplicate = (SEEDED / "paper-bot.json").read_text()
    result = client.predict(duplicate, None, api_name="/validate_entry")
    assert "'paper-bot' is already taken" in result and str(files["registry"]) not in result
    with pytest.raises(AppError) as error:
        client.predict(["nosuch"], "rank1", api_name="/compare")
    assert "no entry 'nosuch'" in str(error.value) and str(files["registry"]) not in str(error.value)


def test_validate_entry_explains_malformed_json(client):
    result = client.predict('{"schema_version": 1,', None, api_name="/validate_entry")
    assert "Not valid JSON" in result and "line 1" in result
    with pytest.raises(AppError, match="paste an entry"):
        client.predict("   ", None, api_name="/validate_entry")
    nested = '{"a":' * 5000 + "1" + "}" * 5000
    assert "nested too deeply" in client.predict(nested, None, api_name="/validate_entry")
    assert "got an array" in client.predict("[1, 2]", None, api_name="/validate_entry")


def test_rows_without_the_metric_are_unranked_and_the_summary_says_why(client):
    frame, summary = client.predict(*{**LEADERBOARD_ARGS, "metric": "mINP"}.values(), api_name="/leaderboard")
    assert len(frame["data"]) == 12 and "None of them reports mINP" in summary


def test_demo_ranks_uploaded_images(client, files):
    images = sorted(files["images"].glob("person*.png"))
    query, ranked, note = client.predict(MODEL, "", handle_file(str(images[1])),
                                         [handle_file(str(p)) for p in images], False, "DT-ST",
                                         api_name="/demo")
    assert len(ranked) == 3 and Path(query).is_file()
    scores = [float(item["caption"].removeprefix("score ")) for item in ranked]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0, abs=1e-3)
    assert "3 gallery images" in note and f"`{MODEL}`" in note and str(files["package"]) not in note


def test_demo_with_the_bundled_gallery(client):
    _, ranked, note = client.predict(MODEL, "", None, [], True, "AD-LT", api_name="/demo")
    assert len(ranked) == 32 and all(item["caption"].startswith("score ") for item in ranked)


def test_demo_refuses_a_non_image_and_a_bad_model(client, files):
    with pytest.raises(AppError, match="not-an-image.png is not an image"):
        client.predict(MODEL, "", handle_file(str(files["fake"])), [], True, "DT-ST", api_name="/demo")
    with pytest.raises(AppError, match="neither an existing folder nor a zoo model"):
        client.predict("local path (below)", "no-such-model", None, [], True, "DT-ST", api_name="/demo")


def test_demo_refuses_a_huge_image_in_the_page_api(client, tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (5000, 4)).save(wide)
    with pytest.raises(AppError, match="wide.png is 5000x4 pixels"):
        client.predict(MODEL, "", handle_file(str(wide)), [], True, "DT-ST", api_name="/demo")


def test_a_public_app_loads_only_the_models_it_lists(files, hf_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "local path (below)" not in LeaderboardApp(files["registry"]).model_choices()  # off unless asked for
    app = LeaderboardApp(files["registry"], demo_models={MODEL: str(files["package"])}, allow_local_paths=False)
    assert app.model_choices() == [SHIPPED, MODEL]
    assert app.model_reference(MODEL, "") == str(files["package"])
    with pytest.raises(AtzooError, match="does not load models from local paths"):
        app.model_reference("local path (below)", str(files["package"]))
    with pytest.raises(AtzooError, match="unknown model"):
        app.model_reference(str(files["package"]), "")


def test_the_demo_works_on_a_fresh_install_with_the_shipped_package(files, hf_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = LeaderboardApp(files["registry"])
    assert app.model_choices()[0] == SHIPPED
    query, ranked, note = app.demo(SHIPPED, None, None, None, True, "DT-ST")
    assert len(ranked) == 32 and "baseline@synthetic-demo" in note
    scores = [float(caption.split()[-1]) for _, caption in ranked]
    assert scores == sorted(scores, reverse=True) and scores[0] > scores[-1]
    assert not any(hf_cache.iterdir())


def test_the_demo_offers_pulled_packages_and_the_quickstart_run(files, hf_cache, tmp_path, monkeypatch):
    from tests.packages import make_run_dir, populate_hf_cache

    monkeypatch.chdir(tmp_path)
    commit = populate_hf_cache(hf_cache, "org/pulled", files["package"], revision="v1")
    make_run_dir(tmp_path / "runs" / "quickstart")
    app = LeaderboardApp(files["registry"], demo_models={MODEL: str(files["package"])})
    choices = app.model_choices()
    pulled = f"pulled org/pulled@{commit[:12]}"
    assert choices == [SHIPPED, MODEL, pulled, "quickstart run (quickstart)"]
    assert app.model_reference(pulled, None).endswith(commit)
    _, ranked, _ = app.demo(pulled, None, str(files["images"] / "person0.png"),
                            [str(files["images"] / f"person{i}.png") for i in range(3)], False, "DT-ST")
    assert len(ranked) == 3
    _, ranked, _ = app.demo("quickstart run (quickstart)", None, None, None, True, "AD-LT")
    assert len(ranked) == 32


def test_one_colour_per_method_and_status_in_the_table_and_the_plots(files):
    from matplotlib.colors import to_hex

    from atzoo.app.colours import METHOD_PALETTE, STATUS_COLOURS

    app = LeaderboardApp(files["registry"])
    styled, _ = app.leaderboard(*LEADERBOARD_ARGS.values())
    frame = styled.data
    html = styled.to_html()
    colours = app.method_colours()
    names = list(frame["Method"])
    assert len({colours(name) for name in names}) == len(names) and set(map(colours, names)) <= set(METHOD_PALETTE)
    for name in names:
        assert f"color: {colours(name)}" in html
    assert f"color: {STATUS_COLOURS['reported by paper']}" in html
    radar, gap, _, _ = app.compare(["paper-uni-at", "paper-bot"], "rank1")
    lines = {line.get_label(): to_hex(line.get_color()) for line in radar.axes[0].get_lines()}
    assert lines == {"Uni-AT": colours("Uni-AT"), "BoT": colours("BoT")}
    ticks = {label.get_text(): to_hex(label.get_color()) for label in gap.axes[0].get_yticklabels()}
    assert ticks == lines


def test_queue_without_a_runner_directory(client, files, tmp_path):
    frame = client.predict(api_name="/queue")
    assert frame["data"] == [["no runner directory configured"]]
    empty = LeaderboardApp(files["registry"], runner_dir=tmp_path / "no-runner-yet").queue()
    assert empty["message"].tolist() == ["the queue is empty"]


def test_a_runner_dir_that_is_not_one_is_refused_at_startup(files, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(AtzooError, match="is a file, not a runner directory"):
        LeaderboardApp(files["registry"], runner_dir=afile)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(AtzooError, match="is not an atzoo runner directory"):
        LeaderboardApp(files["registry"], runner_dir=tmp_path / "other")


# ---------------------------------------------------------------------------------------------
# headless Chromium


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; the browser tests need Chromium installed there")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(BROWSER_WAIT_MS)
    page.goto(url)
    page.wait_for_selector("#lb-table [data-testid=cell-0-1]", timeout=BROWSER_WAIT_MS)
    yield page
    page.close()


def method_cells(page) -> list[str]:
    return page.locator("#lb-table [data-testid$='-1'][data-testid^='cell-']").all_inner_texts()


def test_page_table_shows_the_seeded_rows(page):
    cells = [text.strip() for text in method_cells(page)]
    assert len(cells) == 12 and cells[0] == "Uni-AT"
    assert page.locator("#lb-table [role=row]").count() >= 13
    assert "12 entries" in page.locator("#lb-summary").inner_text()


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_page_table_scrolls_sideways_with_rank_and_method_pinned(browser, url, files, width, height):
    from matplotlib.colors import to_rgb

    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(BROWSER_WAIT_MS)
    try:
        page.goto(url)
        page.wait_for_selector("#lb-table [data-testid=cell-0-1]", timeout=BROWSER_WAIT_MS)
        page.locator("#lb-table [data-testid=cell-0-1]").scroll_into_view_if_needed()
        box = "s => { const r = document.querySelector(s).getBoundingClientRect(); return [r.left, r.right]; }"
        viewport = "#lb-table .virtual-table-viewport"
        sizes = page.evaluate(f"() => {{ const v = document.querySelector('{viewport}'); "
                              f"return [v.scrollWidth, v.clientWidth]; }}")
        assert sizes[0] > sizes[1], "the table should be wider than the page and scroll sideways"
        pinned = ("#lb-table [data-testid=cell-0-0]", "#lb-table [data-testid=cell-0-1]",
                  "#lb-table th[data-testid=header-1]")
        before = [page.evaluate(box, selector) for selector in pinned]
        scrolled = page.evaluate(box, "#lb-table [data-testid=cell-0-3]")
        page.evaluate(f"() => {{ const v = document.querySelector('{viewport}'); v.scrollLeft = v.scrollWidth; }}")
        page.wait_for_function(f"document.querySelector('{viewport}').scrollLeft > 0", timeout=BROWSER_WAIT_MS)
        page.wait_for_function("s => document.querySelector(s).getBoundingClientRect().left < "
                               f"{scrolled[0] - 100}", arg="#lb-table [data-testid=cell-0-3]",
                               timeout=BROWSER_WAIT_MS)
        assert [page.evaluate(box, selector) for selector in pinned] == before
        last = page.evaluate(box, "#lb-table [data-testid=cell-0-14]")
        assert before[1][1] < last[1] <= width + 1, "the last column comes into view beside Method"
        assert page.evaluate(f"document.elementFromPoint({(before[1][0] + before[1][1]) / 2}, "
                             f"document.querySelector('#lb-table [data-testid=cell-0-1]').getBoundingClientRect().top"
                             f" + 5).closest('[data-testid]').getAttribute('data-testid')") == "cell-0-1"
        colour = page.evaluate("getComputedStyle(document.querySelector('#lb-table [data-testid=cell-0-1] span'))"
                               ".color")
        expected = LeaderboardApp(files["registry"]).method_colours()("Uni-AT")
        assert colour == "rgb({}, {}, {})".format(*(round(255 * c) for c in to_rgb(expected)))
    finally:
        page.close()


def test_page_filter_changes_the_rows(page):
    page.locator("#lb-search textarea, #lb-search input").first.fill("CLIP")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll(\"#lb-table [data-testid^='cell-'][data-testid$='-1']\")"
                           ".length === 2", timeout=BROWSER_WAIT_MS)
    assert sorted(text.strip() for text in method_cells(page)) == ["CLIP-ReID (R50)", "CLIP-ReID (ViT-B)"]
    page.get_by_label("synthetic").check()
    page.wait_for_function("document.querySelector('#lb-summary').innerText.includes('0 entries')",
                           timeout=BROWSER_WAIT_MS)
    assert method_cells(page) == []


def test_page_compare_tab_renders_plots(page):
    page.get_by_role("tab", name="Compare").click()
    for plot in ("radar", "gap", "verified", "params"):
        page.wait_for_selector(f"#cmp-{plot} img", timeout=BROWSER_WAIT_MS)
    assert page.locator("#cmp-radar img").bounding_box()["width"] > 200


def test_page_demo_ranks_an_uploaded_query(page, files):
    page.get_by_role("tab", name="Demo").click()
    page.locator("#demo-query input[type=file]").set_input_files(str(files["images"] / "person0.png"))
    page.wait_for_selector("#demo-query :text('person0.png')", timeout=BROWSER_WAIT_MS)
    page.click("#demo-run")
    page.wait_for_selector("#demo-gallery img", timeout=BROWSER_WAIT_MS)
    assert page.locator("#demo-gallery img").count() >= 32
    assert "score " in page.locator("#demo-gallery").inner_text()
    assert "32 gallery images ranked" in page.locator("#demo-note").inner_text()


def test_page_demo_shows_an_error_for_a_non_image(page, files):
    page.get_by_role("tab", name="Demo").click()
    page.locator("#demo-query input[type=file]").set_input_files(str(files["fake"]))
    page.wait_for_selector("#demo-query :text('not-an-image.png')", timeout=BROWSER_WAIT_MS)
    page.click("#demo-run")
    toast = page.get_by_text("not-an-image.png is not an image")
    toast.first.wait_for(timeout=BROWSER_WAIT_MS)
    assert "Traceback" not in page.content()


def test_page_submit_shows_malformed_json(page):
    page.get_by_role("tab", name="Submit").click()
    page.locator("#submit-text textarea").fill('{"schema_version": 1, oops}')
    page.click("#submit-run")
    page.wait_for_selector("#submit-result :text('Not valid JSON')", timeout=BROWSER_WAIT_MS)
    assert "line 1" in page.locator("#submit-result").inner_text()


def test_serve_refuses_a_malformed_model_option(files):
    from click.testing import CliRunner

    from atzoo.cli.main import cli

    result = CliRunner().invoke(cli, ["leaderboard", "serve", "--dir", str(files["registry"]), "--model", "no-label"])
    assert result.exit_code == 2 and "expected LABEL=PATH" in result.output
    result = CliRunner().invoke(cli, ["leaderboard", "serve", "--dir", str(files["registry"]),
                                      "--model", "tiny=/no/such/package"])
    assert result.exit_code == 2 and "/no/such/package does not exist" in result.output
