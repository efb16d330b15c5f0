"""Quality: each trainable recipe's final metrics and the wall time to reach them.

Every recipe under ``recipes/`` with a ``data`` and a ``train`` section is trained with
``nnblocks train --json`` in its own process. The default run (``make bench``) trains each
on a small budget: the tabular MLPs for a few epochs, every other recipe for one epoch of
its own data (about 7 minutes in all on 2 CPU cores); ``--full`` (``make bench-full``)
trains every recipe with its own budget. The epochs column says which budget ran.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/quality.py [--full] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
FAST = {"mlp_tabular.yaml": 5, "mlp_diabetes.yaml": 10}  # recipe -> epochs of the small budget
SMALL_EPOCHS = 1  # every other recipe's small budget


def trainable() -> list[tuple[Path, dict[str, Any]]]:
    """``(path, recipe)`` of the recipes with data and training sections (model-only
    recipes are specs, not runs)."""
    found = []
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        recipe = yaml.safe_load(path.read_text()) or {}
        if "data" in recipe and "train" in recipe:
            found.append((path, recipe))
    return found


def train(path: Path, recipe: dict[str, Any], epochs: int | None, timeout: float) -> dict[str, Any]:
    """One ``nnblocks train`` run (``epochs`` None: the recipe's own): its final metrics
    (JSON) and wall time."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "nnblocks.cli", "train", str(path), "--json",
                   "--no-progress", "--out", str(Path(out) / "run")]  # fmt: skip
        if epochs is not None:
            command += ["--set", f"train.epochs={epochs}"]
        start = time.perf_counter()
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, cwd=ROOT
            )
        except subprocess.TimeoutExpired:
            return {"recipe": path.name, "status": f"stopped after {timeout:.0f} s"}
        seconds = time.perf_counter() - start
    own = (recipe["train"] or {}).get("epochs", "?")
    budget = f"{own} (its own)" if epochs is None else f"{epochs} of {own}"
    row: dict[str, Any] = {"recipe": path.name, "epochs": budget, "seconds": seconds}
    if done.returncode != 0:
        row["status"] = f"failed (exit {done.returncode}): {done.stderr.strip()[-300:]}"
        return row
    try:
        text = done.stdout.strip()  # the metrics are the last thing printed, indented JSON
        row["metrics"] = json.loads(text[text.rfind("\n{") + 1 :])
        row["status"] = "ok"
    except (json.JSONDecodeError, IndexError):
        row["status"] = "ok, but no JSON metrics in the output"
    return row


def run(full: bool = False, quick: bool = False) -> dict[str, Any]:
    rows = []
    for path, recipe in trainable():
        if full:
            rows.append(train(path, recipe, None, timeout=3600))
        elif quick and path.name not in FAST:
            rows.append({"recipe": path.name, "status": "not in the quick run: `make bench`"})
        else:
            epochs = 1 if quick else FAST.get(path.name, SMALL_EPOCHS)
            rows.append(train(path, recipe, epochs, timeout=600))
    return {"benchmark": "quality", "full": full, "results": rows,
            "load_average_1min": os.getloadavg()[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(args.full, args.quick), indent=1))


if __name__ == "__main__":
    main()
