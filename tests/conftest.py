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
