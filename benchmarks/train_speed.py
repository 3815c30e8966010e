"""Training-step throughput of registered methods: images/s of forward + losses + backward + step.

Batches are random tensors with valid labels, so the figure is the model's and the runner's step,
without the data pipeline (see benchmarks/data_pipeline.py for that). On CUDA, `--bf16` and
`--channels-last` are compared against float32 side by side.

    python benchmarks/train_speed.py --method baseline --size 128x64 --batch 32
    python benchmarks/train_speed.py --method bot --size 256x128 --batch 64 --device cuda --bf16 --channels-last
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch

from atzoo.config import build_train_config
from atzoo.registry import load_registry
from atzoo.runner.objective import Objective
from atzoo.runner.optim import build_optimizer
from atzoo.runner.recipe import build_model, loss_context, resolve_recipe


def measure(method: str, size: tuple[int, int], batch: int, steps: int, device: torch.device, *,
            bf16: bool, channels_last: bool, overrides: dict, compile_backend: str | None = None,
            warmup: int = 3) -> float:
    """Images/s of `steps` training steps after `warmup` ones (which include any compilation).
    `compile_backend`: run the model through `torch.compile` with that backend (e.g. "inductor")."""
    registry = load_registry()
    recipe = resolve_recipe(method, {**overrides, "image_size": list(size)}, registry)
    persons, instances = max(2, batch // 4), 4
    num_persons, num_clothes = 100, 200
    torch.manual_seed(0)
    model = build_model(recipe, num_persons, num_clothes, registry).to(device)
    objective = Objective(list(recipe.losses), registry, loss_context(recipe, model, num_persons, num_clothes),
                          recipe.heads).to(device)
    optimizer = build_optimizer(itertools.chain(model.named_parameters(), objective.named_parameters()), recipe.train)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    images = torch.randn(persons * instances, 3, *size, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model, backend=compile_backend) if compile_backend else model
    person = torch.arange(persons, device=device).repeat_interleave(instances)
    batch_labels = {"image": images, "person": person, "clothes": person * 2, "modality": (person % 2) + 1,
                    "camera": (person % 16) + 1}
    clothes_to_person = torch.arange(num_clothes, device=device) // 2
    model.train()

    def step() -> None:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = objective(forward(images), batch_labels, clothes_to_person)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="baseline")
    parser.add_argument("--size", default="128x64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bf16", action="store_true", help="also measure bf16 autocast (CUDA)")
    parser.add_argument("--channels-last", action="store_true", help="also measure bf16 + channels-last (CUDA)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    from atzoo.config import parse_overrides

    overrides = parse_overrides(args.settings)
    build_train_config({k: v for k, v in overrides.items() if not k.startswith("backbone.")})
    size = tuple(int(v) for v in args.size.split("x"))
    device = torch.device(args.device)
    variants = [("float32", False, False)]
    if args.bf16:
        variants.append(("bf16", True, False))
    if args.channels_last:
        variants.append(("bf16 + channels-last", True, True))
    print(f"method={args.method} size={args.size} batch={args.batch} device={device} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}")
    for label, bf16, channels_last in variants:
        rate = measure(args.method, size, args.batch, args.steps, device, bf16=bf16, channels_last=channels_last,
                       overrides=overrides)
        print(f"{label:>22}: {rate:8.1f} images/s")


if __name__ == "__main__":
    main()
