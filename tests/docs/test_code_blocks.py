"""Every code block of the docs and the README runs, so the pages cannot rot.

Conventions a page follows (checked here):

- A ``python`` block runs; the blocks of one page run in order in one namespace, in a
  fresh folder that holds links to ``examples/`` and ``recipes/``.
- A block right after ``<!-- not run: REASON -->`` is skipped; the reason is required.
- A shell block (``bash``, ``console``, ``sh``) whose lines call ``nnblocks`` must say how it
  runs: ``<!-- run with: EXTRA ARGS -->`` (appended to each ``nnblocks`` line, e.g. a small
  budget) or ``<!-- not run: REASON -->``. Shell blocks run in the slow suite.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(p for p in (ROOT / "docs").rglob("*.md") if "hooks" not in p.parts)
PAGES.append(ROOT / "README.md")
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!--\s*(not run|run with):\s*(.*?)\s*-->\s*$")
SHELL = {"bash", "sh", "console", "shell"}


@dataclass
class Block:
    page: Path
    line: int
    language: str
    code: str
    mark: tuple[str, str] | None  # ("not run", reason) | ("run with", args) | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    out, mark, inside, start, language, body = [], None, False, 0, "", []
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if inside:
            if line.strip() == "```":
                out.append(Block(page, start, language, "\n".join(body) + "\n", mark))
                inside, mark = False, None
            else:
                body.append(line)
        elif fence:
            inside, start, language, body = True, number, fence.group(1), []
        elif MARK.match(line):
            found = MARK.match(line)
            assert found is not None
            mark = (found.group(1), found.group(2))
        elif line.strip():
            mark = None  # a mark applies to the block right after it
    return out


def _workdir(tmp_path: Path) -> Path:
    for name in ("examples", "recipes"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", NNBLOCKS_PROGRESS="0")


PY_PAGES = [p for p in PAGES if any(b.language == "python" for b in blocks(p))]


@pytest.mark.parametrize("page", PY_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, tmp_path):
    """The page's Python blocks run in order in a fresh interpreter."""
    runnable = [b for b in blocks(page) if b.language == "python" and b.mark is None]
    for b in blocks(page):
        if b.language == "python" and b.mark is not None:
            assert b.mark[0] == "not run" and b.mark[1], f"{b.where}: give a reason"
    script = "".join(f"# {b.where}\n{b.code}\n" for b in runnable)
    (tmp_path / "page_blocks.py").write_text(script, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "page_blocks.py"],
        cwd=_workdir(tmp_path),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{page.name}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _shell_commands(block: Block) -> list[list[str]]:
    joined = block.code.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ")
        words = shlex.split(line) if line else []
        if words and words[0].endswith("nnblocks") and words[0] != "make":
            commands.append(words)
    return commands


SHELL_BLOCKS = [b for p in PAGES for b in blocks(p) if b.language in SHELL and _shell_commands(b)]


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=lambda b: b.where)
def test_shell_blocks_say_how_they_run(block):
    assert block.mark is not None, (
        f"{block.where}: a shell block that calls nnblocks needs "
        "<!-- run with: ARGS --> or <!-- not run: REASON --> on the line before it"
    )
    assert block.mark[1] or block.mark[0] == "run with", f"{block.where}: give a reason"


@pytest.mark.slow
@pytest.mark.parametrize(
    "block", [b for b in SHELL_BLOCKS if b.mark and b.mark[0] == "run with"], ids=lambda b: b.where
)
def test_shell_blocks_run(block, tmp_path):
    workdir = _workdir(tmp_path)
    for words in _shell_commands(block):
        args = [sys.executable, "-m", "nnblocks.cli", *words[1:], *shlex.split(block.mark[1])]
        proc = subprocess.run(
            args, cwd=workdir, env=_env(), capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, f"{block.where}: {' '.join(words)}\n{proc.stderr[-3000:]}"


def test_every_page_is_checked():
    assert (ROOT / "docs" / "quickstart.md") in PAGES
    assert any(b.language == "python" for b in blocks(ROOT / "docs" / "quickstart.md"))
