"""The docs' code runs: every ```python and ```bash block of README.md and docs/*.md is executed.

Blocks run offline, on synthetic data, in one temporary folder per document and in the order
they appear, so a later block may use what an earlier one made (as a reader following the page
would). A block that cannot run here (it needs AT-USTC, a GPU, the network, installs packages,
takes minutes, or is only an illustration) is preceded, on the line just before its fence, by
``<!-- not-run: REASON -->`` with a non-empty reason.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
RUNNABLE_LANGUAGES = ("python", "bash")
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<language>[\w+-]*)")
BLOCK_TIMEOUT_S = 900
"""Guards against a hang only: a block should take seconds (tiny settings), never this long."""


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    """1-based line of the opening fence."""
    language: str
    code: str
    not_run_reason: str | None

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}"


def extract_blocks(document: Path) -> list[Block]:
    """Every fenced block of ``document`` in a runnable language, with its not-run reason if marked."""
    lines = document.read_text(encoding="utf-8").splitlines()
    blocks = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, start = opening.group("fence"), index
        index += 1
        body = []
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append(lines[index])
            index += 1
        index += 1
        language = opening.group("language").lower()
        if language not in RUNNABLE_LANGUAGES:
            continue
        marker = NOT_RUN.match(lines[start - 1]) if start > 0 else None
        reason = marker.group("reason").strip() if marker else None
        blocks.append(Block(document, start + 1, language, textwrap.dedent("\n".join(body)) + "\n", reason))
    return blocks


ALL_BLOCKS = [block for document in DOCUMENTS for block in extract_blocks(document)]


def test_documents_are_found():
    assert REPO / "README.md" in DOCUMENTS and len(DOCUMENTS) > 3
    assert any(block.document.name == "README.md" and block.not_run_reason is None for block in ALL_BLOCKS)


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.not_run_reason is not None], ids=lambda b: b.name)
def test_a_not_run_marker_gives_its_reason(block):
    assert block.not_run_reason, (f"{block.name}: the <!-- not-run: REASON --> marker before this ```{block.language} "
                                  f"block has no reason; say why it cannot run here (AT-USTC, GPU, network, ...)")


def test_the_extractor_reads_markers_fences_and_languages(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("intro\n```python\nprint(1)\n```\n<!-- not-run: needs AT-USTC -->\n```bash\natzoo x\n```\n"
                    "```text\nnot code\n```\n<!-- not-run: -->\n````bash\n```\n````\n")
    blocks = extract_blocks(page)
    assert [(b.line, b.language, b.code, b.not_run_reason) for b in blocks] == [
        (2, "python", "print(1)\n", None), (6, "bash", "atzoo x\n", "needs AT-USTC"), (13, "bash", "```\n", "")]


@pytest.fixture(scope="module")
def document_folders(tmp_path_factory):
    """One working folder per document, shared by its blocks in page order."""
    folders: dict[Path, Path] = {}

    def folder_for(document: Path) -> Path:
        if document not in folders:
            folders[document] = tmp_path_factory.mktemp(document.stem.lower())
        return folders[document]

    return folder_for


def _environment(folder: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(folder),
            "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
            "PYTHONUNBUFFERED": "1", "ATZOO_REPO": str(REPO)}


def _command(block: Block, script: Path) -> list[str]:
    if block.language == "python":
        return [sys.executable, str(script)]
    return ["bash", "-euo", "pipefail", str(script)]


RUN_BLOCKS = [b for b in ALL_BLOCKS if b.not_run_reason is None]


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.name)
def test_a_docs_block_runs(block, document_folders):
    folder = document_folders(block.document)
    script = folder / f".block-{block.line}.{'py' if block.language == 'python' else 'sh'}"
    script.write_text(block.code, encoding="utf-8")
    try:
        done = subprocess.run(_command(block, script), cwd=folder, env=_environment(folder), capture_output=True,
                              text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{block.name}: the ```{block.language} block did not finish in {BLOCK_TIMEOUT_S} s "
                    f"(use tiny settings, or mark it <!-- not-run: REASON -->)\n--- block ---\n{block.code}"
                    f"--- output ---\n{error.stdout or ''}{error.stderr or ''}")
    if done.returncode != 0:
        pytest.fail(f"{block.name}: the ```{block.language} block exited with status {done.returncode}\n"
                    f"--- block ---\n{block.code}--- stdout ---\n{done.stdout[-4000:]}\n"
                    f"--- stderr ---\n{done.stderr[-4000:]}\n"
                    f"(fix the block, or mark it on the line before its fence: <!-- not-run: REASON -->)")
