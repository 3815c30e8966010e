"""The shared runner end to end on the tiny synthetic AT-USTC: train, evaluate, resume, failures."""

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from atzoo.cli.main import cli
from atzoo.plugin import Loss, LossTerm, Method, hookimpl
from atzoo.protocol import SCENARIO_NAMES
from atzoo.runner.checkpoint import read_checkpoint_epoch

TINY = ["--set", "image_size=[32,16]", "--set", "num_workers=0", "--set", "num_persons=4",
        "--set", "num_instances=4", "--set", "eval_batch_size=64", "--set", "cache=false"]


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def atzoo_process(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "atzoo", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.fixture(scope="module")
def trained_run(tiny_synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "baseline"
    result = run_cli("train", "baseline", "--data", str(tiny_synth_root), "--out", str(out),
                     "--set", "epochs=2", *TINY, "--json")
    assert result.exit_code == 0, result.output
    return out, result


def test_training_writes_a_complete_run_directory(trained_run):
    out, _ = trained_run
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "checkpoint.safetensors", "train_log.jsonl", "metrics.json",
            "environment.json", "dataset.json"} <= names
    assert not any(name.endswith((".pt", ".pth", ".bin", ".pkl", ".tmp")) for name in names)
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["method"]["qualified_name"] == "builtins:baseline"
    assert config["recipe"]["train"]["epochs"] == 2 and config["recipe"]["train"]["image_size"] == [32, 16]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in log] == [1, 2]
    assert all(entry["loss"] > 0 and entry["images_per_s"] > 0 for entry in log)
    dataset = json.loads((out / "dataset.json").read_text())
    assert len(dataset["fingerprint"]) == 64 and dataset["train_persons"] > 0
    assert read_checkpoint_epoch(out / "checkpoint.safetensors") == 2
    assert load_file(str(out / "model.safetensors"))


def test_training_prints_and_stores_the_six_scenarios(trained_run):
    out, result = trained_run
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    stored = json.loads((out / "metrics.json").read_text())
    assert printed == stored
    for name in SCENARIO_NAMES:
        assert 0.0 <= stored[name]["mAP"] <= 1.0 and stored[name]["queries"] > 0
    assert "Any-Time" in stored and "mixed" in stored


