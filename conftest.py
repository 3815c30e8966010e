"""Shared test setup. Tests run offline: the hub, datasets and Gradio are told so before import."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ATZOO_CACHE_DIR", tempfile.mkdtemp(prefix="atzoo-test-cache-"))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_synth_root(tmp_path_factory):
    from atzoo.data.synthetic import TINY, generate
    return generate(tmp_path_factory.mktemp("synth") / "at-ustc", TINY, progress=False)
