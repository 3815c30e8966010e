"""Special files: FIFOs, sockets, devices and links where atzoo expects a regular file. Every reader
that walks a folder or opens a named file judges them from `lstat` first, so nothing hangs on a FIFO
and nothing follows a link out of a package. Each case runs in a subprocess with a timeout, so a
reader that opened a FIFO fails the test instead of hanging it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.badinput.harness import make_device, make_fifo, make_socket

TIMEOUT_S = 300


def atzoo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "atzoo", *map(str, args)], capture_output=True, text=True,
                          timeout=TIMEOUT_S, cwd=cwd)


def _images_with(make):
    def build(tmp_path, world):
        folder = tmp_path / "imgs"
        folder.mkdir()
        (folder / "ok.png").write_bytes((world.images / "img0.png").read_bytes())
        make(folder / "x.png")
        return ["embed", world.package, folder, "--out", tmp_path / "f.npz", "--no-progress"], "x.png"
    return build


def _named_image(make):
    def build(tmp_path, world):
        make(tmp_path / "x.png")
        return ["embed", world.package, tmp_path / "x.png", "--out", tmp_path / "f.npz"], "x.png"
    return build


def _features(make):
    def build(tmp_path, world):
        make(tmp_path / "input.npz")
        return ["eval-features", tmp_path / "input.npz"], "input.npz"
    return build


def _queue_file(make):
    def build(tmp_path, world):
        from atzoo.service.runnerdir import open_runner_dir

        runner = open_runner_dir(tmp_path / "runner", create=True)
        make(runner.queue_file)
        return ["runner", "--runner-dir", runner.path, "status"], "queue.sqlite3"
    return build


def _dataset_image(tmp_path, world):
    data = tmp_path / "data" / "p001-d01-c01"
    data.mkdir(parents=True)
    make_fifo(data / "cam01-f2-0001.jpg")
    return ["data", "summary", tmp_path / "data"], "data"


CASES = [
    ("embed-fifo-in-folder", _images_with(make_fifo)), ("embed-socket-in-folder", _images_with(make_socket)),
    ("embed-device-in-folder", _images_with(make_device)), ("embed-named-fifo", _named_image(make_fifo)),
    ("eval-features-fifo", _features(make_fifo)), ("eval-features-socket", _features(make_socket)),
    ("eval-features-device", _features(make_device)), ("queue-file-fifo", _queue_file(make_fifo)),
    ("queue-file-device", _queue_file(make_device)), ("dataset-image-fifo", _dataset_image),
]


@pytest.mark.parametrize("build", [pytest.param(b, id=i) for i, b in CASES])
def test_a_special_file_is_refused_without_opening_it(world, tmp_path, build):
    argv, name = build(tmp_path, world)
    done = atzoo(*argv)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert name in done.stderr, done.stderr
    assert not (tmp_path / "f.npz").exists()
