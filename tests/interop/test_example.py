"""The worked example runs end to end (slow: it fine-tunes twice)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_pretrained_swap_example_runs():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "pretrained_swap.py")],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if "valid perplexity" in line]
    assert len(lines) == 2
    for line in lines:  # the new parts learned something
        before, after = (
            float(x) for x in line.split("perplexity")[1].split("trained")[0].split("->")
        )
        assert after < before
