"""Files that are not regular files (links, FIFOs, sockets, devices), told apart by `lstat` before
anything opens them: opening a FIFO blocks a reader forever, a device or a link leads elsewhere."""

from __future__ import annotations

import os
import stat

from atzoo.errors import AtzooError


def kind_of(mode: int) -> str | None:
    """What a non-regular file is, from its `lstat` mode; None for a regular file."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def refuse_special(path: str | os.PathLike, *, follow_links: bool = False) -> None:
    """Raise `AtzooError` when `path` exists and is a FIFO, socket or device (or, unless `follow_links`,
    a symbolic link), judged before anything opens it. A missing path or a folder is left to the caller."""
    try:
        mode = os.stat(path).st_mode if follow_links else os.lstat(path).st_mode
    except FileNotFoundError:
        return
    found = kind_of(mode)
    if found is not None and not stat.S_ISDIR(mode):
        raise AtzooError(f"{path} is {found}; only regular files are read (refused before opening it)")