def test_evaluate_reproduces_the_metrics_of_the_run(trained_run):
    out, _ = trained_run
    stored = json.loads((out / "metrics.json").read_text())
    result = run_cli("evaluate", str(out), "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout[result.stdout.index("{"):])
    assert printed["provenance"].pop("date") >= stored["provenance"].pop("date")
    assert printed == stored


def test_evaluate_prints_a_table(trained_run):
    out, _ = trained_run
    result = run_cli("evaluate", str(out))
    assert result.exit_code == 0
    for name in (*SCENARIO_NAMES, "Any-Time"):
        assert name in result.output


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_a_killed_run_resumes_to_the_same_weights(tiny_synth_root, tmp_path):
    args = ["--data", str(tiny_synth_root), "--set", "epochs=4", *TINY]
    reference = atzoo_process("train", "baseline", "--out", str(tmp_path / "reference"), *args)
    assert reference.wait(timeout=600) == 0, reference.stdout.read()

    interrupted = tmp_path / "interrupted"
    process = atzoo_process("train", "baseline", "--out", str(interrupted), *args)
    checkpoint = interrupted / "checkpoint.safetensors"
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be interrupted"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "model.safetensors").exists()
    assert 1 <= read_checkpoint_epoch(checkpoint) < 4

    resumed = atzoo_process("train", "baseline", "--out", str(interrupted), *args, "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    expected, actual = _weights(tmp_path / "reference"), _weights(interrupted)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    epochs = [json.loads(line)["epoch"] for line in (interrupted / "train_log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]


def test_resume_refuses_changed_settings(trained_run, tiny_synth_root):
    out, _ = trained_run
    result = CliRunner().invoke(cli, ["train", "baseline", "--data", str(tiny_synth_root), "--out", str(out),
                                      "--resume", "--set", "epochs=3", *TINY])
    assert result.exit_code != 0
    assert "epochs=3" in str(result.exception) or "epochs=3" in result.output


class _NaNAfter(torch.nn.Module):
    def __init__(self, context, steps: int):
        super().__init__()
        self.steps, self.calls = steps, 0

    def forward(self, logits, target):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(logits, target)
        return loss * float("nan") if self.calls > self.steps else loss


def _nan_plugin(steps: int) -> types.ModuleType:
    module = types.ModuleType("nan_plugin")

    @hookimpl
    def atzoo_register_losses(register):
        register(Loss(name="nan_after", factory=_NaNAfter, consumes=("logits", "target"), defaults={"steps": steps}))

    @hookimpl
    def atzoo_register_methods(register):
        register(Method(name="diverges", backbone="tiny_cnn", losses=(LossTerm("nan_after"),),
                        train={"epochs": 3, "optimizer": "adam", "lr": 1e-3}))

    module.atzoo_register_losses = atzoo_register_losses
    module.atzoo_register_methods = atzoo_register_methods
    return module


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_synth_root, tmp_path):
    from atzoo.config import parse_overrides
    from atzoo.registry import load_registry
    from atzoo.runner import TrainingError, train

    registry = load_registry(extra_plugins={"nan": _nan_plugin(steps=1_000_000)}, refresh=True)
    overrides = parse_overrides([value for value in TINY if value != "--set"])
    probe = train("diverges", tiny_synth_root, tmp_path / "probe", {**overrides, "epochs": 1}, registry=registry,
                  progress=False)
    steps_per_epoch = json.loads(probe.file("train_log.jsonl").read_text().splitlines()[0])["step"]

    registry = load_registry(extra_plugins={"nan": _nan_plugin(steps=steps_per_epoch + 1)}, refresh=True)
    out = tmp_path / "diverges"
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2.*last good checkpoint \(epoch 1\)"):
        train("diverges", tiny_synth_root, out, overrides, registry=registry, progress=False)
    assert read_checkpoint_epoch(out / "checkpoint.safetensors") == 1
    assert not (out / "model.safetensors").exists()


class _RefusesItsInput(torch.nn.Module):
    """A backbone that builds, but whose first forward raises (as a ViT does at a size its patch
    embedding does not take)."""

    embed_dim = 8

    def __init__(self, **_: object) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        raise RuntimeError(f"input size {tuple(images.shape[-2:])} doesn't match model (224, 224)")


def _refusing_plugin() -> types.ModuleType:
    from atzoo.plugin import Backbone

    module = types.ModuleType("refusing_plugin")

    @hookimpl
    def atzoo_register_backbones(register):
        register(Backbone(name="refuses", factory=_RefusesItsInput, embed_dim=8))

    @hookimpl
    def atzoo_register_methods(register):
        register(Method(name="refused_at_first_step", backbone="refuses", losses=(LossTerm("cross_entropy"),),
                        train={"epochs": 1}))

    module.atzoo_register_backbones = atzoo_register_backbones
    module.atzoo_register_methods = atzoo_register_methods
    return module


def test_a_run_whose_first_step_fails_leaves_nothing_behind_and_can_be_retried(tiny_synth_root, tmp_path):
    from atzoo.config import parse_overrides
    from atzoo.registry import load_registry
    from atzoo.runner import train

    registry = load_registry(extra_plugins={"refusing": _refusing_plugin()}, refresh=True)
    overrides = parse_overrides([value for value in TINY if value != "--set"])
    out = tmp_path / "run"
    for _ in range(2):
        with pytest.raises(RuntimeError, match="doesn't match model"):
            train("refused_at_first_step", tiny_synth_root, out, overrides, registry=registry, progress=False)
        assert not out.exists()


def test_a_run_stopped_in_its_first_epoch_leaves_nothing_behind(tiny_synth_root, tmp_path):
    """(A run stopped after an epoch was logged keeps its folder and checkpoint: see the NaN test above.)"""
    from atzoo.config import parse_overrides
    from atzoo.registry import load_registry
    from atzoo.runner import TrainingError, train

    registry = load_registry(extra_plugins={"nan": _nan_plugin(steps=1)}, refresh=True)
    overrides = parse_overrides([value for value in TINY if value != "--set"])
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match="loss became nan at epoch 1"):
        train("diverges", tiny_synth_root, out, overrides, registry=registry, progress=False)
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["train", "basline", "--out", "{out}"], "basline.*baseline"),
    (["train", "baseline", "--out", "{out}", "--set", "learning_rate=1"], "unknown training setting.*learning_rate"),
    (["train", "baseline", "--out", "{out}", "--set", "epochs=zero"], "epochs"),
    (["train", "baseline", "--out", "{out}", "--set", "epochs"], "key=value"),
])
def test_bad_training_input_is_refused_before_anything_is_written(tiny_synth_root, tmp_path, args, message):
    out = tmp_path / "run"
    args = [a.replace("{out}", str(out)) for a in args] + ["--data", str(tiny_synth_root)]
    process = atzoo_process(*args)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 2, output
    assert output.count("Error") == 1 and "Traceback" not in output
    import re
    assert re.search(message, output), output
    assert not out.exists()


def test_a_root_without_training_images_is_refused(tmp_path):
    root = tmp_path / "root"
    (root / "p001-d01-c01").mkdir(parents=True)
    (root / "p001-d01-c01" / "cam01-f2-0001.jpg").write_bytes(b"")
    process = atzoo_process("train", "baseline", "--data", str(root), "--out", str(tmp_path / "run"))
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 2 and "no training images" in output
    assert not (tmp_path / "run").exists()


def test_an_existing_run_directory_is_not_overwritten(trained_run, tiny_synth_root):
    out, _ = trained_run
    before = (out / "model.safetensors").read_bytes()
    process = atzoo_process("train", "baseline", "--data", str(tiny_synth_root), "--out", str(out), *TINY)
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 2 and "--resume" in output
    assert (out / "model.safetensors").read_bytes() == before


def test_evaluating_a_folder_that_is_not_a_run_is_refused(tmp_path):
    process = atzoo_process("evaluate", str(tmp_path))
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 2 and "not a run directory" in output


def test_quickstart_trains_evaluates_and_compares_with_the_random_initialisation(tiny_synth_root, tmp_path):
    out = tmp_path / "quickstart"
    result = run_cli("quickstart", "--data", str(tiny_synth_root), "--out", str(out), "--set", "epochs=1", *TINY)
    assert result.exit_code == 0, result.output
    assert "trained vs random init" in result.output
    for name in (*SCENARIO_NAMES, "Any-Time"):
        assert name in result.output
    assert (out / "metrics.json").exists() and f"Run directory: {out}" in result.output


@pytest.mark.slow
def test_quickstart_generates_the_default_dataset_when_missing(tmp_path):
    data, out = tmp_path / "synthetic", tmp_path / "run"
    result = run_cli("quickstart", "--data", str(data), "--out", str(out), "--set", "epochs=1",
                     "--set", "iters_per_epoch=2", *TINY)
    assert result.exit_code == 0, result.output
    assert f"Generating the synthetic AT-USTC dataset in {data}" in result.output
    assert json.loads((data / "synthetic.json").read_text())["images"] > 10_000
    assert (out / "model.safetensors").exists()
