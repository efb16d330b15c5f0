"""`nnblocks train`: one run per folder from the command line."""

import json

import yaml

from nnblocks.cli import main


def _recipe(tmp_path):
    path = tmp_path / "wine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "wine_cli",
                "data": {"name": "wine"},
                "model": {"name": "mlp", "hidden": [8]},
                "train": {"epochs": 1, "batch_size": 32, "threads": 1},
            }
        )
    )
    return path


def test_train_keeps_a_finished_run_unless_overwrite(tmp_path, capsys):
    recipe, out = _recipe(tmp_path), tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--no-progress", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["epochs_run"] == 1 and (out / "metrics.json").is_file()
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main(["train", str(recipe), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "finished run" in err and "--overwrite" in err and str(out) in err
    assert (out / "metrics.json").stat().st_mtime_ns == stamp  # untouched
    assert main(["train", str(recipe), "--out", str(out), "--no-progress", "--overwrite"]) == 0


def test_resume_without_a_checkpoint_says_so_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["train", str(_recipe(tmp_path)), "--out", str(out), "--resume"]) == 1
    assert "no checkpoint to resume" in capsys.readouterr().err
    assert not out.exists()
