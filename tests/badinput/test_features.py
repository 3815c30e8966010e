"""Features files: forged, damaged, oversized or nonsensical `.npz` files given to `atzoo eval-features`.
Each is refused with exit 2, naming the file and the array, before (or without) loading what it cannot
hold; none is ranked."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

from tests.badinput.harness import assert_user_error, run_cli

N, D = 12, 8


def good_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"feats": rng.normal(size=(N, D)).astype(np.float32), "pid": np.repeat(np.arange(1, 4), 4),
            "clothes": np.repeat(np.arange(1, 7), 2), "camera": np.tile([1, 2, 9, 10], 3),
            "flag": np.tile([2, 6, 4, 8], 3)}


def write(path, **changes):
    arrays = {**good_arrays(), **changes}
    with open(path, "wb") as handle:
        np.savez(handle, **{k: v for k, v in arrays.items() if v is not None})
    return path


def npy_header(shape, dtype="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return b"\x93NUMPY\x01\x00" + buffer.getvalue()[8:] if not buffer.getvalue().startswith(b"\x93") else \
        buffer.getvalue()


def forged_bomb(path):
    """A member whose header declares a 40 GB array, with a few megabytes of compressed zeros after it."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("feats.npy", "w", force_zip64=True) as member:
            member.write(npy_header((100_000, 100_000)))
            zeros = bytes(1 << 20)
            for _ in range(8):
                member.write(zeros)
        for key, value in good_arrays().items():
            if key != "feats":
                buffer = io.BytesIO()
                np.save(buffer, value)
                archive.writestr(f"{key}.npy", buffer.getvalue())
    return path


def _arrays_case(**changes):
    return lambda path: write(path, **changes)


CASES = [
    ("declared-40gb-bomb", forged_bomb, "feats", "declares"),
    ("lengths-disagree", _arrays_case(pid=np.arange(N + 1)), "pid", "rows"),
    ("float-person-ids", _arrays_case(pid=np.full(N, 1e30)), "pid", "integers"),
    ("boolean-labels", _arrays_case(camera=np.ones(N, bool)), "camera", "integers"),
    ("object-array", _arrays_case(pid=np.array([object()] * N)), "pid", "pickle"),
    ("missing-array", _arrays_case(flag=None), "flag", "lacks"),
    ("extra-array", _arrays_case(ranks=np.arange(N)), "ranks", "unexpected"),
    ("int-features", _arrays_case(feats=np.ones((N, D), np.int64)), "feats", "float"),
    ("nan-features", _arrays_case(feats=np.where(np.eye(N, D) > 0, np.nan, 1.0).astype(np.float32)), "feats",
     "NaN or infinite"),
    ("inf-features", _arrays_case(feats=np.full((N, D), np.inf, np.float32)), "feats", "NaN or infinite"),
    ("3e38-features", _arrays_case(feats=(np.random.default_rng(1).uniform(0.5, 3.0, (N, D)) * 1e38).astype(np.float32)),
     "feats", "magnitude"),
    ("all-zero-row", _arrays_case(feats=np.vstack([np.zeros((1, D)), np.ones((N - 1, D))]).astype(np.float32)),
     "feats", "all zero"),
    ("all-zero", _arrays_case(feats=np.zeros((N, D), np.float32)), "feats", "all zero"),
    ("all-equal", _arrays_case(feats=np.ones((N, D), np.float32)), "feats", "equal"),
    ("five-heads", _arrays_case(feats=np.ones((N, 5, D), np.float32)), "feats", "shape"),
    ("zero-width", _arrays_case(feats=np.ones((N, 0), np.float32)), "feats", "shape"),
    ("fortran-order", _arrays_case(feats=np.asfortranarray(np.random.default_rng(2).normal(size=(N, D)))),
     "feats", "Fortran"),
    ("camera-out-of-range", _arrays_case(camera=np.full(N, 17)), "camera", "1-16"),
    ("flag-out-of-range", _arrays_case(flag=np.full(N, 11)), "flag", "0-10"),
    ("huge-person-id", _arrays_case(pid=np.full(N, 10**15)), "pid", "found 1000000000000000"),
    ("negative-clothes", _arrays_case(clothes=np.full(N, -5)), "clothes", "found -5"),
    ("numeric-paths", lambda p: write(p, paths=np.arange(N)), "paths", "strings"),
    ("short-paths", lambda p: write(p, paths=np.array(["a"] * (N - 1))), "paths", "strings"),
    ("not-a-zip", lambda p: p.write_bytes(b"feats,pid\n1,2\n"), "", ".npz"),
    ("truncated-zip", lambda p: p.write_bytes(write(p).read_bytes()[:300]), "", ".npz"),
    ("too-many-members", lambda p: np.savez(p, **{f"a{i}": np.zeros(1) for i in range(20)}), "", "at most"),
    ("member-in-folder", lambda p: zipfile.ZipFile(p, "w").writestr("x/feats.npy", b"junk"), "x/feats.npy", "not an"),
    ("not-npy-member", lambda p: zipfile.ZipFile(p, "w").writestr("feats.npy", b"junk"), "feats", ".npy header"),
    ("a-folder", lambda p: p.mkdir(), "", "no such features file"),
]


@pytest.mark.parametrize("make, name, reason", [pytest.param(m, n, r, id=i) for i, m, n, r in CASES])
def test_a_bad_features_file_is_refused(tmp_path, capsys, make, name, reason):
    path = tmp_path / "feats.npz"
    make(path)
    result = run_cli(capsys, "eval-features", path)
    assert_user_error(result, "feats.npz", name, reason)


def test_the_bomb_is_refused_in_bounded_memory(tmp_path):
    from atzoo.errors import FeaturesError
    from atzoo.evaluation.features_file import load_features

    path = forged_bomb(tmp_path / "bomb.npz")
    tracemalloc.start()
    with pytest.raises(FeaturesError, match="declares"):
        load_features(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 << 20, peak


def test_a_file_over_the_size_limit_is_refused_before_loading(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ATZOO_MAX_FEATURES_BYTES", "512")
    result = run_cli(capsys, "eval-features", write(tmp_path / "feats.npz"))
    assert_user_error(result, "feats.npz", "more than the 512 allowed", "ATZOO_MAX_FEATURES_BYTES")


def test_a_fifo_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "feats.npz"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", "atzoo", "eval-features", str(fifo)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "FIFO" in done.stderr and "Traceback" not in done.stderr, done.stderr
