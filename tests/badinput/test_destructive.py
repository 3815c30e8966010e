"""Destructive commands: an output that is, contains or lies inside what the user owns is refused
before anything is written, naming the folder; `--overwrite` replaces only what the command makes."""

from __future__ import annotations

import pytest

from tests.badinput.harness import assert_user_error, run_cli, unchanged

# (case id, argv built from the world, text the message must contain)
CASES = [
    ("export-run-onto-itself", lambda w: ["export", w.run, w.run, "--overwrite"], "run"),
    ("export-into-the-run", lambda w: ["export", w.run, w.run / "pkg"], "lies inside"),
    ("export-onto-dataset-root", lambda w: ["export", w.run, w.data, "--overwrite"], "dataset root"),
    ("export-into-dataset-root", lambda w: ["export", w.run, w.data / "pkg"], "dataset root"),
    ("export-onto-repository", lambda w: ["export", w.run, w.repo, "--overwrite"], "repository"),
    ("export-onto-runner-dir", lambda w: ["export", w.run, w.runner, "--overwrite"], "runner directory"),
    ("export-onto-parent-of-run", lambda w: ["export", w.run, w.root, "--overwrite"], "contains the input"),
    ("export-onto-image-folder", lambda w: ["export", w.run, w.images, "--overwrite"], "img0.png"),
    ("export-onto-a-file", lambda w: ["export", w.run, w.images / "img0.png"], "not a folder"),
    ("export-without-overwrite", lambda w: ["export", w.run, w.package], "--overwrite"),
    ("synth-onto-dataset-root", lambda w: ["synth", w.data, "--preset", "tiny", "--overwrite"], "dataset root"),
    ("synth-onto-run", lambda w: ["synth", w.run, "--preset", "tiny", "--overwrite"], "run folder"),
    ("synth-into-dataset-root", lambda w: ["synth", w.data / "more", "--preset", "tiny"], "lies inside"),
    ("synth-into-run", lambda w: ["synth", w.run / "data", "--preset", "tiny"], "lies inside"),
    ("synth-onto-repository", lambda w: ["synth", w.repo, "--preset", "tiny", "--overwrite"], "repository"),
    ("synth-onto-package", lambda w: ["synth", w.package, "--preset", "tiny", "--overwrite"], "synthetic dataset"),
    ("embed-into-image-folder", lambda w: ["embed", w.package, w.images, "--out", w.images / "f.npz"], "lies inside"),
    ("embed-into-run", lambda w: ["embed", w.package, w.images, "--out", w.run / "f.npz"], "run folder"),
    ("embed-into-package", lambda w: ["embed", w.package, w.images, "--out", w.package / "f.npz"], "lies inside"),
    ("embed-onto-a-folder", lambda w: ["embed", w.package, w.images, "--out", w.runner / "jobs"], ".npz"),
    ("embed-onto-non-features-file", lambda w: ["embed", w.package, w.images, "--out", w.repo / "x.npz",
                                                "--overwrite"], "not a features file"),
    ("embed-onto-existing-file", lambda w: ["embed", w.package, w.images, "--out", w.repo / "x.npz"],
     "--overwrite"),
    ("embed-under-a-file", lambda w: ["embed", w.package, w.images, "--out", w.repo / "pyproject.toml" / "f.npz"],
     "is a file"),
    ("train-onto-dataset-root", lambda w: ["train", "baseline", "--data", w.data, "--out", w.data], "input"),
    ("train-into-dataset-root", lambda w: ["train", "baseline", "--data", w.data, "--out", w.data / "run"],
     "lies inside"),
    ("train-into-a-run", lambda w: ["train", "baseline", "--data", w.data, "--out", w.run / "again"], "run folder"),
    ("train-onto-a-run", lambda w: ["train", "baseline", "--data", w.data, "--out", w.run], "not empty"),
    ("runner-dir-inside-a-run", lambda w: ["runner", "--runner-dir", w.run / "queue", "work", "--until-empty"],
     "run folder"),
    ("runner-dir-inside-dataset", lambda w: ["runner", "--runner-dir", w.data / "queue", "work", "--until-empty"],
     "dataset root"),
    ("runner-dir-onto-dataset", lambda w: ["runner", "--runner-dir", w.data, "work", "--until-empty"],
     "not an atzoo runner directory"),
]


@pytest.mark.parametrize("build, expected", [pytest.param(b, e, id=i) for i, b, e in CASES])
def test_destructive_command_is_refused_and_nothing_changes(world, capsys, build, expected):
    (world.repo / "x.npz").write_bytes(b"my own notes, not features")
    with unchanged(world.root):
        result = run_cli(capsys, *build(world))
    assert_user_error(result, expected)


def test_overwrite_replaces_an_old_package_and_keeps_the_run(world, capsys, tmp_path):
    out = tmp_path / "pkg"
    assert run_cli(capsys, "export", world.run, out).code == 0
    with unchanged(world.run):
        assert run_cli(capsys, "export", world.run, out, "--overwrite").code == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors", "results.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]
