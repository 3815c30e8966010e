"""The plugin guide's walk (docs/plugins.md, "From an empty folder to a passing check") is run as
written: every bash block of that section, in order, in one shell, in an empty folder. The plugin
is really built and installed by pip (into a folder of its own on PYTHONPATH, not into the
environment), then `atzoo --strict plugins` and `atzoo check-plugin mymethod --build` must pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
SECTION = "## From an empty folder to a passing check"


def walk_blocks() -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.S)


def test_the_guide_walk_has_every_step():
    script = "\n".join(walk_blocks())
    for step in ("mkdir atzoo-mymethod", "pyproject.toml", "[project.entry-points.atzoo]", "plugin.py",
                 "pip install", "atzoo --strict plugins", "atzoo check-plugin mymethod"):
        assert step in script


def test_a_new_author_walks_from_an_empty_folder_to_a_passing_check(tmp_path):
    site = tmp_path / "site"
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {**os.environ, "PIP_TARGET": str(site), "PIP_NO_DEPS": "1", "PIP_NO_INDEX": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("ATZOO_STRICT", None)
    env.pop("ATZOO_PLUGINS", None)
    script = "set -euo pipefail\n" + "\n".join(walk_blocks())
    done = subprocess.run(["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (site / "atzoo_mymethod" / "plugin.py").is_file()
    assert "mymethod" in done.stdout and "atzoo-mymethod" in done.stdout
    assert "ok       method mymethod:mymethod" in done.stdout
    assert done.stdout.rstrip().endswith("plugin mymethod: all checks passed")
