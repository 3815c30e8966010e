"""Damaged run folders and packages are read through the checked readers: `evaluate`, `export` and
`embed` exit 2 naming the file, the key and what was expected, before any model or tensor is built."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from atzoo.cli.main import main
from tests.packages import make_package, make_run_dir


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def forbid_model_building(monkeypatch) -> None:
    """From now on, building a model (the first tensor a command makes) fails the test."""
    import atzoo.package
    import atzoo.runner.evaluation
    import atzoo.runner.recipe

    def forbidden(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("a model was built from a damaged file")

    monkeypatch.setattr(atzoo.runner.recipe, "build_model", forbidden)
    monkeypatch.setattr(atzoo.runner.evaluation, "build_model", forbidden)
    monkeypatch.setattr(atzoo.package, "build_package_model", forbidden)


def image_folder(tmp_path: Path) -> Path:
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (16, 32)).save(images / "a.jpg")
    return images


def run_cli(capsys, *args: str) -> str:
    """`atzoo ARGS` through its entry point (the CLI's error boundary); the exit status must be 2."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert exited.value.code == 2, output
    assert "Traceback" not in output
    return output


DAMAGED_CONFIGS = [
    ("not JSON", lambda path: path.write_text("{\"format\": \"atzoo-run-2\", "), "is not valid JSON"),
    ("no recipe", lambda path: edit_json(path, lambda d: d.pop("recipe")), "recipe is missing; expected an object"),
    ("num_persons five", lambda path: edit_json(path, lambda d: d.update(num_persons="five")),
     'num_persons = "five" (a string); expected an integer from 1 to 100000'),
    ("num_persons 1e30", lambda path: path.write_text(path.read_text().replace('"num_persons": 4', '"num_persons": 1e30')),
     "num_persons = 1e+30 (a number); expected an integer from 1 to 100000"),
    ("duplicate key", lambda path: path.write_text(path.read_text().replace('"num_persons": 4',
                                                                            '"num_persons": 4, "num_persons": 5')),
     "'num_persons' appears twice"),
    ("absurd image size", lambda path: edit_json(path, lambda d: d["recipe"]["train"].update(image_size=[100000, 100000])),
     "recipe.train.image_size.0 = 100000 (a number); expected an integer from 16 to 1024"),
    ("a second input size", lambda path: edit_json(path, lambda d: d["recipe"].update(input_size=[32, 16])),
     "recipe.input_size is not a field of this format"),
    ("NaN", lambda path: path.write_text(path.read_text().replace('"num_clothes": 6', '"num_clothes": NaN')),
     "NaN is not a JSON number"),
]


@pytest.mark.parametrize("damage, words", [case[1:] for case in DAMAGED_CONFIGS], ids=[c[0] for c in DAMAGED_CONFIGS])
def test_evaluate_and_export_refuse_a_damaged_run_config(tmp_path, capsys, monkeypatch, damage, words):
    run = make_run_dir(tmp_path / "run", synthetic=True)
    damage(run / "config.json")
    forbid_model_building(monkeypatch)
    for args in (["evaluate", str(run)], ["export", str(run), str(tmp_path / "pkg")]):
        output = run_cli(capsys, *args)
        assert str(run / "config.json") in output and words in output
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize("text, words", [
    ("{not json", "is not valid JSON"),
    ('{"DT-ST": {"rank1": 0.5}, "DT-ST": {"rank1": 0.9}}', "'DT-ST' appears twice"),
    ("[1, 2, 3]", "expected a JSON object {...} (a results file), got an array"),
    ('{"DT-ST": {"rank1": 0.5}}', "format_version is missing; expected 1"),
    ('{"format_version": 1, "DT-ST": 0.5}', "DT-ST = 0.5 (a number); expected an object with rank1"),
    ('{"DT-ST": {"rank1": Infinity}}', "Infinity is not a JSON number"),
])
def test_export_refuses_a_damaged_metrics_file(tmp_path, capsys, text, words):
    run = make_run_dir(tmp_path / "run", synthetic=True)
    (run / "metrics.json").write_text(text)
    output = run_cli(capsys, "export", str(run), str(tmp_path / "pkg"))
    assert str(run / "metrics.json") in output and words in output
    assert not (tmp_path / "pkg").exists()


def test_embed_refuses_an_absurd_input_size_before_building_anything(tmp_path, capsys, monkeypatch):
    package = make_package(tmp_path)
    forbid_model_building(monkeypatch)
    edit_json(package / "config.json", lambda d: (d.update(input_size=[100000, 100000]),
                                                   d["recipe"].update(input_size=[100000, 100000])))
    output = run_cli(capsys, "embed", str(package), str(image_folder(tmp_path)), "--out", str(tmp_path / "feats.npz"))
    assert str(package / "config.json") in output
    assert "input_size.0 = 100000 (a number); expected an integer from 16 to 1024" in output
    assert not (tmp_path / "feats.npz").exists()


def test_embed_names_a_forged_package_field_that_disagrees_with_its_recipe(tmp_path, capsys, monkeypatch):
    package = make_package(tmp_path)
    forbid_model_building(monkeypatch)
    edit_json(package / "config.json", lambda d: d.update(input_size=[1024, 1024]))
    output = run_cli(capsys, "embed", str(package), str(image_folder(tmp_path)), "--out", str(tmp_path / "f.npz"))
    assert "input_size is [1024, 1024] but the recipe says [32, 16]" in output


def test_the_apps_demo_refuses_an_absurd_input_size_before_building_anything(tmp_path, monkeypatch):
    from atzoo.app.demo import load_local_model
    from atzoo.errors import FormatError

    package = make_package(tmp_path)
    run = make_run_dir(tmp_path / "run")
    edit_json(package / "config.json", lambda d: (d.update(input_size=[100000, 100000]),
                                                   d["recipe"]["train"].update(image_size=[100000, 100000])))
    edit_json(run / "config.json", lambda d: d["recipe"]["train"].update(image_size=[100000, 100000]))
    forbid_model_building(monkeypatch)
    for folder, field in ((package, "input_size"), (run, "recipe.train.image_size")):
        with pytest.raises(FormatError) as caught:
            load_local_model(folder)
        assert str(folder / "config.json") in str(caught.value)
        assert f"{field}.0 = 100000 (a number); expected an integer from 16 to 1024" in str(caught.value)
