"""Every GPU figure in one call, written to one JSON file.

- training images/s (forward + losses + backward + optimizer step on random batches) in bf16 +
  channels-last, with and without `torch.compile`: BoT (ResNet-50), Uni-AT (ViT-B/16) with and
  without MoAE, at 256x128, batches of 64, no pretrained download;
- the train loader's images/s with batch augmentation on the device, reading the image cache (in
  the main process) and decoding every epoch (with as many workers as the machine has cores), on a
  synthetic dataset generated first;
- the six-scenario evaluation (768-d, six outputs) at 10,000 x 10,000 per pair and at AT-USTC's
  test size (about 5,000 queries and 5,000 gallery images per pair: the mixed test's 19,992 valid
  queries count each query twice), with the mixed test at the latter, on the device;
- peak device memory of each item (CUDA), or peak resident memory above the start (CPU).

Each item records its error instead of stopping the suite, and items left when `--budget`
seconds have passed are recorded as skipped. Exit status 1 if an item failed.

    python benchmarks/gpu_suite.py --out gpu_suite.json        # a CUDA machine: under 8 minutes
    python benchmarks/gpu_suite.py --smoke --out smoke.json    # any CPU: tiny sizes, a minute or two

`--smoke` shrinks everything (64x32 images, tiny ViT, batches of 8, one timed step, a 300 x 600
evaluation), trains in float32 (bf16 convolutions are very slow on most CPUs) and compiles with the
"eager" backend (graph capture without code generation), so the suite's code is exercised on a
CPU; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from data_pipeline import timed_epochs  # noqa: E402
from eval_speed import peak_memory, synthetic_test_set  # noqa: E402
from train_speed import measure  # noqa: E402

from atzoo.io import write_json_atomic  # noqa: E402

FULL = {
    "size": (256, 128), "batch": 64, "steps": 20, "warmup": 3, "bf16": True,
    "methods": {"bot": ("bot", {"backbone.pretrained": False}),
                "uniat": ("uniat", {"backbone.pretrained": False}),
                "uniat-no-moae": ("uniat", {"backbone.pretrained": False, "backbone.moae": False})},
    "compile_backend": "inductor",
    "loader": {"ids": 40, "batch": (16, 4), "epochs": 2},
    "evaluation": {"10k x 10k": (10_000, 10_000, 768, False), "AT-USTC test size": (5_000, 5_000, 768, True)},
}
TINY_VIT = {"backbone.pretrained": False, "backbone.model_name": "vit_tiny_patch16_224", "backbone.img_size": [64, 32]}
SMOKE = {
    "size": (64, 32), "batch": 8, "steps": 1, "warmup": 1, "bf16": False,
    "methods": {"bot": ("bot", {"backbone.pretrained": False}),
                "uniat": ("uniat", TINY_VIT),
                "uniat-no-moae": ("uniat", {**TINY_VIT, "backbone.moae": False})},
    "compile_backend": "eager",
    "loader": {"ids": 4, "batch": (2, 4), "epochs": 1},
    "evaluation": {"10k x 10k": (300, 600, 64, False), "AT-USTC test size": (200, 400, 64, True)},
}


class Peak:
    """Peak device memory (CUDA) or resident memory above the start (CPU) of one item, in MB."""

    def __init__(self, device: torch.device):
        self.device = device
        self.memory: Any = None

    def __enter__(self) -> Peak:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.memory = peak_memory()
            self.sampled = self.memory.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self.memory.__exit__(*exc)
            self.mb = self.sampled["above"]


def run_item(results: dict, name: str, device: torch.device, started: float, budget: float,
             work: Callable[[], dict]) -> None:
    """Run one item into `results[name]`: its figures and peak memory, its error, or skipped."""
    if time.perf_counter() - started > budget:
        results[name] = {"skipped": f"the {budget:.0f} s budget was spent"}
        print(f"{name}: skipped (budget)", flush=True)
        return
    item_started = time.perf_counter()
    try:
        with Peak(device) as peak:
            figures = work()
        results[name] = {**figures, "peak_memory_mb": round(peak.mb, 1),
                         "seconds": round(time.perf_counter() - item_started, 2)}
    except Exception as error:  # the suite records the failure and goes on
        results[name] = {"error": f"{type(error).__name__}: {error}",
                         "traceback": traceback.format_exc(limit=4)}
    print(f"{name}: {results[name]}", flush=True)


def training_items(plan: dict, device: torch.device, results: dict, started: float, budget: float,
                   backend: str | None) -> None:
    for label, (method, overrides) in plan["methods"].items():
        name = f"train {label} {'bf16' if plan['bf16'] else 'float32'} channels-last" + \
            (f" compile({backend})" if backend else "")

        def work(method: str = method, overrides: dict = overrides, backend: str | None = backend) -> dict:
            warm = time.perf_counter()
            rate = measure(method, plan["size"], plan["batch"], plan["steps"], device, bf16=plan["bf16"],
                           channels_last=True, overrides={**overrides, "image_size": list(plan["size"])},
                           compile_backend=backend, warmup=plan["warmup"])
            return {"images_per_s": round(rate, 1), "batch": plan["batch"], "size": list(plan["size"]),
                    "steps": plan["steps"], "setup_and_warmup_s": round(time.perf_counter() - warm, 1)}

        run_item(results, name, device, started, budget, work)


def loader_item(plan: dict, device: torch.device, workdir: Path, results: dict, started: float,
                budget: float) -> None:
    from atzoo.config import TrainConfig
    from atzoo.data import build_train_set, parse_root
    from atzoo.data.cache import ImageCache
    from atzoo.data.loaders import train_loader
    from atzoo.data.synthetic import SynthConfig, generate
    from atzoo.plugin import IMAGENET_NORMALIZATION

    settings = plan["loader"]
    workers = os.cpu_count() or 1

    def work() -> dict:
        root = workdir / "synthetic"
        if not root.exists():
            generate(root, SynthConfig(ids=settings["ids"], size=plan["size"]), progress=False)
        train_set = build_train_set(parse_root(root))
        ImageCache(train_set.records, plan["size"], workdir / "cache", progress=False)
        figures: dict[str, Any] = {"train_images": len(train_set), "size": list(plan["size"]), "workers": workers}
        for label, cache in (("cached", True), ("decoding", False)):
            config = TrainConfig(num_persons=settings["batch"][0], num_instances=settings["batch"][1],
                                 image_size=plan["size"], num_workers=workers, cache=cache)
            loader = train_loader(train_set, config, IMAGENET_NORMALIZATION, epoch=0, cache_dir=workdir / "cache",
                                  device=device)
            figures[f"{label}_images_per_s"] = round(timed_epochs(loader, settings["epochs"], device), 1)
        return figures

    run_item(results, f"loader with batch augmentation: cached (main process) and decoding ({workers} workers)",
             device, started, budget, work)


def evaluation_items(plan: dict, device: torch.device, results: dict, started: float, budget: float) -> None:
    from atzoo.evaluation import evaluate_features

    for label, (queries, gallery, dim, mixed) in plan["evaluation"].items():
        def work(queries: int = queries, gallery: int = gallery, dim: int = dim, mixed: bool = mixed) -> dict:
            feats, labels = synthetic_test_set(queries, gallery, dim, 6)
            arrays = (labels["pid"], labels["clothes"], labels["camera"], labels["flag"])
            figures: dict[str, Any] = {"queries_per_pair": queries, "gallery_per_pair": gallery, "dim": dim}
            for with_mixed in (False, True) if mixed else (False,):
                begun = time.perf_counter()
                result = evaluate_features(feats, *arrays, device=str(device), mixed=with_mixed)
                key = "six_scenarios_and_mixed_s" if with_mixed else "six_scenarios_s"
                figures[key] = round(time.perf_counter() - begun, 2)
                figures["any_time_rank1"] = round(result["Any-Time"]["rank1"], 4)
            return figures

        run_item(results, f"evaluation {label}", device, started, budget, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the suite on a CPU")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds after which items are skipped")
    parser.add_argument("--workdir", type=Path, default=None, help="synthetic data and cache (default: temporary)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    plan = SMOKE if args.smoke else FULL
    started = time.perf_counter()
    report: dict[str, Any] = {
        "smoke": args.smoke, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__, "cpus": os.cpu_count(), "load_average_start": list(os.getloadavg()),
        "precision": f"{'bf16 autocast' if plan['bf16'] else 'float32'}, channels-last",
        "compile_backend": plan["compile_backend"],
        "items": {},
    }
    if args.smoke and device.type == "cpu":
        torch.set_num_threads(1)  # tiny ops: a second thread only waits on a shared machine
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    items = report["items"]
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        training_items(plan, device, items, started, args.budget, None)
        loader_item(plan, device, workdir, items, started, args.budget)
        evaluation_items(plan, device, items, started, args.budget)
        training_items(plan, device, items, started, args.budget, plan["compile_backend"])  # slowest: last
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_end"] = list(os.getloadavg())
    write_json_atomic(args.out, report)
    failed = [name for name, item in items.items() if "error" in item]
    print(f"{len(items)} items in {report['seconds']} s -> {args.out}" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
