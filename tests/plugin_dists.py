"""Plugins installed the way pip installs them: a module and a dist-info folder with an entry point in
the `atzoo` group, on a folder put on the path (in this process, and on PYTHONPATH for commands)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

HEADER = "from atzoo.plugin import Backbone, Loss, LossTerm, Method, PretrainedWeights, hookimpl\n"


def install(site: Path, distribution: str, entry_name: str, module: str, source: str, version: str = "0.1") -> Path:
    """Write ``module`` and a dist-info for ``distribution`` declaring ``entry_name = module`` into ``site``."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(HEADER + textwrap.dedent(source))
    dist = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[atzoo]\n{entry_name} = {module}\n")
    return site


def atzoo(site: Path | list[Path], *args: str, cwd: Path | None = None,
          timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the `atzoo` command in a fresh interpreter that sees the plugins installed in ``site`` (a
    folder, or several in path order)."""
    sites = [str(path) for path in (site if isinstance(site, list) else [site])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [*sites, os.environ.get("PYTHONPATH")]))}
    env.pop("ATZOO_STRICT", None)
    env.pop("ATZOO_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "atzoo", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
