"""Fixtures shared by the core's tests (the root conftest.py holds the offline setup)."""

import pytest


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face Hub cache that this process and its subprocesses read and write."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture()
def registry(tmp_path):
    """An empty leaderboard registry."""
    root = tmp_path / "leaderboard"
    (root / "entries").mkdir(parents=True)
    return root


COMMIT = "c0ffee" * 6 + "c0ff"


class RecordingApi:
    """Stands in for HfApi: records every call, sends nothing."""

    def __init__(self, *args, **kwargs):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def create_branch(self, repo_id, **kwargs):
        self.calls.append(("create_branch", repo_id, kwargs))

    def create_commit(self, repo_id, operations, **kwargs):
        from huggingface_hub import CommitInfo

        self.calls.append(("create_commit", repo_id, list(operations), kwargs))
        return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}", commit_message="",
                          commit_description="", oid=COMMIT)

    def upload_folder(self, **kwargs):
        raise AssertionError("push must upload an explicit file list, not a folder")


@pytest.fixture()
def recording_api(monkeypatch):
    import huggingface_hub

    api = RecordingApi()
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda *a, **k: api)
    return api


@pytest.fixture()
def signer(registry, tmp_path, monkeypatch):
    """A verifier listed in the `registry` fixture's verifiers.json, its private key under tmp_path."""
    from atzoo.leaderboard.signing import keygen, load_signer

    monkeypatch.setenv("ATZOO_KEY_DIR", str(tmp_path / "keys"))
    path, _ = keygen(registry, "test-runner")
    return load_signer("test-runner", path)
