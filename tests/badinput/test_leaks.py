"""Leaks: dataset images or per-image data hidden in a model package. Every push is refused before
anything is sent, naming the file, the byte offset or JSON key, and why; the Hub API sees no call."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.badinput.harness import assert_user_error, make_device, make_fifo, make_socket, run_cli, unchanged


def image_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 32), (200, 30, 60)).save(buffer, format=fmt)
    return buffer.getvalue()


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((32, 16, 3), np.uint8))
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def edit_json(name, change):
    def apply(package):
        data = json.loads((package / name).read_text())
        change(data)
        (package / name).write_text(json.dumps(data, indent=2))
    return apply


def append(name, data: bytes):
    def apply(package):
        with open(package / name, "ab") as handle:
            handle.write(data)
    return apply


def replace(name, data: bytes):
    def apply(package):
        (package / name).write_bytes(data)
    return apply


def edit_card(text: str):
    def apply(package):
        with open(package / "README.md", "a", encoding="utf-8") as handle:
            handle.write("\n" + text + "\n")
    return apply


def rewrite_weights(change):
    """Rewrite model.safetensors with `change(tensors, metadata)` applied (real safetensors files)."""
    def apply(package):
        from safetensors.torch import load_file, save_file
        from safetensors import safe_open

        path = package / "model.safetensors"
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        change(tensors, metadata)
        save_file(tensors, str(path), metadata=metadata)
    return apply


def _first_float(tensors):
    return next(name for name, t in tensors.items() if t.is_floating_point() and t.ndim == 2)


def _extra_pixels(tensors, metadata):
    import torch

    tensors["pixels"] = torch.from_numpy(np.array(Image.new("RGB", (16, 32), (1, 2, 3))))


def _reshape(tensors, metadata):
    name = _first_float(tensors)
    tensors[name] = tensors[name].reshape(-1).contiguous()


def _as_int(tensors, metadata):
    name = _first_float(tensors)
    tensors[name] = tensors[name].to(dtype=__import__("torch").int32)


def _drop(tensors, metadata):
    tensors.pop(_first_float(tensors))


def _meta_blob(tensors, metadata):
    metadata["notes"] = b64(image_bytes("JPEG"))


def _meta_long(tensors, metadata):
    metadata["notes"] = "x " * 400


def _meta_path(tensors, metadata):
    metadata["source"] = "/data/AT-USTC/p001-d01-c01"


def _pixels_in_a_tensor(tensors, metadata):
    import torch

    name = next(name for name, t in tensors.items() if t.dtype == torch.float32 and t.numel() * 4 > 4096)
    raw = bytearray(tensors[name].numpy().tobytes())
    png = image_bytes("PNG")
    raw[128:128 + len(png)] = png
    tensors[name] = torch.frombuffer(raw, dtype=torch.float32).reshape(tensors[name].shape).clone()


LEAKS = [
    ("config-base64-jpeg", edit_json("config.json", lambda d: d["backbone_args"].update(x=b64(image_bytes("JPEG")))),
     "config.json", "base64"),
    ("config-data-uri", edit_json("config.json", lambda d: d.update(neck="data:image/png;base64," +
                                                                       b64(image_bytes("PNG"))[:40])),
     "config.json", "data: URI"),
    ("config-jpeg-appended", append("config.json", image_bytes("JPEG")), "config.json", "JPEG image at byte"),
    ("config-absolute-path", edit_json("config.json", lambda d: d["backbone_args"].update(
        pretrained_file="/data/datasets/AT-USTC/train")), "config.json", "absolute path"),
    ("config-home-path", edit_json("config.json", lambda d: d["backbone_args"].update(cache="~/datasets/atustc/x")),
     "config.json", "absolute path"),
    ("config-number-list", edit_json("config.json", lambda d: d["backbone_args"].update(
        table=list(range(16 * 32 * 3)))), "config.json", "list of 1536 numbers"),
    ("config-hex-dump", edit_json("config.json", lambda d: d["backbone_args"].update(
        blob=image_bytes("PNG").hex())), "config.json", "hex dump"),
    ("config-duplicate-key", replace("config.json", b'{"format": "a", "format": "b"}'), "config.json", "format"),
    ("config-control-character", edit_json("config.json", lambda d: d.update(neck="bn\u0000\u0001")),
     "config.json", "control character"),
    ("config-atustc-name", edit_json("config.json", lambda d: d["backbone_args"].update(note="p001-d01-c01")),
     "config.json", "AT-USTC"),
    ("results-base64", edit_json("results.json", lambda d: d.update(extra=b64(image_bytes("PNG")))),
     "results.json", "base64"),
    ("results-per-query-ranks", edit_json("results.json", lambda d: d["DT-ST"].update(ranks=[1, 2, 3])),
     "results.json", "per-query or per-image"),
    ("results-long-list", edit_json("results.json", lambda d: d.update(hits=list(range(100)))),
     "results.json", "per-query or per-image"),
    ("results-per-image-table", edit_json("results.json", lambda d: d.update(
        extra={f"q{i}": i for i in range(200)})), "results.json", "table of 200 entries"),
    ("results-image-paths", edit_json("results.json", lambda d: d.update(paths=["a/b.jpg"])),
     "results.json", "per-query or per-image"),
    ("results-gif", append("results.json", image_bytes("GIF")), "results.json", "GIF image"),
    ("results-nan", replace("results.json", b'{"DT-ST": {"rank1": NaN}}'), "results.json", "NaN"),
    ("card-data-uri-png", edit_card("![x](data:image/png;base64," + b64(image_bytes("PNG")) + ")"), "README.md",
     "data: URI"),
    ("card-base64-jpeg", edit_card(b64(image_bytes("JPEG"))), "README.md", "decodes to a JPEG image"),
    ("card-absolute-path", edit_card("Trained on /mnt/data/AT-USTC (our copy)."), "README.md", "absolute path"),
    ("card-windows-path", edit_card("Data: D:\\datasets\\AT-USTC\\train"), "README.md", "absolute path"),
    ("card-atustc-file", edit_card("Example: cam01-f2-0050.jpg"), "README.md", "AT-USTC"),
    ("card-ascii-pgm", edit_card("P2\n4 2\n255\n0 10 20 30\n40 50 60 70"), "README.md", "PNM"),
    ("card-ppm-replaced", replace("README.md", b"P6\n16 32\n255\n" + bytes(16 * 32 * 3)), "README.md", "PNM"),
    ("card-numpy", append("README.md", npy_bytes()), "README.md", "NumPy array"),
    ("card-png", append("README.md", image_bytes("PNG")), "README.md", "PNG image"),
    ("card-bmp", append("README.md", image_bytes("BMP")), "README.md", "BMP image"),
    ("card-webp", append("README.md", image_bytes("WEBP")), "README.md", "WebP image"),
    ("card-tiff", append("README.md", image_bytes("TIFF")), "README.md", "TIFF image"),
    ("card-not-utf8", append("README.md", b"\xc3\x28 binary"), "README.md", "not UTF-8"),
    ("card-huge", append("README.md", b"a" * (300 << 10)), "README.md", "bytes, more than"),
    ("weights-extra-pixels", rewrite_weights(_extra_pixels), "model.safetensors", "'pixels'"),
    ("weights-pixels-inside-a-tensor", rewrite_weights(_pixels_in_a_tensor), "model.safetensors", "PNG image"),
    ("weights-wrong-shape", rewrite_weights(_reshape), "model.safetensors", "the model declares"),
    ("weights-int-tensor", rewrite_weights(_as_int), "model.safetensors", "the model declares"),
    ("weights-missing-tensor", rewrite_weights(_drop), "model.safetensors", "missing"),
    ("weights-metadata-blob", rewrite_weights(_meta_blob), "model.safetensors", "metadata key 'notes'"),
    ("weights-metadata-long", rewrite_weights(_meta_long), "model.safetensors", "metadata key 'notes'"),
    ("weights-metadata-path", rewrite_weights(_meta_path), "model.safetensors", "metadata key 'source'"),
    ("weights-trailing-jpeg", append("model.safetensors", image_bytes("JPEG")), "model.safetensors",
     "after the last tensor"),
    ("weights-truncated", lambda p: os.truncate(p / "model.safetensors", 4), "model.safetensors", "truncated"),
    ("extra-file", lambda p: (p / "notes.txt").write_text("hello"), "notes.txt", "allow-list"),
    ("image-file", lambda p: (p / "sample.jpg").write_bytes(image_bytes("JPEG")), "sample.jpg", "an image"),
    ("image-renamed", lambda p: (p / "sample.txt").write_bytes(image_bytes("PNG")), "sample.txt", "allow-list"),
    ("subfolder", lambda p: (p / "extra").mkdir(), "extra", "folder"),
    ("dataset-folder", lambda p: (p / "p001-d01-c01").mkdir(), "p001-d01-c01", "AT-USTC"),
    ("array-dump", lambda p: (p / "feats.npy").write_bytes(npy_bytes()), "feats.npy", "array"),
]


@pytest.mark.parametrize("damage, name, reason", [pytest.param(d, n, r, id=i) for i, d, n, r in LEAKS])
def test_a_leak_is_refused_before_anything_is_sent(world, tmp_path, capsys, recording_api, damage, name, reason):
    package = shutil.copytree(world.package, tmp_path / "package")
    damage(package)
    with unchanged(tmp_path):
        result = run_cli(capsys, "push", package, "--repo", "org/name")
    assert_user_error(result, name, reason)
    assert recording_api.calls == []


def _link_out(path):
    path.symlink_to("/etc/hostname")


SPECIAL = [("fifo-config", "config.json", make_fifo, "FIFO"), ("fifo-card", "README.md", make_fifo, "FIFO"),
           ("fifo-weights", "model.safetensors", make_fifo, "FIFO"), ("socket-results", "results.json", make_socket, "socket"),
           ("device-card", "README.md", make_device, "character device"),
           ("link-card", "README.md", _link_out, "symbolic link")]


@pytest.mark.parametrize("name, make, reason", [pytest.param(n, m, r, id=i) for i, n, m, r in SPECIAL])
def test_special_files_are_refused_before_opening(world, tmp_path, name, make, reason):
    """In a subprocess with a timeout, so a reader that opened a FIFO would fail the test, not hang it."""
    package = shutil.copytree(world.package, tmp_path / "package")
    (package / name).unlink()
    make(package / name)
    done = subprocess.run([sys.executable, "-m", "atzoo", "push", str(package), "--repo", "org/name", "--dry-run"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert name in done.stderr and reason in done.stderr, done.stderr


def test_a_clean_package_passes_the_guard(world, capsys):
    result = run_cli(capsys, "push", world.package, "--repo", "org/name", "--dry-run")
    assert result.code == 0, result.text


def test_safetensors_layout_checks_cover_a_hidden_gap(world, tmp_path, capsys, recording_api):
    """A header whose offsets leave a gap holding an image: the bytes between tensors are refused."""
    package = shutil.copytree(world.package, tmp_path / "package")
    path = package / "model.safetensors"
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    data = raw[8 + length:]
    hidden = image_bytes("PNG")
    first = min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    for key, entry in header.items():
        if key != "__metadata__" and key != first:
            entry["data_offsets"] = [o + len(hidden) for o in entry["data_offsets"]]
    end = header[first]["data_offsets"][1]
    data = data[:end] + hidden + data[end:]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    result = run_cli(capsys, "push", package, "--repo", "org/name")
    assert_user_error(result, "model.safetensors", "a gap before tensor")
    assert recording_api.calls == []
