"""File-system faults: a read-only or full disk, an unreadable input, a path of the wrong kind. Each is
exit 2 with the path and what to do, no traceback (unless --debug), and nothing half-written left."""

from __future__ import annotations

import errno
import os

import pytest

from tests.badinput.harness import assert_user_error, run_cli, small_tmpfs, tree, unchanged


def _fill(mount):
    """Leave almost no room on a small tmpfs."""
    with open(mount / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


FULL_DISK = [
    ("export", lambda w, m: ["export", w.run, m / "pkg"]),
    ("synth", lambda w, m: ["synth", m / "data", "--preset", "tiny", "--quiet"]),
    ("embed", lambda w, m: ["embed", w.package, w.images, "--out", m / "f.npz", "--no-progress"]),
    ("runner-submit", lambda w, m: ["runner", "--runner-dir", m / "runner", "submit", "train", "baseline",
                                    "--data", w.data]),
]


@pytest.mark.parametrize("build", [pytest.param(b, id=i) for i, b in FULL_DISK])
def test_full_disk_is_a_clear_error_and_leaves_nothing(world, capsys, tmp_path, build):
    with small_tmpfs(tmp_path / "disk", "256k") as mount:
        _fill(mount)
        with unchanged(world.root):
            result = run_cli(capsys, *build(world, mount))
        assert_user_error(result, "no space left", str(mount))
        assert sorted(tree(mount)) == ["filler"] or all(k == "filler" or v == "dir" for k, v in tree(mount).items())
        assert not [k for k in tree(mount) if k.startswith(".") or "/." in k]


READ_ONLY = [
    ("export", lambda w, m: ["export", w.run, m / "pkg"]),
    ("synth", lambda w, m: ["synth", m / "data", "--preset", "tiny", "--quiet"]),
    ("embed", lambda w, m: ["embed", w.package, w.images, "--out", m / "f.npz", "--no-progress"]),
    ("train", lambda w, m: ["train", "baseline", "--data", w.data, "--out", m / "run"]),
    ("runner-submit", lambda w, m: ["runner", "--runner-dir", m / "runner", "submit", "train", "baseline",
                                    "--data", w.data]),
    ("leaderboard-schema", lambda w, m: ["leaderboard", "schema", "--out", m / "schema.json"]),
]


@pytest.mark.parametrize("build", [pytest.param(b, id=i) for i, b in READ_ONLY])
def test_read_only_output_is_a_clear_error(world, capsys, tmp_path, build):
    with small_tmpfs(tmp_path / "ro", "64k", read_only=True) as mount:
        with unchanged(world.root):
            result = run_cli(capsys, *build(world, mount))
        assert result.code == 2 and "Traceback" not in result.text, result.text
        assert "read-only" in result.text or "Read-only" in result.text, result.text


def _raise(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), str(args[0]) if args else None)
    return fail


INJECTED = [
    ("export-enospc-copy", "atzoo.package.shutil.copyfile", errno.ENOSPC, "no space left"),
    ("export-eacces-copy", "atzoo.package.shutil.copyfile", errno.EACCES, "permission denied"),
    ("export-eio-copy", "atzoo.package.shutil.copyfile", errno.EIO, "input/output error"),
    ("export-edquot-copy", "atzoo.package.shutil.copyfile", errno.EDQUOT, "quota"),
    ("export-enospc-rename", "atzoo.formats.atomic.os.replace", errno.ENOSPC, "no space left"),
]


@pytest.mark.parametrize("target, code, expected", [pytest.param(t, c, e, id=i) for i, t, c, e in INJECTED])
def test_injected_write_errors_leave_nothing_half_written(world, capsys, tmp_path, monkeypatch, target, code,
                                                          expected):
    monkeypatch.setattr(target, _raise(code))
    with unchanged(world.root):
        result = run_cli(capsys, "export", world.run, tmp_path / "out" / "pkg")
    assert_user_error(result, expected)
    assert tree(tmp_path / "out") == {}


UNREADABLE = [
    ("export-run-config", lambda w: ["export", w.run, w.root / "never"], "run/config.json"),
    ("export-run-metrics", lambda w: ["export", w.run, w.root / "never"], "run/metrics.json"),
    ("evaluate-run-config", lambda w: ["evaluate", w.run], "run/config.json"),
    ("push-package-config", lambda w: ["push", w.package, "--repo", "org/name", "--dry-run"], "package/config.json"),
    ("runner-marker", lambda w: ["runner", "--runner-dir", w.runner, "status"], "runner/atzoo-runner.json"),
]


