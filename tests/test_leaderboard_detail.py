"""One entry whole: `atzoo leaderboard show ENTRY_ID [--json]` (the app's detail view renders the same)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from atzoo.cli.main import cli
from atzoo.leaderboard.detail import detail_markdown, entry_detail
from atzoo.leaderboard.store import load_snapshot
from tests.test_leaderboard_table import SEEDED, submission
from tests.test_leaderboard_trust import verified_block, write
from tests.trust import signed


def show(registry, *args):
    return CliRunner().invoke(cli, ["leaderboard", "show", *args, "--dir", str(registry)])


def test_a_verified_entry_shows_who_when_versions_signature_and_differences(registry, signer):
    data = {**submission("sub-a", base=70.0), "verified": verified_block(70.0, shift=0.2)}
    data["verified"]["environment"] = {"atzoo": "0.9.0", "torch": "2.5.0", "device": "cuda", "gpu": "H200"}
    data["disclosures"] = {**data["disclosures"], "notes": "trained twice, best kept"}
    write(registry, signed(data, signer))
    result = show(registry, "sub-a", "--json")
    assert result.exit_code == 0, result.output
    detail = json.loads(result.output)
    assert detail["status"] == "verified" and detail["tier"] == "verified" and detail["rank"] == 1
    verification = detail["verification"]
    assert verification["verifier"] == "test-runner" and verification["signature"] == "valid"
    assert verification["environment"]["torch"] == "2.5.0" and verification["environment"]["device"] == "cuda"
    assert verification["date"].startswith("2026-01-02") and verification["verifier_added"]
    assert detail["weights"]["link"] == f"https://huggingface.co/org/model/blob/{'a' * 40}/model.safetensors"
    row = next(r for r in detail["scenarios"] if r["scenario"] == "NT-ST" and r["metric"] == "rank1")
    assert row == {"scenario": "NT-ST", "metric": "rank1", "reported": 72.0, "verified": 72.2, "difference": 0.2}
    assert detail["disclosures"]["notes"] == "trained twice, best kept" and detail["url_query"] == "?entry=sub-a"
    table = show(registry, "sub-a")
    assert table.exit_code == 0 and "test-runner" in table.output and "+0.20" in table.output
    assert "signature valid" in table.output and "trained twice, best kept" in table.output


def test_the_deen_rows_note_is_visible():
    detail = entry_detail(load_snapshot(SEEDED.parent), "paper-deen")
    assert detail["verification"] is None and detail["status"] == "reported by paper"
    text = detail_markdown(detail)
    assert "The paper prints Any-Time 53.52/33.48" in text and "Not verified by the shared runner." in text
    assert "| DT-ST | rank1 | 91.86 | - | - |" in text


def test_an_unknown_id_suggests_the_closest_ones():
    result = show(SEEDED.parent, "paper-den")
    assert result.exit_code == 2 and "no entry 'paper-den'" in result.output
    assert "did you mean paper-deen" in result.output and "Traceback" not in result.output


def test_a_refused_entry_says_why(registry):
    write(registry, {**submission("sub-a", base=70.0), "verified": verified_block(70.0)})
    result = show(registry, "sub-a")
    assert result.exit_code == 2 and "its file was refused" in result.output and "not signed" in result.output
