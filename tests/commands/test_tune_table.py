"""`nnblocks tune` prints one row per trial, narrow enough for the terminal."""

import pytest
from rich.console import Console

from nnblocks.commands.tune import trials_table


def test_trials_table_fits_an_80_column_terminal():
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="t", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(
        lambda t: (
            t.suggest_float("train.lr", 1e-4, 1e-2, log=True)
            + len(t.suggest_categorical("model.decoder.self_attention", ["mha", "gqa", "linear"]))
        ),
        n_trials=5,
    )
    console = Console(width=80, record=True)
    console.print(trials_table(study))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "self_attention" in text and "lr" in text  # short column names
    assert sum(1 for line in text.splitlines() if "complete" in line) == 5
