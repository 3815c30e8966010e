"""The shared runner: one training loop and one evaluation for every method.

`train` and `evaluate_run` are imported on first use, so the runner's light parts (settings,
schedule, checkpoints) load without the data pipeline.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "evaluate_run", "TrainingError"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainingError"):
        from atzoo.runner import trainer

        return getattr(trainer, name)
    if name == "evaluate_run":
        from atzoo.runner.evaluation import evaluate_run

        return evaluate_run
    raise AttributeError(name)
