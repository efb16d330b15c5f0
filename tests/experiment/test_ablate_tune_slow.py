"""End to end: an ablation that resumes, and a tune that survives being killed (slow)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from nnblocks.experiment.ablate import ablate
from nnblocks.experiment.tune import tune

pytestmark = pytest.mark.slow


def _recipe(tmp_path, extra=None):
    recipe = {
        "name": "wine_small",
        "seed": 0,
        "data": {"name": "wine"},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 3, "lr": 0.01, "batch_size": 32, "checkpoint": False},
    }
    recipe.update(extra or {})
    path = tmp_path / "wine.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_ablation_runs_the_grid_and_resumes(tmp_path):
    path = _recipe(tmp_path)
    out = tmp_path / "abl"
    result = ablate(path, ["model.norm=batch,layer"], seeds=2, jobs=2, folder=out)
    assert not result.failed
    assert [r.label for r in result.rows] == ["norm=batch", "norm=layer"]
    assert all(len(r.values) == 2 for r in result.rows)
    assert sum(r.best for r in result.rows) == 1
    assert result.warnings  # two seeds are too few for a verdict, and it says so
    for name in ("table.md", "table.csv", "chart.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    finished = sorted(out.glob("*/seed-*/metrics.json"))
    assert len(finished) == 4
    stamps = [p.stat().st_mtime_ns for p in finished]
    again = ablate(path, ["model.norm=batch,layer"], seeds=2, jobs=2, folder=out)
    assert [p.stat().st_mtime_ns for p in finished] == stamps  # nothing was rerun
    assert [r.values for r in again.rows] == [r.values for r in result.rows]


def test_a_bad_variant_fails_before_any_run(tmp_path):
    from nnblocks.errors import NNBlocksError

    path = _recipe(tmp_path)
    with pytest.raises(NNBlocksError, match="nrom"):
        ablate(path, ["model.nrom=batch,layer"], seeds=1, folder=tmp_path / "x")
    assert not list((tmp_path / "x").glob("*/seed-*")) if (tmp_path / "x").exists() else True


TUNE = {
    "tune": {
        "metric": "valid_loss",
        "space": {
            "model.hidden": [[8], [16], [32, 16]],
            "train.lr": {"float": [1.0e-4, 3.0e-2], "log": True},
            "model.norm": ["batch", "layer"],
        },
    }
}


def _finished(db):
    import optuna

    study = optuna.load_study(study_name="wine_small", storage=f"sqlite:///{db}")
    states = {t.state.name for t in study.trials}
    done = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    return len(done), states


def test_tune_resumes_after_being_killed(tmp_path):
    path = _recipe(tmp_path, TUNE)
    out = tmp_path / "tune"
    cmd = [
        sys.executable,
        "-m",
        "nnblocks.cli",
        "tune",
        str(path),
        "--trials",
        "10",
        "--out",
        str(out),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", NNBLOCKS_PROGRESS="0")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "trial-0003").exists():
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before, _ = _finished(out / "study.db")
    assert done_before < 10  # it really was cut short
    result = tune(path, 10, folder=out)
    done_after, _ = _finished(out / "study.db")
    assert done_after >= 10
    assert result.n_complete + result.n_pruned >= 10
    best = yaml.safe_load(result.best_recipe.read_text())
    assert "tune" not in best and best["train"]["lr"] == pytest.approx(
        result.best_params["train.lr"]
    )
    assert (out / "history.png").stat().st_size > 0
    summary = {"complete": result.n_complete, "pruned": result.n_pruned}
    (out / "summary.json").write_text(json.dumps(summary))
