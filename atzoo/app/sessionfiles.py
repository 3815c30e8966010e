"""The files a running app makes for its visitors, and when they go.

Downloads (the CSV of a table) are written under one scratch folder per app, in a sub-folder per
browser session; the uploads a session hands to the app (demo images, an entry file) live in
Gradio's cache and are remembered per session. When a session ends (the page is closed: the
Blocks' `unload` event) its folder and its uploads are deleted; when the app shuts down (`close`, or
the interpreter's exit) the scratch folder and every remembered upload are. Gradio's own cache is
also swept on a schedule (`DELETE_CACHE`), for sessions that never say goodbye.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gradio as gr

DELETE_CACHE = (600, 3600)
"""(every, older than) in seconds: Gradio's sweep of the files it cached for this app."""
NO_SESSION = "api"
SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


def _remove(root: Path, uploads: dict[str, set[Path]]) -> None:
    shutil.rmtree(root, ignore_errors=True)
    for paths in uploads.values():
        for path in paths:
            path.unlink(missing_ok=True)
    uploads.clear()


class SessionFiles:
    def __init__(self, prefix: str = "atzoo-app-") -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self._uploads: dict[str, set[Path]] = {}
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _remove, self.root, self._uploads)

    @staticmethod
    def session_of(request: Any) -> str:
        session = getattr(request, "session_hash", None) if request is not None else None
        return SAFE_NAME.sub("_", session) if session else NO_SESSION

    def folder(self, request: Any) -> Path:
        """A fresh folder for one download of the request's session."""
        session = self.root / self.session_of(request)
        session.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=session))

    def remember(self, request: Any, paths: Iterable[str | Path | None]) -> None:
        """Uploaded files the session handed to the app, deleted when it ends."""
        with self._lock:
            self._uploads.setdefault(self.session_of(request), set()).update(Path(p) for p in paths if p)

    def end_session(self, request: gr.Request) -> None:
        session = self.session_of(request)
        shutil.rmtree(self.root / session, ignore_errors=True)
        with self._lock:
            for path in self._uploads.pop(session, set()):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Delete everything (also run at the interpreter's exit if `close` never is)."""
        with self._lock:
            self._finalizer()
