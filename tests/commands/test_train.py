"""`nnblocks train`: one run per folder from the command line."""

import importlib.util
import json
import re

import pytest
import torch
import yaml

from nnblocks.cli import main
from nnblocks.commands.train_summary import headline, summary_rows
from nnblocks.train import plots


def _recipe(tmp_path, **train):
    path = tmp_path / "wine.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "wine_cli",
                "data": {"name": "wine"},
                "model": {"name": "mlp", "hidden": [8]},
                "train": {"epochs": 1, "batch_size": 32, "threads": 1, **train},
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


def _train(tmp_path, capsys, *extra, **train):
    recipe, out = _recipe(tmp_path, **train), tmp_path / "run"
    assert main(["train", str(recipe), "--out", str(out), "--no-progress", *extra]) == 0
    return out, capsys.readouterr().out


def test_tensorboard_recipe_key_writes_event_files(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out, printed = _train(tmp_path, capsys, tensorboard=True)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert f"tensorboard --logdir {out / 'tensorboard'}" in printed


def test_tensorboard_flag_turns_the_key_on_and_the_run_folder_records_it(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    out, _ = _train(tmp_path, capsys, "--tensorboard")
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert yaml.safe_load((out / "recipe.yaml").read_text())["train"]["tensorboard"] is True


def test_no_tensorboard_folder_without_the_key(tmp_path, capsys):
    out, printed = _train(tmp_path, capsys)
    assert not (out / "tensorboard").exists() and "TensorBoard" not in printed


def test_train_ends_with_the_headline_and_says_where_the_views_are(tmp_path, capsys):
    out, printed = _train(tmp_path, capsys)
    metrics = json.loads((out / "metrics.json").read_text())
    lines = printed.strip().splitlines()
    # the last line is one sentence: the compared metric of ablations (test accuracy here)
    expected = f"{100 * metrics['test_accuracy']:.1f}%"
    assert re.fullmatch(
        rf"wine_cli: test accuracy {expected} after 1 epoch \(\d+:\d\d\)\.", lines[-1]
    )
    assert f"loss curves: {out / 'loss_curves.png'}" in printed
    assert f"model card:  {out / 'model' / 'README.md'}" in printed
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in lines if "│" in line}
    assert rows["epochs_run"] == "1" and rows["test_n"] == str(metrics["test_n"])
    assert (
        rows["valid_accuracy"] == f"{metrics['accuracy']:#.4g}"
    )  # the history's name, split named
    assert not {"epoch", "lr", "accuracy"} & set(rows)  # repeats and settings dropped


def test_headline_names_the_monitored_metric(tmp_path, capsys):
    out, printed = _train(tmp_path, capsys, monitor="valid_loss")
    loss = json.loads((out / "metrics.json").read_text())["valid_loss"]
    assert printed.strip().splitlines()[-1].startswith(f"wine_cli: valid loss {loss:.4g} after")


def test_headline_sentence_for_a_seq2seq_run():
    metrics = {"test_exact_match": 0.998, "test_token_accuracy": 0.9995, "test_loss": 0.01,
               "valid_loss": 0.02, "epochs_run": 3, "train_seconds": 121.6}  # fmt: skip
    recipe = {"name": "numbers_de", "train": {"epochs": 3}}
    assert headline(metrics, recipe, "numbers_de") == (
        "numbers_de: test exact match 99.8% after 3 epochs (2:02)."
    )
    assert headline({**metrics, "train_seconds": 3725.0}, recipe, "x").endswith("(1:02:05).")


def test_summary_rows_show_counts_as_integers_and_drop_repeats():
    metrics = {"epoch": 199.0, "epochs_run": 200, "lr": 1e-6, "test_tokens": 200.0,
               "accuracy": 0.5, "valid_accuracy": 0.5, "valid_loss": 0.25, "test_bleu": None,
               "teacher_forcing": 0.5}  # fmt: skip
    rows = dict(summary_rows(metrics))
    assert rows == {"epochs_run": "200", "test_tokens": "200", "valid_accuracy": "0.5000",
                    "valid_loss": "0.2500", "test_bleu": "n/a", "teacher_forcing": "0.5000"}  # fmt: skip


class _Log:
    """What the loss-curve plot reads of a Learner: per-step losses and per-epoch history."""

    def __init__(self, losses, valid):
        self.loss_log = [torch.tensor(losses)]
        self.history = [{"valid_loss": v} for v in valid]


@pytest.mark.parametrize(
    ("losses", "valid", "scale"),
    [([2.0, 1.0, 0.5, 0.1], [1.5, 0.2], "log"), ([0.5, 0.0, -0.3, -0.5], [0.1, -0.2], "linear")],
)
def test_loss_curves_use_a_log_axis_when_every_loss_is_positive(
    tmp_path, monkeypatch, losses, valid, scale
):
    drawn = []
    real_save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: drawn.append(fig) or real_save(fig, path))
    png = plots.plot_loss_curves(_Log(losses, valid), tmp_path / "loss.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert drawn[0].axes[0].get_yscale() == scale


def test_headline_of_a_language_model_is_its_perplexity():
    metrics = {"test_accuracy": 0.41, "test_perplexity": 5.123, "test_loss": 1.63,
               "test_tokens": 4096, "epochs_run": 2, "train_seconds": 65.0}  # fmt: skip
    assert headline(metrics, {"train": {}}, "lm_python") == (
        "lm_python: test perplexity 5.123 after 2 epochs (1:05)."
    )


def test_tensorboard_without_the_package_fails_before_anything_is_written(
    tmp_path, capsys, monkeypatch
):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "tensorboard" else real(name, *a),
    )
    out = tmp_path / "run"
    recipe = _recipe(tmp_path, tensorboard=True)
    assert main(["train", str(recipe), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "train.tensorboard" in err and "nnblocks[logging]" in err
    assert not out.exists()
