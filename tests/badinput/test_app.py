"""The app under hostile or careless input: each request gets a clear message (never a traceback),
and the server still answers afterwards. The files the app makes for a visitor are deleted when the
session ends and when the app shuts down."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from tests.badinput.conftest import make_world

LEADERBOARD_ARGS = ["rank1", "403k", False, [], [], False, False, "", "Any-Time"]
SEEDED = Path(__file__).resolve().parents[2] / "leaderboard" / "entries"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hostile_package(world, root: Path, name: str, change) -> str:
    package = shutil.copytree(world.package, root / name)
    config = json.loads((package / "config.json").read_text())
    change(config)
    (package / "config.json").write_text(json.dumps(config))
    return str(package)


def nan_weights(world, root: Path) -> str:
    from safetensors.torch import load_file, save_file

    package = shutil.copytree(world.package, root / "nan-weights")
    tensors = load_file(str(package / "model.safetensors"))
    name = next(n for n, t in tensors.items() if t.is_floating_point() and t.ndim >= 2)
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(package / "model.safetensors"))
    return str(package)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from gradio_client import Client

    from atzoo.app.app import serve

    root = tmp_path_factory.mktemp("app")
    world = make_world(root / "world")
    registry = root / "registry"
    (registry / "entries").mkdir(parents=True)
    for path in sorted(SEEDED.glob("paper-*.json"))[:3]:
        shutil.copy(path, registry / "entries" / path.name)
    models = {"good": str(world.package),
              "huge-input": hostile_package(world, root, "huge", lambda c: c.update(input_size=[100000, 100000])),
              "zero-std": hostile_package(world, root, "std", lambda c: c["normalization"][1].__setitem__(0, 0.0)),
              "nan-weights": nan_weights(world, root)}
    port = free_port()
    blocks = serve(registry, port=port, prevent_thread_lock=True, quiet=True, demo_models=models,
                   allow_local_paths=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield SimpleNamespace(blocks=blocks, client=client, world=world, root=root)
    blocks.close()


def still_answers(client) -> None:
    frame, _ = client.predict(*LEADERBOARD_ARGS, api_name="/leaderboard")
    assert frame["data"], "the leaderboard stopped answering"


def _bomb(root: Path) -> str:
    path = root / "bomb.png"
    Image.new("1", (30000, 30000)).save(path)
    return str(path)


def _ppm_as_png(root: Path) -> str:
    path = root / "photo.png"
    path.write_bytes(b"P6\n4 4\n255\n" + bytes(48))
    return str(path)


def _demo(model, query=None, local=""):
    def call(served):
        from gradio_client import handle_file

        image = query(served.root) if query else str(next(served.world.images.glob("*.png")))
        return served.client.predict(model, local, handle_file(image), [], True, "DT-ST", api_name="/demo")
    return call


def _entry(text=None, upload=None):
    def call(served):
        from gradio_client import handle_file

        file = None
        if upload is not None:
            path = served.root / "upload.json"
            path.write_bytes(upload)
            file = handle_file(str(path))
        return served.client.predict(text or "", file, api_name="/validate_entry")
    return call


CASES = [
    ("demo-huge-input-size", _demo("huge-input"), "input_size"),
    ("demo-zero-std", _demo("zero-std"), "normalization"),
    ("demo-nan-weights", _demo("nan-weights"), "NaN"),
    ("demo-decompression-bomb", _demo("good", _bomb), "bomb.png"),
    ("demo-local-fifo", _demo("local path (below)", local="/dev/stdin"), "stdin"),
    ("demo-local-dataset-root", _demo("local path (below)", local="/etc"), "/etc"),
    ("entry-duplicate-keys", _entry('{"id": "a", "id": "b"}'), "id"),
    ("entry-huge-upload", _entry(upload=b"{" + b" " * (2 << 20) + b"}"), "larger than"),
    ("entry-binary-upload", _entry(upload=b"\x89PNG\r\n\x1a\n" + bytes(100)), "upload.json"),
    ("entry-nan", _entry('{"id": "x", "reported": {"DT-ST": {"rank1": NaN}}}'), "NaN"),
    ("compare-unknown", lambda s: s.client.predict(["no-such-entry"], "rank1", api_name="/compare"), "no-such-entry"),
]


@pytest.mark.parametrize("call, expected", [pytest.param(c, e, id=i) for i, c, e in CASES])
def test_a_hostile_request_gets_a_message_and_the_server_still_answers(served, call, expected):
    from gradio_client.exceptions import AppError

    try:
        message = str(call(served))
    except AppError as error:
        message = str(error)
    assert expected in message and "Traceback" not in message, message
    still_answers(served.client)


def test_downloads_stay_in_the_apps_folder_and_go_when_the_session_ends(served):
    before = set(Path(tempfile.gettempdir()).glob("atzoo-leaderboard-*"))
    path = Path(served.client.predict(*LEADERBOARD_ARGS, api_name="/csv"))
    assert path.is_file()
    assert set(Path(tempfile.gettempdir()).glob("atzoo-leaderboard-*")) == before
    files = served.blocks.atzoo_app.files
    sessions = [p for p in files.root.iterdir() if p.is_dir()]
    assert len(sessions) == 1 and sessions[0].name != "api" and any(sessions[0].rglob("*.csv"))
    for session in sessions:
        files.end_session(SimpleNamespace(session_hash=session.name))
    assert not any(files.root.iterdir())
    still_answers(served.client)


def test_session_files_go_when_the_session_ends_and_at_close():
    from atzoo.app.sessionfiles import SessionFiles

    files = SessionFiles()
    request, other = SimpleNamespace(session_hash="abc123"), SimpleNamespace(session_hash="def456")
    (files.folder(request) / "table.csv").write_text("a,b\n")
    (files.folder(other) / "table.csv").write_text("a,b\n")
    files.end_session(request)
    assert not (files.root / "abc123").exists() and any((files.root / "def456").rglob("*.csv"))
    files.close()
    assert not files.root.exists()


def test_uploads_are_swept_by_gradio_and_at_shutdown(tmp_path):
    from atzoo.app.app import build_app
    from atzoo.app.sessionfiles import DELETE_CACHE

    registry = tmp_path / "registry"
    (registry / "entries").mkdir(parents=True)
    blocks = build_app(registry)
    assert blocks.delete_cache == DELETE_CACHE
    blocks.close()


def test_closing_the_app_deletes_its_files(tmp_path):
    from atzoo.app.app import build_app

    registry = tmp_path / "registry"
    (registry / "entries").mkdir(parents=True)
    blocks = build_app(registry)
    root = blocks.atzoo_app.files.root
    assert root.is_dir()
    assert [f.name for f in blocks.fns.values() if (None, "unload") in f.targets] == ["end_session"]
    blocks.close()
    assert not root.exists()
