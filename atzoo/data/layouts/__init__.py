"""Readers for ten public Re-ID layouts, used by the zero-shot cross-dataset test.

One module per dataset; `LAYOUTS` maps each layout name to its `Layout` (how to recognise, read
and request it). `get_layout` and `detect_layout` give clear errors for an unknown name, a root of
another layout and a root that looks like several.
"""

from __future__ import annotations

import os
from pathlib import Path

from atzoo.data.layouts import (cuhk03, deepchange, llcm, ltcc, market1501, msmt17, prcc, regdb, sysu_mm01,
                                vc_clothes)
from atzoo.data.layouts.base import CrossDataset, Layout, check_root
from atzoo.errors import DataError

LAYOUTS: dict[str, Layout] = {module.LAYOUT.name: module.LAYOUT for module in (
    market1501, cuhk03, msmt17, sysu_mm01, regdb, llcm, prcc, ltcc, deepchange, vc_clothes)}
LAYOUT_NAMES = tuple(LAYOUTS)


def get_layout(name: str) -> Layout:
    layout = LAYOUTS.get(name.lower())
    if layout is None:
        raise DataError(f"unknown dataset layout {name!r}; known: {', '.join(LAYOUT_NAMES)}")
    return layout


def matching_layouts(root: Path) -> list[Layout]:
    return [layout for layout in LAYOUTS.values() if layout.looks_like(root)]


def detect_layout(root: str | os.PathLike) -> Layout:
    """The one layout `root` looks like; none or several is an error saying what was found."""
    root = check_root(root)
    found = matching_layouts(root)
    if len(found) == 1:
        return found[0]
    if not found:
        raise DataError(f"{root} does not look like any known layout ({', '.join(LAYOUT_NAMES)}); "
                        "name it with --layout NAME to see what is missing")
    raise DataError(f"{root} looks like several layouts at once ({', '.join(f.name for f in found)}): mixed "
                    "layouts in one root; point at one dataset's root or name it with --layout NAME")


def read_layout(root: str | os.PathLike, name: str | None = None) -> CrossDataset:
    """Read `root` as layout `name` (detected when None). A root that plainly is another layout
    is reported as such before its files are read."""
    root = check_root(root)
    if name is None:
        return detect_layout(root).read(root)
    layout = get_layout(name)
    if not layout.looks_like(root):
        others = [other.title for other in matching_layouts(root)]
        if others:
            raise DataError(f"{root} does not look like {layout.title}; it looks like {' or '.join(others)} "
                            f"instead ({layout.description})")
    return layout.read(root)


__all__ = ["CrossDataset", "Layout", "LAYOUTS", "LAYOUT_NAMES", "get_layout", "detect_layout", "read_layout"]
