"""Each file format: files of the first release still read, bad input refused by name, schemas current."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from atzoo.errors import FormatError
from atzoo.formats import model_data, read_model
from atzoo.formats.card import parse_card_metadata, read_card_metadata
from atzoo.formats.checkpoint import CheckpointMeta, OptimizerState, checkpoint_metadata, parse_checkpoint_metadata
from atzoo.formats.jobspec import job_spec_text, parse_job_spec
from atzoo.formats.packageconfig import PackageConfig, read_package_config, write_package_config
from atzoo.formats.runconfig import RunConfig, read_run_config, write_run_config
from atzoo.formats.schemas import SCHEMA_DIR, schema_texts

RELEASE_0_1 = Path(__file__).parent / "formats_release_0_1"


def load(name: str) -> dict[str, Any]:
    return json.loads((RELEASE_0_1 / name).read_text())


def write(tmp_path: Path, data: Any, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def refused(read, path: Path) -> str:
    with pytest.raises(FormatError) as caught:
        read(path)
    message = str(caught.value)
    assert str(path) in message
    return message


# ---------------------------------------------------------------------------------------------
# files written by the first release


def _settings_added_since(written: dict, original: dict) -> dict:
    """Remove (and return) the training settings the file did not have: settings added to the runner
    later, which an older file gets at their default values."""
    train, before = written["recipe"]["train"], original["recipe"]["train"]
    return {key: train.pop(key) for key in sorted(set(train) - set(before))}


def _defaults(keys) -> dict:
    from atzoo.config import TrainConfig

    return {key: value for key, value in TrainConfig().model_dump(mode="json").items() if key in keys}


def _as_version_2(original: dict, tag: str) -> dict:
    """What version 2 of a run or package config holds for a version 1 file: the same, with the
    recipe's copy of `train.image_size` (`input_size`) dropped."""
    upgraded = copy.deepcopy(original)
    upgraded["format"] = tag
    assert upgraded["recipe"].pop("input_size") == upgraded["recipe"]["train"]["image_size"]
    return upgraded


def test_release_run_config_is_read_and_written_back_as_version_2(tmp_path):
    config = read_run_config(RELEASE_0_1 / "run-config.json")
    assert config.recipe.input_size == (64, 32) and config.num_persons == 20
    write_run_config(tmp_path / "config.json", config)
    written = json.loads((tmp_path / "config.json").read_text())
    added = _settings_added_since(written, load("run-config.json"))
    assert added == _defaults(added)
    assert written == _as_version_2(load("run-config.json"), "atzoo-run-2")
    assert read_run_config(tmp_path / "config.json") == config


def test_release_package_config_is_read_and_written_back_as_version_2(tmp_path):
    config = read_package_config(RELEASE_0_1 / "package-config.json")
    assert config.method == "builtins:baseline" and config.dataset_release == "synthetic"
    write_package_config(tmp_path / "config.json", config)
    written = json.loads((tmp_path / "config.json").read_text())
    added = _settings_added_since(written, load("package-config.json"))
    assert added == _defaults(added)
    assert written == _as_version_2(load("package-config.json"), "atzoo-model-2")
    assert written["input_size"] == written["recipe"]["train"]["image_size"]
    assert read_package_config(tmp_path / "config.json") == config


@pytest.mark.parametrize("name, read", [("run-config.json", read_run_config),
                                        ("package-config.json", read_package_config)])
def test_a_version_1_file_whose_recorded_input_size_disagrees_is_refused(tmp_path, name, read):
    data = load(name)
    data["recipe"]["input_size"] = [256, 128]
    message = refused(read, write(tmp_path, data))
    assert "recipe.input_size = [256, 128] differs from recipe.train.image_size = [64, 32]" in message


def test_a_version_1_file_without_a_recorded_image_size_keeps_its_input_size(tmp_path):
    data = load("run-config.json")
    del data["recipe"]["train"]["image_size"]
    assert read_run_config(write(tmp_path, data)).recipe.train.image_size == (64, 32)


