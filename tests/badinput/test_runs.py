"""Damaged run folders and duplicate JSON keys: `evaluate` and `export` read a run's files through the
checked readers; each problem is exit 2 naming the file and the key, and nothing is written."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.badinput.harness import assert_user_error, run_cli, unchanged


def edit_config(change):
    def apply(run):
        config = json.loads((run / "config.json").read_text())
        change(config)
        (run / "config.json").write_text(json.dumps(config))
    return apply


def text(name, content):
    def apply(run):
        (run / name).write_text(content)
    return apply


def duplicate(name, key):
    """Write `key` twice at the top of the JSON file `name`."""
    def apply(run):
        raw = (run / name).read_text()
        data = json.loads(raw)
        (run / name).write_text("{" + json.dumps(key) + ": " + json.dumps(data[key]) + ", " + raw.lstrip()[1:])
    return apply


DAMAGED = [
    ("config-not-json", text("config.json", "{not json"), "config.json"),
    ("config-empty", text("config.json", ""), "config.json"),
    ("config-a-list", text("config.json", "[1, 2]"), "config.json"),
    ("config-without-recipe", edit_config(lambda c: c.pop("recipe")), "recipe"),
    ("persons-as-text", edit_config(lambda c: c.update(num_persons="five")), "num_persons"),
    ("persons-1e30", edit_config(lambda c: c.update(num_persons=1e30)), "num_persons"),
    ("persons-negative", edit_config(lambda c: c.update(num_persons=-4)), "num_persons"),
    ("input-size-huge", edit_config(lambda c: c["recipe"].update(input_size=[100000, 100000])), "input_size"),
    ("input-size-zero", edit_config(lambda c: c["recipe"].update(input_size=[0, 0])), "input_size"),
    ("config-duplicate-key", duplicate("config.json", "num_persons"), "num_persons"),
    ("config-not-utf8", lambda run: (run / "config.json").write_bytes(b"\xff\xfe{}"), "config.json"),
    ("config-nested-deep", text("config.json", "[" * 5000 + "]" * 5000), "config.json"),
    ("metrics-not-json", text("metrics.json", "{"), "metrics.json"),
    ("metrics-duplicate-key", duplicate("metrics.json", "DT-ST"), "DT-ST"),
    ("metrics-a-number", text("metrics.json", "42"), "metrics.json"),
    ("weights-truncated", lambda run: (run / "model.safetensors").write_bytes(b"\x10\x00"), "model.safetensors"),
    ("weights-missing", lambda run: (run / "model.safetensors").unlink(), "model.safetensors"),
    ("config-missing", lambda run: (run / "config.json").unlink(), "config.json"),
]


METRICS_ONLY = ("metrics-not-json", "metrics-duplicate-key", "metrics-a-number")  # evaluate writes it, never reads it


@pytest.mark.parametrize("damage, field, command", [
    pytest.param(d, f, command, id=f"{command}-{i}") for i, d, f in DAMAGED for command in ("export", "evaluate")
    if command == "export" or i not in METRICS_ONLY])
def test_a_damaged_run_folder_is_a_clear_error(world, tmp_path, capsys, damage, field, command):
    run = shutil.copytree(world.run, tmp_path / "run")
    damage(run)
    argv = ["export", run, tmp_path / "pkg"] if command == "export" else ["evaluate", run, "--data", world.data]
    with unchanged(run):
        result = run_cli(capsys, *argv)
    assert_user_error(result, field)
    assert not (tmp_path / "pkg").exists()


def test_a_duplicate_key_in_a_package_config_is_refused(world, tmp_path, capsys):
    package = shutil.copytree(world.package, tmp_path / "package")
    duplicate("config.json", "input_size")(package)
    result = run_cli(capsys, "embed", package, world.images, "--out", tmp_path / "f.npz", "--no-progress")
    assert_user_error(result, "config.json", "input_size")
