"""The README's seed workflow, command by command, on a small budget (slow).

The commands are read from README.md itself, so the README cannot drift from what works.
"""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "--set", "data.train_size=1500", "--set", "data.valid_size=200", "--set", "data.test_size=300",
    "--set", "data.long_size=100", "--set", "train.epochs=1",
]  # fmt: skip


def readme_commands() -> list[list[str]]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    commands, block, inside = [], [], False
    for line in lines:
        if line.startswith("```"):
            if inside:  # a block ends: join continued lines, keep the nnblocks commands
                joined = "\n".join(block).replace("\\\n", " ")
                commands += [
                    shlex.split(c)
                    for c in joined.splitlines()
                    if c.startswith(".venv/bin/nnblocks")
                ]
            inside, block = not inside, []
        elif inside:
            block.append(line)
    return commands


def test_readme_names_the_whole_workflow():
    verbs = [c[c.index("--plugin") + 2] if "--plugin" in c else c[1] for c in readme_commands()]
    assert verbs == ["check", "train", "train", "ablate"]


def test_readme_workflow_runs(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", NNBLOCKS_PROGRESS="0")
    for i, command in enumerate(readme_commands()):
        args = [sys.executable, "-m", "nnblocks.cli", *command[1:]]
        verb = command[command.index("--plugin") + 2]
        if verb == "train":
            args += [*SMALL, "--out", str(tmp_path / f"run{i}"), "--no-progress"]
        if verb == "ablate":
            args += [*SMALL, "--seeds", "2", "--jobs", "2", "--out", str(tmp_path / "ablate")]
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, (
            f"{' '.join(command)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
        if verb == "check":
            assert "0 failed" in proc.stdout
    assert (tmp_path / "run1" / "metrics.json").is_file()  # the part replaced the attention
    assert (tmp_path / "run2" / "metrics.json").is_file()  # the part ran beside it
    table = (tmp_path / "ablate" / "table.md").read_text()
    for variant in ("self_attention=mha", "self_attention=gqa", "self_attention=cosine"):
        assert variant in table
    assert (tmp_path / "ablate" / "chart.png").stat().st_size > 0
