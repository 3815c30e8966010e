"""Trust at the seams: verified blocks count only when signed by a listed verifier (every forgery is
refused by `check`, the registry loader and the Submit check), keys and the verifiers file, and trust
tiers deciding rank (mismatch and failed never ranked above a verified entry)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from atzoo.cli.main import cli
from atzoo.errors import AtzooError, LeaderboardError
from atzoo.formats.verifiers import VERIFIERS, read_verifiers_file
from atzoo.leaderboard.signing import keygen, load_signer, private_key_warning, signature_problem
from atzoo.leaderboard.store import check_entry_data, load_snapshot
from atzoo.leaderboard.table import Filters, build_table, leaderboard_rows, rows_to_csv
from tests.test_leaderboard_table import SEEDED, full_metrics, submission
from tests.trust import signed


def verified_block(base: float, status: str = "verified", shift: float = 0.0, message: str = "") -> dict:
    block = {"status": status, "date": "2026-01-02T00:00:00Z", "tolerance": 0.5, "message": message}
    if status != "failed":
        block.update(metrics=full_metrics(base + shift), max_difference=abs(shift))
    return block


def write(root: Path, data: dict) -> Path:
    path = root / "entries" / f"{data['id']}.json"
    path.write_text(json.dumps(data))
    return path


def check(root: Path, *paths: Path):
    return CliRunner().invoke(cli, ["leaderboard", "check", *map(str, paths), "--dir", str(root)])


@pytest.fixture()
def signed_entry(registry, signer) -> dict:
    return signed({**submission("sub-a", base=70.0), "verified": verified_block(70.0)}, signer)


# ---------------------------------------------------------------------------------------------
# signatures


def test_a_signed_block_is_accepted_everywhere(registry, signed_entry):
    path = write(registry, signed_entry)
    assert check(registry, path).exit_code == 0
    snapshot = load_snapshot(registry)
    assert snapshot.ids == ["sub-a"] and not snapshot.problems


def test_a_hand_written_verified_block_is_refused_by_check_and_the_loader(registry, signer):
    data = {**submission("sub-a", base=70.0), "verified": verified_block(70.0)}
    path = write(registry, data)
    result = check(registry, path)
    assert result.exit_code == 2
    assert "entry sub-a: verified.signature: the verified block is not signed" in result.output
    snapshot = load_snapshot(registry)
    assert snapshot.ids == [] and "not signed" in snapshot.problems["sub-a.json"][0]
    data["verified"]["verifier"] = "test-runner"
    write(registry, data)
    assert "not signed" in check(registry, path).output


def test_a_submission_never_carries_a_verified_block(signed_entry, registry):
    problems = check_entry_data(signed_entry, load_snapshot(registry), submission=True)
    assert problems[0].startswith("verified: a submission may not carry a verified block")


def _tamper(data: dict, where: str) -> dict:
    data = json.loads(json.dumps(data))
    if where == "reported":
        data["reported"]["NT-LT"]["mAP"] += 1.0
    elif where == "reported metric removed":
        data["reported"]["NT-LT"]["mINP"] = None
    elif where == "verified metrics":
        data["verified"]["metrics"]["DT-ST"]["rank1"] -= 1.0
    elif where == "status":
        data["verified"]["status"] = "verified" if data["verified"]["status"] != "verified" else "mismatch"
    elif where == "weights sha256":
        data["weights"]["sha256"] = "d" * 64
    elif where == "weights revision":
        data["weights"]["revision"] = "e" * 40
    elif where == "release":
        data["dataset"]["release"] = "135k"
    elif where == "environment":
        data["verified"]["environment"] = {"device": "cuda"}
    return data


@pytest.mark.parametrize("where", ["reported", "reported metric removed", "verified metrics", "status",
                                   "weights sha256", "weights revision", "release", "environment"])
def test_editing_any_signed_field_breaks_the_signature(registry, signed_entry, where):
    path = write(registry, _tamper(signed_entry, where))
    result = check(registry, path)
    assert result.exit_code == 2 and "does not verify against 'test-runner'" in result.output
    assert load_snapshot(registry).problems["sub-a.json"][0].startswith("entry sub-a: verified.signature")


def test_forged_truncated_and_foreign_signatures(registry, signed_entry, tmp_path):
    listing = read_verifiers_file(registry / VERIFIERS)
    raw = base64.b64decode(signed_entry["verified"]["signature"])
    forged = dict(signed_entry, verified={**signed_entry["verified"],
                                          "signature": base64.b64encode(bytes(64)).decode()})
    truncated = dict(signed_entry, verified={**signed_entry["verified"],
                                             "signature": base64.b64encode(raw[:40]).decode()})
    garbage = dict(signed_entry, verified={**signed_entry["verified"], "signature": "not base64!"})
    from atzoo.formats.entry import Entry

    assert "does not verify" in signature_problem(Entry.model_validate(forged), listing)
    assert "64 bytes, this one 40" in signature_problem(Entry.model_validate(truncated), listing)
    assert "not base64" in signature_problem(Entry.model_validate(garbage), listing)

    # Signed by a key that is not listed at all, under a name that is not listed.
    stranger = load_signer("stranger", keygen(tmp_path / "elsewhere", "stranger", tmp_path / "s.pem")[0])
    foreign = signed(dict(signed_entry, verified={k: v for k, v in signed_entry["verified"].items()
                                                  if k != "signature"}), stranger)
    assert "verifier 'stranger' is not listed" in signature_problem(Entry.model_validate(foreign), listing)
    # Re-signed by an unlisted key under the listed verifier's name.
    impostor = foreign | {"verified": {**foreign["verified"], "verifier": "test-runner"}}
    assert "does not verify against 'test-runner'" in signature_problem(Entry.model_validate(impostor), listing)


def test_a_block_copied_from_another_entry_is_refused(registry, signed_entry):
    other = {**submission("sub-b", base=70.0), "verified": signed_entry["verified"]}
    other["reported"] = signed_entry["reported"]
    path = write(registry, other)
    result = check(registry, path)
    assert result.exit_code == 2 and "signed for another entry" in result.output


# ---------------------------------------------------------------------------------------------
# keys and the verifiers file


def test_keygen_writes_a_private_key_0600_and_lists_the_public_key(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("ATZOO_KEY_DIR", str(tmp_path / "keys"))
    result = CliRunner().invoke(cli, ["leaderboard", "keygen", "--name", "ustc-runner", "--dir", str(registry)])
    assert result.exit_code == 0, result.output
    key = tmp_path / "keys" / "ustc-runner.pem"
    assert f"Private key written to {key} (mode 0600)" in result.output
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and private_key_warning(key) is None
    listing = json.loads((registry / VERIFIERS).read_text())
    (item,) = listing["verifiers"]
    assert item["name"] == "ustc-runner" and len(base64.b64decode(item["public_key"])) == 32 and item["added"]
    assert load_signer("ustc-runner", key).public_key == item["public_key"]

    again = CliRunner().invoke(cli, ["leaderboard", "keygen", "--name", "ustc-runner", "--dir", str(registry)])
    assert again.exit_code == 2 and "already listed" in again.output
    inside = CliRunner().invoke(cli, ["leaderboard", "keygen", "--name", "other", "--dir", str(registry),
                                      "--key", str(registry / "other.pem")])
    assert inside.exit_code == 2 and "must never be committed" in inside.output
    assert not (registry / "other.pem").exists()
    assert [v["name"] for v in json.loads((registry / VERIFIERS).read_text())["verifiers"]] == ["ustc-runner"]


def test_a_private_key_readable_by_others_warns_and_a_missing_one_is_an_error(signer, tmp_path):
    key = tmp_path / "keys" / "test-runner.pem"
    os.chmod(key, 0o644)
    assert "can be read by other users (mode 0644)" in private_key_warning(key)
    with pytest.raises(LeaderboardError, match="no such private key file.*keygen --name x"):
        load_signer("x", tmp_path / "missing.pem")
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(LeaderboardError, match="not an unencrypted PEM private key"):
        load_signer("x", tmp_path / "bad.pem")


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON|JSON"),
    ('{"format_version": 1, "format_version": 1, "verifiers": []}', "the key .format_version. appears twice"),
    ('{"format_version": 1, "verifiers": [{"name": "a", "public_key": "abc", "added": "2026-01-01"}]}',
     r"verifiers.0.public_key = \"abc\" \(a string\): not base64"),
])
def test_a_malformed_verifiers_file_is_an_error_naming_it(registry, content, message):
    (registry / VERIFIERS).write_text(content)
    with pytest.raises(AtzooError, match=message):
        load_snapshot(registry)
    result = CliRunner().invoke(cli, ["leaderboard", "list", "--dir", str(registry)])
    assert result.exit_code == 2 and str(registry / VERIFIERS) in result.output and "Traceback" not in result.output


def test_a_key_or_a_name_listed_twice_is_refused(registry, signer):
    listing = json.loads((registry / VERIFIERS).read_text())
    twice = dict(listing, verifiers=listing["verifiers"] + [dict(listing["verifiers"][0], name="copy")])
    (registry / VERIFIERS).write_text(json.dumps(twice))
    with pytest.raises(AtzooError, match="public_key .* is listed twice"):
        load_snapshot(registry)
    result = check(registry, SEEDED / "paper-bot.json")
    assert result.exit_code == 2 and "is listed twice" in result.output


# ---------------------------------------------------------------------------------------------
# tiers


@pytest.fixture()
def tiered(registry, signer) -> Path:
    """Best scores on the mismatch and failed entries, then unverified, then the verified one."""
    for path in SEEDED.glob("paper-*.json"):
        (registry / "entries" / path.name).write_text(path.read_text())
    entries = [
        {**submission("sub-mismatch", base=88.0), "verified": verified_block(82.0, "mismatch", 0.0,
                                                                              "3 metric(s) beyond 0.5 points")},
        {**submission("sub-failed", base=86.0), "verified": verified_block(0, "failed", message="shape mismatch")},
        submission("sub-unverified", base=80.0),
        {**submission("sub-verified", base=20.0), "verified": verified_block(20.0)},
    ]
    for data in entries:
        write(registry, signed(data, signer) if data.get("verified") else data)
    return registry


def test_trust_tiers_order_the_board_and_unranked_rows_come_last(tiered):
    rows = leaderboard_rows(load_snapshot(tiered), "rank1", Filters())
    ids = [row["ID"] for row in rows]
    assert ids[0] == "sub-verified" and rows[0]["Rank"] == 1
    assert ids[1] == "paper-uni-at" and rows[1]["Rank"] == 2
    assert ids[13] == "sub-unverified" and rows[13]["Rank"] == 14
    assert ids[14:] == ["sub-mismatch", "sub-failed"]
    assert [row["Rank"] for row in rows[14:]] == [None, None]
    assert rows[14]["Flags"].startswith("unranked, verification mismatch: 3 metric(s) beyond 0.5 points")
    assert rows[15]["Flags"] == "unranked, verification failed: shape mismatch"


def test_sorting_by_a_column_reorders_inside_the_tiers(tiered):
    rows = leaderboard_rows(load_snapshot(tiered), "rank1", Filters(), sort_by="Method")
    assert [row["ID"] for row in rows][0] == "sub-verified"
    assert [row["ID"] for row in rows][-2:] == ["sub-failed", "sub-mismatch"]
    assert all(row["Rank"] is None for row in rows[-2:])


def test_csv_and_cli_list_follow_the_tiers(tiered):
    table = build_table(load_snapshot(tiered), "rank1", Filters())
    lines = rows_to_csv(table.rows).splitlines()
    assert lines[1].startswith("1,Sub-Verified,sub-verified,") and lines[-1].startswith(",Sub-Failed,sub-failed,")
    result = CliRunner().invoke(cli, ["leaderboard", "list", "--json", "--dir", str(tiered)])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [row["ID"] for row in listed][:2] == ["sub-verified", "paper-uni-at"]
    assert [row["ID"] for row in listed][-2:] == ["sub-mismatch", "sub-failed"]
