"""A small world of things the user owns, made once per module: a run, a model package, a dataset
root, a folder of images, a repository, a runner directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class World:
    root: Path
    run: Path
    package: Path
    data: Path
    images: Path
    repo: Path
    runner: Path

    @property
    def owned(self) -> tuple[Path, ...]:
        return (self.run, self.package, self.data, self.images, self.repo, self.runner)


def make_world(root: Path) -> World:
    from atzoo.package import export_run
    from atzoo.service.runnerdir import open_runner_dir
    from tests.packages import make_run_dir

    run = make_run_dir(root / "run", synthetic=True)
    package = export_run(run, root / "package")
    data = root / "data"
    for folder, name in (("p001-d01-c01", "cam01-f0-0001.jpg"), ("p002-d01-c01", "cam09-f0-0001.jpg")):
        (data / folder).mkdir(parents=True)
        (data / folder / name).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    images = root / "images"
    images.mkdir()
    from PIL import Image

    for index in range(2):
        Image.new("RGB", (16, 32), (40 * index, 90, 200)).save(images / f"img{index}.png")
    repo = root / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("[project]\nname = 'mine'\n")
    runner = open_runner_dir(root / "runner", create=True).path
    return World(root, run, package, data, images, repo, runner)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return make_world(tmp_path_factory.mktemp("world"))
