"""The hub: upload guard, push (HfApi monkeypatched, never called for real), pull from the cache.

Pulls run offline (conftest sets HF_HUB_OFFLINE=1) against a fake Hugging Face cache built in a
temporary folder with the real cache layout (``models--ORG--NAME/refs`` and ``snapshots``), so
the real ``hf_hub_download`` code path is exercised, not a stand-in.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from atzoo.errors import HubError, UploadBlockedError
from atzoo.hub import guard, parse_repo_ref, pull, push, scan_folder, sha256_file
from atzoo.package import CONFIG, WEIGHTS
from tests.conftest import COMMIT
from tests.packages import make_package, populate_hf_cache


@pytest.fixture()
def package(tmp_path):
    return make_package(tmp_path)


OFFENDERS = {
    "photo.jpg": "an image", "scan.PNG": "an image", "data.zip": "an archive", "data.tar.gz": "an archive",
    "feats.npy": "an array", "feats.npz": "an array", "dump.pkl": "an array", "weights.pt": "an array",
    "table.parquet": "an array", "table.arrow": "an array", "store.h5": "an array",
    "p001-d01-c01": "AT-USTC", "cam03-f2-0001.txt": "AT-USTC", "notes.txt": "allow-list",
    ".hidden": "allow-list",
}


@pytest.mark.parametrize("name", sorted(OFFENDERS))
def test_the_guard_blocks_every_kind_of_offender(package, name, recording_api):
    target = package / name
    if name.startswith("p001"):
        target.mkdir()
    else:
        target.write_bytes(b"x")
    offenders = scan_folder(package)
    assert [o.path for o in offenders] == [name]
    assert OFFENDERS[name] in offenders[0].reason
    with pytest.raises(UploadBlockedError, match=name.replace(".", r"\.")):
        push(package, "org/model")
    assert recording_api.calls == []


def test_the_guard_lists_every_offender_and_checks_subfolders_and_links(package):
    (package / "extra").mkdir()
    (package / "extra" / "cam01-f3-0002.jpg").write_bytes(b"x")
    (package / "link.json").symlink_to(package / CONFIG)
    paths = {o.path for o in scan_folder(package)}
    assert paths == {"extra", "extra/cam01-f3-0002.jpg", "link.json"}
    with pytest.raises(UploadBlockedError) as error:
        guard(package)
    assert "3 problem(s)" in str(error.value) and "licence" in str(error.value)


def test_the_guard_reads_the_text_files_for_dataset_names(package):
    results = json.loads((package / "results.json").read_text())
    results["worst"] = "p012-d03-c02/cam11-f5-0042.jpg"
    (package / "results.json").write_text(json.dumps(results))
    assert [o.path for o in scan_folder(package)] == ["results.json"]


def test_a_clean_package_passes(package):
    assert scan_folder(package) == []
    guard(package)


def test_dry_run_lists_names_sizes_and_sha256_and_sends_nothing(package, recording_api):
    plan = push(package, "org/model", revision="v1", dry_run=True)
    assert [name for name, _ in plan.files] == ["model.safetensors", "config.json", "results.json", "README.md"]
    assert dict(plan.files)[WEIGHTS] == (package / WEIGHTS).stat().st_size
    assert plan.weights_sha256 == hashlib.sha256((package / WEIGHTS).read_bytes()).hexdigest()
    assert plan.revision == "v1" and recording_api.calls == []
    assert plan.weights_sha256 in plan.describe()


def test_push_commits_exactly_the_allow_list(package, recording_api):
    plan = push(package, "org/model", revision="v1")
    assert plan.commit == COMMIT and f"pin it as org/model@{COMMIT}" in plan.describe()
    kinds = [call[0] for call in recording_api.calls]
    assert kinds == ["create_repo", "create_branch", "create_commit"]
    _, repo_id, operations, options = recording_api.calls[-1]
    assert repo_id == "org/model" and options["revision"] == "v1"
    assert sorted(op.path_in_repo for op in operations) == sorted(["model.safetensors", "config.json",
                                                                  "results.json", "README.md"])
    assert {op.path_in_repo: Path(op.path_or_fileobj) for op in operations}[WEIGHTS] == package / WEIGHTS


def test_push_to_main_creates_no_branch(package, recording_api):
    push(package, "org/model")
    assert [call[0] for call in recording_api.calls] == ["create_repo", "create_commit"]
    assert recording_api.calls[-1][3]["revision"] is None


@pytest.mark.parametrize("repo", ["model", "org/", "/model", "org/mo del", "org/a/b", "org--x/y", "org/x..y",
                                  "org/model@", "-org/model"])
def test_malformed_repo_ids_are_refused(package, repo, recording_api):
    with pytest.raises(HubError, match="repo"):
        push(package, repo)
    assert recording_api.calls == []


def test_repo_reference_parsing():
    assert parse_repo_ref("org/model") == ("org/model", None)
    assert parse_repo_ref("org/model@v2") == ("org/model", "v2")
    assert parse_repo_ref("org/model", "abc") == ("org/model", "abc")
    with pytest.raises(HubError, match="pins revision"):
        parse_repo_ref("org/model@v2", "v3")


def test_push_of_a_damaged_package_sends_nothing(package, recording_api):
    (package / WEIGHTS).write_bytes(b"broken")
    with pytest.raises(Exception, match="damaged or truncated"):
        push(package, "org/model")
    assert recording_api.calls == []


def test_pull_reads_the_offline_cache_and_verifies_sha256(package, hf_cache):
    commit = populate_hf_cache(hf_cache, "org/model", package, revision="v1")
    expected = sha256_file(package / WEIGHTS)
    result = pull("org/model@v1", sha256=expected)
    assert result.path.name == commit and result.sha256 == expected and result.verified_against == "--sha256"
    assert set(result.files) == {"model.safetensors", "config.json", "results.json", "README.md"}
    assert (result.path / CONFIG).read_text() == (package / CONFIG).read_text()
    by_commit = pull(f"org/model@{commit}")
    assert by_commit.path == result.path and by_commit.verified_against == ""


def test_pull_refuses_a_sha256_mismatch(package, hf_cache):
    populate_hf_cache(hf_cache, "org/model", package)
    with pytest.raises(HubError, match="sha256 mismatch"):
        pull("org/model", sha256="0" * 64)
    with pytest.raises(HubError, match="not a sha256"):
        pull("org/model", sha256="abc")


def test_pull_of_what_is_not_cached_offline_says_so(hf_cache):
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        pull("org/absent@v1")


def test_load_from_a_hub_id_through_the_cache(package, hf_cache):
    import torch

    import atzoo

    populate_hf_cache(hf_cache, "org/model", package, revision="v1")
    from_hub = atzoo.load("org/model@v1", sha256=sha256_file(package / WEIGHTS))
    images = torch.randn(2, 3, 32, 16)
    with torch.no_grad():
        assert torch.equal(from_hub(images), atzoo.load(package)(images))


def test_cli_push_dry_run_pull_and_errors(package, hf_cache, recording_api):
    from atzoo.cli.main import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["push", str(package), "--repo", "org/model", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "Would upload" in result.output and sha256_file(package / WEIGHTS) in result.output
    assert recording_api.calls == []
    (package / "cam01-f2-0001.jpg").write_bytes(b"x")
    result = runner.invoke(cli, ["push", str(package), "--repo", "org/model"])
    assert result.exit_code == 2 and "upload blocked" in result.output and "cam01-f2-0001.jpg" in result.output
    assert recording_api.calls == []
    (package / "cam01-f2-0001.jpg").unlink()
    result = runner.invoke(cli, ["push", str(package), "--repo", "org/model"])
    assert result.exit_code == 0 and f"pin it as org/model@{COMMIT}" in result.output
    populate_hf_cache(hf_cache, "org/model", package)
    result = runner.invoke(cli, ["pull", "org/model", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sha256"] == sha256_file(package / WEIGHTS)
    result = runner.invoke(cli, ["pull", "org/model", "--sha256", "1" * 64])
    assert result.exit_code == 2 and "sha256 mismatch" in result.output
