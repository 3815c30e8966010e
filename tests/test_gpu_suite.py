"""The one-call GPU suite, run here in its CPU smoke mode (tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"


def _run(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / "suite.json"
    done = subprocess.run([sys.executable, str(SUITE), "--smoke", "--device", "cpu", "--out", str(out), *options],
                          capture_output=True, text=True, timeout=1800)
    return done, json.loads(out.read_text())


def test_smoke_suite_measures_every_item_into_one_json(tmp_path):
    done, report = _run(tmp_path, "--budget", "100000", "--workdir", str(tmp_path / "work"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    items = report["items"]
    training = [name for name in items if name.startswith("train ")]
    assert len(training) == 6 and sum("compile(eager)" in name for name in training) == 3
    assert {name.split()[1] for name in training} == {"bot", "uniat", "uniat-no-moae"}
    for name in training:
        assert items[name]["images_per_s"] > 0 and items[name]["peak_memory_mb"] >= 0, name
    loader = next(item for name, item in items.items() if name.startswith("loader"))
    assert loader["cached_images_per_s"] > 0 and loader["decoding_images_per_s"] > 0 and loader["workers"] >= 1
    evaluation = items["evaluation AT-USTC test size"]
    assert evaluation["six_scenarios_s"] > 0 and evaluation["six_scenarios_and_mixed_s"] > 0
    assert 0 <= evaluation["any_time_rank1"] <= 1 and items["evaluation 10k x 10k"]["six_scenarios_s"] > 0
    assert report["smoke"] is True and report["device"] == "cpu"


def test_items_past_the_budget_are_recorded_as_skipped(tmp_path):
    done, report = _run(tmp_path, "--budget", "0")
    assert done.returncode == 0
    assert report["items"] and all("skipped" in item for item in report["items"].values())