def test_a_version_2_recipe_records_the_image_size_once(tmp_path):
    data = _as_version_2(load("run-config.json"), "atzoo-run-2")
    config = read_run_config(write(tmp_path, data))
    assert config.recipe.input_size == (64, 32)
    data["recipe"]["input_size"] = [64, 32]
    assert "recipe.input_size" in refused(read_run_config, write(tmp_path, data, "again.json"))


# ---------------------------------------------------------------------------------------------
# bad input, per format: each case names the field and what was expected


def mutate(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    *parents, last = dotted.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


DELETE = object()

RUN_CONFIG_CASES = [
    ("num_persons", "five", 'num_persons = "five" (a string); expected an integer from 1 to 100000'),
    ("num_persons", 1e30, "num_persons = 1e+30 (a number); expected an integer from 1 to 100000"),
    ("num_persons", -3, "expected an integer from 1 to 100000"),
    ("num_persons", True, "num_persons = true (a boolean)"),
    ("num_clothes", 2, "num_clothes (2) is below num_persons (20)"),
    ("recipe", DELETE, "recipe is missing; expected an object"),
    ("recipe.train.image_size", [100000, 100000],
     "recipe.train.image_size.0 = 100000 (a number); expected an integer from 16 to 1024"),
    ("recipe.train.image_size", [-64, 32], "recipe.train.image_size.0 = -64"),
    ("recipe.train.image_size", [64, 32, 3],
     "recipe.train.image_size = [64, 32, 3] (an array); expected an array of 2 items"),
    ("recipe.embed_dim", 0, "recipe.embed_dim = 0 (a number); expected an integer from 1 to 65536"),
    ("recipe.num_outputs", 3, "recipe.num_outputs = 3 (a number); expected one of 1, 6"),
    ("recipe.neck", "mlp", 'expected one of "bnneck", "linear"'),
    ("recipe.heads.0", "age", 'recipe.heads.0 = "age" (a string); expected one of "person", "clothes"'),
    ("recipe.normalization.1.0", 0.0, "recipe.normalization.1.0 = 0.0 (a number); expected a number from 0.001 to 10.0"),
    ("recipe.losses.0.weight", "1", 'recipe.losses.0.weight = "1" (a string); expected a number from 0.0 to 1000.0'),
    ("recipe.train.epochs", 0, "recipe.train.epochs = 0"),
    ("recipe.method.qualified_name", "no colon", "recipe.method.qualified_name"),
    ("dataset_fingerprint", "abc", "dataset_fingerprint"),
    ("data_root", "", "data_root"),
    ("surprise", 1, "surprise is not a field of this format"),
    ("format", "atzoo-run-9", 'format = "atzoo-run-9" was written by a newer atzoo'),
    ("format", "atzoo-run-0", 'format = "atzoo-run-0" is no longer read; expected version "atzoo-run-2"'),
    ("format", "something", 'format = "something" is not a run config format version; expected "atzoo-run-2"'),
    ("format", DELETE, 'format is missing; expected "atzoo-run-2"'),
]


@pytest.mark.parametrize("field, value, words", RUN_CONFIG_CASES, ids=[f"{c[0]}={c[1]!r}" for c in RUN_CONFIG_CASES])
def test_run_config_bad_values_are_refused_by_name(tmp_path, field, value, words):
    path = write(tmp_path, mutate(_as_version_2(load("run-config.json"), "atzoo-run-2"), field, value))
    assert words in refused(read_run_config, path)


PACKAGE_CASES = [
    ("input_size", [100000, 100000], "input_size.0 = 100000 (a number); expected an integer from 16 to 1024"),
    ("input_size", [0, 0], "input_size.0 = 0 (a number); expected an integer from 16 to 1024"),
    ("recipe.train.image_size", [100000, 100000], "recipe.train.image_size.0 = 100000"),
    ("input_size", [128, 64], "input_size is [128, 64] but the recipe says [64, 32]"),
    ("method", "builtins:bot", "method is 'builtins:bot' but the recipe says 'builtins:baseline'"),
    ("num_heads", 6, "num_heads is 6 but the recipe says 1"),
    ("dataset_release", "2024", 'dataset_release = "2024" (a string); expected one of "403k", "135k", "synthetic"'),
    ("normalization", [[0.5, 0.5], [0.2, 0.2]], "normalization.0"),
    ("num_clothes", "many", 'num_clothes = "many"'),
    ("plugin.requires", 5, "plugin.requires = 5 (a number); expected a string"),
]


@pytest.mark.parametrize("field, value, words", PACKAGE_CASES, ids=[f"{c[0]}={c[1]!r}" for c in PACKAGE_CASES])
def test_package_config_bad_values_are_refused_by_name(tmp_path, field, value, words):
    path = write(tmp_path, mutate(_as_version_2(load("package-config.json"), "atzoo-model-2"), field, value))
    assert words in refused(read_package_config, path)


@pytest.mark.parametrize("text, words", [
    ('{"format": "atzoo-model-1", "input_size": [64, 32], "input_size": [100000, 100000]}', "'input_size' appears twice"),
    ('{"format": "atzoo-model-1", "num_persons": NaN}', "NaN"),
    ('{"format": "atzoo-model-1", "embed_dim": 1e400}', "too large"),
    ("[" * 100 + "]" * 100, "nested too deeply"),
])
def test_package_config_strict_json(tmp_path, text, words):
    path = tmp_path / "config.json"
    path.write_text(text)
    assert words in refused(read_package_config, path)


def test_package_config_refuses_non_utf8(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(json.dumps(load("package-config.json")).replace("baseline", "b\u00e4seline").encode("latin-1"))
    assert "not UTF-8" in refused(read_package_config, path)


# ---------------------------------------------------------------------------------------------
# checkpoint metadata


def checkpoint_meta() -> CheckpointMeta:
    return CheckpointMeta(epoch=3, step=120, optimizer=OptimizerState(
        param_groups=[{"lr": 0.01, "params": [0, 1], "betas": [0.9, 0.999]}], scalars={"0": {"step": 4}}))


def test_checkpoint_metadata_round_trips_through_a_safetensors_header(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    save_file({"x": torch.zeros(2)}, str(path), metadata=checkpoint_metadata(checkpoint_meta()))
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        assert parse_checkpoint_metadata(handle.metadata(), str(path)) == checkpoint_meta()


@pytest.mark.parametrize("key, value, words", [
    ("epoch", "three", 'epoch = "three" (a string); expected an integer from 0 to 100000'),
    ("epoch", "99999999999999999999", "epoch"),
    ("step", "-1", 'step = "-1"'),
    ("format", "atzoo-checkpoint-7", "written by a newer atzoo"),
    ("optimizer", '{"param_groups": [], "param_groups": []}', "'param_groups' appears twice"),
    ("optimizer", '{"param_groups": [], "scalars": {}, "x": NaN}', "NaN"),
    ("optimizer", "[]", "optimizer = [] (an array); expected an object"),
])
def test_checkpoint_metadata_bad_values(key, value, words):
    metadata = {**checkpoint_metadata(checkpoint_meta()), key: value}
    with pytest.raises(FormatError) as caught:
        parse_checkpoint_metadata(metadata, "run/checkpoint.safetensors")
    assert words in str(caught.value) and "run/checkpoint.safetensors" in str(caught.value)


def test_a_checkpoint_without_atzoo_metadata_is_refused():
    with pytest.raises(FormatError, match="no atzoo metadata"):
        parse_checkpoint_metadata(None, "x.safetensors")


# ---------------------------------------------------------------------------------------------
# model card metadata


CARD = """---
license: apache-2.0
library_name: atzoo
tags: [person-reid, atzoo]
model-index:
- name: atzoo builtins:baseline
  results:
  - task: {type: image-feature-extraction, name: "Anytime person re-identification, DT-ST"}
    dataset: {type: at-ustc, name: synthetic AT-USTC layout, split: DT-ST, revision: synthetic}
    metrics:
    - {type: rank1, name: DT-ST rank1, value: 93.7}
---

# card
"""


def test_card_metadata_is_read_from_the_front_matter(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(CARD)
    meta = read_card_metadata(path)
    assert meta.license == "apache-2.0" and meta.model_index[0].results[0].metrics[0].value == 93.7


@pytest.mark.parametrize("old, new, words", [
    ("value: 93.7", "value: .nan", "value"),
    ("value: 93.7", "value: 937", "expected a number from 0.0 to 100.0"),
    ("license: apache-2.0\n", "license: apache-2.0\nlicense: mit\n", "'license' appears twice"),
    ("tags: [person-reid, atzoo]", "tags: &t [a]\nextra: *t", "aliases"),
    ("split: DT-ST", "split: XX-YY", "split"),
    ("library_name: atzoo", "library_name: timm", 'library_name = "timm"'),
])
def test_card_metadata_bad_values(old, new, words):
    with pytest.raises(FormatError) as caught:
        parse_card_metadata(CARD.replace(old, new), "pkg/README.md")
    assert words in str(caught.value) and "pkg/README.md" in str(caught.value)


def test_a_card_without_front_matter_is_refused():
    with pytest.raises(FormatError, match="no metadata block"):
        parse_card_metadata("# just a title\n", "README.md")


# ---------------------------------------------------------------------------------------------
# runner job specs


def test_job_specs_round_trip_and_old_rows_without_a_version_are_read():
    spec = {"method": "builtins:baseline", "data_root": "/data", "settings": ["epochs=2"], "entry": False,
            "entry_args": []}
    text = job_spec_text("train", spec)
    assert parse_job_spec("train", text, "job 1's spec") == {**spec, "format_version": 1}
    assert parse_job_spec("train", json.dumps(spec), "job 1's spec")["method"] == "builtins:baseline"
    assert parse_job_spec("verify", '{"entry": "e.json", "data_root": "/d"}', "job 2's spec")["entry"] == "e.json"


@pytest.mark.parametrize("kind, text, words", [
    ("train", '{"method": "x", "data_root": "/d", "entry": "yes"}', 'entry = "yes" (a string); expected true or false'),
    ("train", '{"method": "x", "data_root": "/d", "settings": "epochs=2"}', "settings"),
    ("train", '{"method": "x"}', "data_root is missing"),
    ("train", "{not json", "not valid JSON"),
    ("verify", '{"entry": "e", "data_root": "/d", "format_version": 2}', "written by a newer atzoo"),
    ("evaluate", "{}", "job kind 'evaluate' is unknown"),
])
def test_job_spec_bad_rows_name_the_job(kind, text, words):
    with pytest.raises(FormatError) as caught:
        parse_job_spec(kind, text, "job 7's spec")
    assert words in str(caught.value) and "job 7's spec" in str(caught.value)


# ---------------------------------------------------------------------------------------------
# published schemas


def test_committed_json_schemas_are_generated_from_the_models():
    """The current version of each format is generated; an older version's schema stays published
    as it was, for the files still written in it."""
    from atzoo.formats.schemas import PUBLISHED

    expected = schema_texts()
    committed = {path.name: path.read_text() for path in SCHEMA_DIR.glob("*.schema.json")}
    assert {name: committed.get(name) for name in expected} == expected, \
        "regenerate with: python -m atzoo.formats.schemas --write"
    older = {f"{name}-v{version}.schema.json" for name, model in PUBLISHED.items()
             for version in range(1, model.FORMAT_VERSION)}
    assert set(committed) - set(expected) <= older


def test_a_schema_describes_the_ranges_the_reader_enforces():
    schema = json.loads((SCHEMA_DIR / "package-config-v2.schema.json").read_text())
    side = schema["properties"]["input_size"]["prefixItems"][0]
    assert (side["minimum"], side["maximum"]) == (16, 1024)


def test_models_accept_what_they_write(tmp_path):
    for model, name in ((RunConfig, "run-config.json"), (PackageConfig, "package-config.json")):
        parsed = read_model(RELEASE_0_1 / name, model)
        assert model.model_validate(model_data(parsed)) == parsed