@pytest.mark.parametrize("build, unreadable", [pytest.param(b, u, id=i) for i, b, u in UNREADABLE])
def test_an_unreadable_input_names_the_file(world, capsys, monkeypatch, build, unreadable):
    """Permission denied on one input file (injected: the tests run as root, whom permissions do not stop)."""
    import builtins

    def guarded_open(file, *args, **kwargs):
        if str(file).endswith(unreadable):
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr("atzoo.formats.jsonfile.open", guarded_open, raising=False)
    with unchanged(world.root):
        result = run_cli(capsys, *build(world))
    assert_user_error(result, unreadable)
    assert "permission denied" in result.text.lower()


WRONG_KIND = [
    ("train-out-under-a-file", lambda w: ["train", "baseline", "--data", w.data, "--out",
                                          w.repo / "pyproject.toml" / "run"], "pyproject.toml"),
    ("export-out-under-a-file", lambda w: ["export", w.run, w.repo / "pyproject.toml" / "pkg"], "pyproject.toml"),
    ("synth-out-under-a-file", lambda w: ["synth", w.repo / "pyproject.toml" / "d", "--preset", "tiny"],
     "pyproject.toml"),
    ("runner-dir-is-a-file", lambda w: ["runner", "--runner-dir", w.repo / "pyproject.toml", "status"],
     "pyproject.toml"),
    ("eval-features-of-a-folder", lambda w: ["eval-features", w.images], "images"),
    ("evaluate-a-file", lambda w: ["evaluate", w.repo / "pyproject.toml"], "pyproject.toml"),
    ("leaderboard-check-a-folder", lambda w: ["leaderboard", "check", w.images], "images"),
    ("push-a-file", lambda w: ["push", w.repo / "pyproject.toml", "--repo", "org/name", "--dry-run"],
     "pyproject.toml"),
]


@pytest.mark.parametrize("build, expected", [pytest.param(b, e, id=i) for i, b, e in WRONG_KIND])
def test_wrong_kind_of_path_is_a_clear_error(world, capsys, build, expected):
    with unchanged(world.root):
        result = run_cli(capsys, *build(world))
    assert_user_error(result, expected)


@pytest.mark.parametrize("how", ["--debug", "env"])
def test_debug_shows_the_traceback(world, capsys, tmp_path, monkeypatch, how):
    monkeypatch.setattr("atzoo.package.shutil.copyfile", _raise(errno.ENOSPC))
    args = ["export", world.run, tmp_path / "pkg"]
    if how == "env":
        monkeypatch.setenv("ATZOO_DEBUG", "1")
    else:
        args.insert(0, "--debug")
    result = run_cli(capsys, *args)
    assert result.code == 2 and "Traceback" in result.err and "no space left" in result.err


def _fail_the_final_rename(monkeypatch):
    import atzoo.outputs

    real = atzoo.outputs.os.rename

    def rename(source, target, *args, **kwargs):
        if ".tmp" in str(source) or ".partial" in str(source):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
        return real(source, target, *args, **kwargs)

    monkeypatch.setattr(atzoo.outputs.os, "rename", rename)


def test_an_interrupted_export_overwrite_keeps_the_old_package(world, capsys, tmp_path, monkeypatch):
    out = tmp_path / "pkg"
    assert run_cli(capsys, "export", world.run, out).code == 0
    _fail_the_final_rename(monkeypatch)
    with unchanged(tmp_path):
        result = run_cli(capsys, "export", world.run, out, "--overwrite")
    assert_user_error(result, "no space left", str(out))


def test_an_interrupted_synth_overwrite_keeps_the_old_dataset(capsys, tmp_path, monkeypatch):
    root = tmp_path / "data"
    assert run_cli(capsys, "synth", root, "--preset", "tiny", "--quiet", "--ids", "4", "--frames", "12").code == 0
    _fail_the_final_rename(monkeypatch)
    with unchanged(tmp_path):
        result = run_cli(capsys, "synth", root, "--preset", "tiny", "--quiet", "--ids", "4", "--frames", "12",
                         "--seed", "9", "--overwrite")
    assert_user_error(result, "no space left", str(root))
