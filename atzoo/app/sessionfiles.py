"""The files a running app makes for its visitors, and when they go.

Downloads (the CSV of a table) are written under one scratch folder per app, in a sub-folder per
browser session. When a session ends (the page is closed: the Blocks' `unload` event) its folder is
deleted; when the app shuts down (`close`, or the interpreter's exit) the scratch folder is.

Uploads (demo images, an entry file) live in Gradio's cache, which names a file by its content, so
two sessions that upload the same image share one file: they are not deleted when one session
ends, but by Gradio's sweep (`DELETE_CACHE`: files older than an hour, checked every ten minutes)
and at shutdown.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import gradio as gr

DELETE_CACHE = (600, 3600)
"""(every, older than) in seconds: Gradio's sweep of the files it cached for this app."""
NO_SESSION = "api"
SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")


class SessionFiles:
    def __init__(self, prefix: str = "atzoo-app-") -> None:
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.root, True)

    @staticmethod
    def session_of(request: Any) -> str:
        session = getattr(request, "session_hash", None) if request is not None else None
        return SAFE_NAME.sub("_", session) if session else NO_SESSION

    def folder(self, request: Any) -> Path:
        """A fresh folder for one download of the request's session."""
        session = self.root / self.session_of(request)
        session.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=session))

    def end_session(self, request: gr.Request) -> None:
        shutil.rmtree(self.root / self.session_of(request), ignore_errors=True)

    def close(self) -> None:
        """Delete everything (also run at the interpreter's exit if `close` never is)."""
        self._finalizer()
