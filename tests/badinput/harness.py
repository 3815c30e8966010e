"""What every bad-input case checks: the command's exit status, a message naming the file or field,
no traceback, and nothing written or lost (the folder trees before and after are compared)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from atzoo.cli.main import main


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli(capsys, *argv: str | os.PathLike) -> Result:
    """Run `atzoo ARGV` in this process through the real entry point (its error boundary included)."""
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else (0 if exited.code is None else 1)
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def assert_user_error(result: Result, *names: str) -> None:
    """Exit status 2, every one of `names` in the message, no traceback."""
    assert result.code == 2, result.text
    assert "Traceback" not in result.text, result.text
    for name in names:
        assert str(name) in result.text, (name, result.text)


def tree(path: Path) -> dict[str, str]:
    """Every file under `path` (hidden ones included) -> sha256 of its bytes; folders -> 'dir'."""
    found: dict[str, str] = {}
    if not path.exists():
        return found
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames:
            found[os.path.relpath(os.path.join(dirpath, name), path)] = "dir"
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                found[os.path.relpath(full, path)] = "special"
                continue
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = hashlib.sha256(handle.read()).hexdigest()
    return found


@contextlib.contextmanager
def unchanged(*paths: Path) -> Iterator[None]:
    """Assert that nothing under `paths` was written, changed or lost by the block."""
    before = [tree(p) for p in paths]
    yield
    after = [tree(p) for p in paths]
    for path, old, new in zip(paths, before, after):
        assert old == new, f"{path} changed: {sorted(set(old.items()) ^ set(new.items()))[:6]}"


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str = "64k", read_only: bool = False) -> Iterator[Path]:
    """A real, small file system (tmpfs) at `mountpoint`; skips the test where mounting is not allowed
    (the caller then relies on the injected-error variant of the case)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mountpoint)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def can_mount(tmp: Path) -> bool:
    probe = tmp / "mount-probe"
    probe.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(probe)], capture_output=True)
    if done.returncode == 0:
        subprocess.run(["umount", "-l", str(probe)], capture_output=True)
    return done.returncode == 0


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


def make_socket(path: Path) -> None:
    import socket

    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()


def make_device(path: Path) -> None:
    """A character device like /dev/null (the tests run as root, who may make one)."""
    import stat

    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
