"""The bad-input corpus (issue 13, item 7): one row per mistake a user can make.

Each row does what a user would (load and train a recipe, call a part, export a model,
start a second run into a busy folder) and states the nnblocks exception it must raise and
the words its message must hold: the place (recipe key, file:line, part, slot, folder) and
what was wrong. Rows run through the public entry points only (``load_recipe``,
``check_recipe``, ``run_recipe``, ``nnblocks.cli.main``, parts), so the same rows can be run
against an older version of the library to count how many used to end in a traceback or be
accepted silently (``baseline_count.py`` beside this file).

Add a row with every bug fixed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import nnblocks
from nnblocks import errors

BASE: dict[str, Any] = {
    "name": "wine_small",
    "seed": 0,
    "data": {"name": "wine"},
    "model": {"name": "mlp", "hidden": [8]},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "threads": 1},
}


@dataclasses.dataclass
class Case:
    id: str
    action: Callable[[Path], Any]
    error: str  # the class's name in nnblocks.errors
    words: tuple[str, ...]  # the message must hold each (the place, what was wrong)


# -- actions -----------------------------------------------------------------------------


def write_recipe(tmp: Path, recipe: dict[str, Any] | None = None, text: str | None = None) -> Path:
    path = tmp / "r.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(recipe or BASE, sort_keys=False), encoding="utf-8")
    return path


def train(*overrides: str, recipe: dict[str, Any] | None = None, resume: bool = False) -> Callable:
    """Load, check and train a recipe with ``--set`` overrides into ``tmp/run``."""

    def action(tmp: Path) -> Any:
        from nnblocks.experiment import check_recipe, load_recipe, run_recipe

        loaded = load_recipe(write_recipe(tmp, recipe), list(overrides))
        check_recipe(loaded)
        return run_recipe(loaded, tmp / "run", progress=False, resume=resume)

    return action


def train_file(text: str | bytes) -> Callable:
    def action(tmp: Path) -> Any:
        from nnblocks.experiment import check_recipe, load_recipe, run_recipe

        path = tmp / "r.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        loaded = load_recipe(path)
        check_recipe(loaded)
        return run_recipe(loaded, tmp / "run", progress=False)

    return action


def with_recipe(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        node = out
        *head, last = dotted.split("__")
        for piece in head:
            node = node.setdefault(piece, {})
        node[last] = value
    return out


def call_attention(*args: Any, **kwargs: Any) -> Callable:
    def action(tmp: Path) -> Any:
        part = nnblocks.build("mha", "attention", dim=16, heads=4)
        return part(*args, **kwargs)

    return action


def call_block(*args: Any, **kwargs: Any) -> Callable:
    def action(tmp: Path) -> Any:
        block = nnblocks.build("transformer", "block", dim=16, heads=4)
        return block(*args, **kwargs)

    return action


class WrongWidth(torch.nn.Module):
    """A user attention whose output is 8 wide in a 16-wide slot."""

    def __init__(self, dim: int = 16, heads: int = 2):
        super().__init__()
        self.proj = torch.nn.Linear(dim, 8)

    def forward(self, x, mask=None, causal=False):
        return self.proj(x)  # [B, T, 8]: does not fit


class WrongRank(WrongWidth):
    """A user attention that pools away the time axis."""

    def forward(self, x, mask=None, causal=False):
        return x.mean(1)  # [B, D]: does not fit


def swapped_lm(part: torch.nn.Module) -> Callable:
    def action(tmp: Path) -> Any:
        from nnblocks.surgery import swap

        model = nnblocks.build(
            {"name": "transformer_lm", "dim": 16, "heads": 2, "layers": 1}, "model", vocab_size=20
        )
        swap(model, "decoder.layers.*.self_attention", part)
        return model(torch.randint(3, 20, (2, 5)))

    return action


def cli(*argv: str, make_model: bool = False) -> Callable:
    """``nnblocks ARGV`` in this process; RECIPE and MODEL are replaced by paths in tmp."""

    def action(tmp: Path) -> Any:
        from nnblocks.cli import main

        recipe = write_recipe(tmp)
        if make_model:
            model = nnblocks.build(
                {
                    "name": "transformer_seq2seq",
                    "dim": 16,
                    "heads": 2,
                    "encoder_layers": 1,
                    "decoder_layers": 1,
                },
                "model",
                src_vocab_size=20,
                tgt_vocab_size=20,
            )
            nnblocks.save(model, tmp / "model")
        args = [a.replace("RECIPE", str(recipe)).replace("TMP", str(tmp)) for a in argv]
        code = main(args)
        if code:
            raise _CLIFailed(code)
        return code

    return action


class _CLIFailed(Exception):
    """The command returned non-zero; its stderr is what the row checks."""


def run_twice(*first: str, second: tuple[str, ...] = (), resume: bool = False) -> Callable:
    """A finished run in ``tmp/run``, then a second one into the same folder."""

    def action(tmp: Path) -> Any:
        from nnblocks.experiment import load_recipe, run_recipe

        path = write_recipe(tmp)
        run_recipe(load_recipe(path, list(first)), tmp / "run", progress=False)
        return run_recipe(
            load_recipe(path, list(second)), tmp / "run", progress=False, resume=resume
        )

    return action


def busy_folder(tmp: Path) -> Any:
    """Another process holds the run folder (its lock and its pid/host beside it)."""
    from filelock import FileLock

    from nnblocks.experiment import load_recipe, run_recipe

    folder = tmp / "run"
    folder.mkdir()
    lock = FileLock(str(folder / ".nnblocks.lock"))
    lock.acquire()
    (folder / ".nnblocks.owner.json").write_text(
        json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "started": "earlier"})
    )
    try:
        return run_recipe(load_recipe(write_recipe(tmp)), folder, progress=False)
    finally:
        lock.release()


def resume_after_edit(tmp: Path) -> Any:
    """A run with checkpoints, then ``--resume`` with another model width."""
    from nnblocks.experiment import load_recipe, run_recipe

    path = write_recipe(tmp)
    run_recipe(load_recipe(path), tmp / "run", progress=False)
    (tmp / "run" / "metrics.json").unlink()  # as if it had been interrupted
    return run_recipe(
        load_recipe(path, ["model.hidden=[12]"]), tmp / "run", progress=False, resume=True
    )


def resume_corrupt(tmp: Path) -> Any:
    """``--resume`` from a checkpoint whose training state was tampered with."""
    from nnblocks.experiment import load_recipe, run_recipe

    path = write_recipe(tmp)
    run_recipe(load_recipe(path), tmp / "run", progress=False)
    (tmp / "run" / "metrics.json").unlink()
    state = tmp / "run" / "checkpoints" / "last" / "training.json"
    state.write_text(state.read_text().replace('"epoch"', '"epoch" ', 1))
    return run_recipe(load_recipe(path), tmp / "run", progress=False, resume=True)


DUPLICATE = """\
name: dup
data: {name: wine}
model: {name: mlp}
train:
  epochs: 1
  epochs: 2
"""

NOT_UTF8 = b"name: latin\ndata: {name: wine}\ndescription: caf\xe9\nmodel: {name: mlp}\n"

BAD_YAML = "name: x\ndata: {name: wine\nmodel: {name: mlp}\n"

# -- the corpus --------------------------------------------------------------------------

CASES = [
    # recipe keys: types
    Case("epochs-float", train("train.epochs=1.5"), "SpecError", ("train.epochs", "int", "1.5")),
    Case("epochs-zero", train("train.epochs=0"), "SpecError", ("train.epochs", "> 0")),
    Case("epochs-negative", train("train.epochs=-2"), "SpecError", ("train.epochs", "-2")),
    Case("lr-negative", train("train.lr=-0.1"), "SpecError", ("train.lr", "> 0")),
    Case("lr-string", train("train.lr=fast"), "SpecError", ("train.lr", "fast")),
    Case("lr-list-negative", train("train.lr=[0.01, -1]"), "SpecError", ("train.lr", "-1")),
    Case("batch-zero", train("train.batch_size=0"), "SpecError", ("train.batch_size",)),
    Case("batch-float", train("train.batch_size=2.0"), "SpecError", ("train.batch_size", "int")),
    Case(
        "valid-batch-zero",
        train("train.valid_batch_size=0"),
        "SpecError",
        ("train.valid_batch_size",),
    ),
    Case(
        "deterministic-string-no",
        train("train.deterministic='no'"),
        "SpecError",
        ("train.deterministic", "'no'"),
    ),
    Case(
        "deterministic-int",
        train("train.deterministic=1"),
        "SpecError",
        ("train.deterministic", "true or false"),
    ),
    Case("tensorboard-int", train("train.tensorboard=1"), "SpecError", ("train.tensorboard",)),
    Case(
        "grad-accumulation-zero",
        train("train.grad_accumulation=0"),
        "SpecError",
        ("train.grad_accumulation",),
    ),
    Case("clip-negative", train("train.clip_grad=-1"), "SpecError", ("train.clip_grad",)),
    Case("wd-negative", train("train.wd=-0.1"), "SpecError", ("train.wd", ">= 0")),
    Case("threads-zero", train("train.threads=0"), "SpecError", ("train.threads",)),
    Case("show-negative", train("train.show=-1"), "SpecError", ("train.show",)),
    Case("metrics-not-list", train("train.metrics=accuracy"), "SpecError", ("train.metrics",)),
    Case("seed-float", train("seed=1.5"), "SpecError", ("seed", "int")),
    Case("seed-negative", train("seed=-1"), "SpecError", ("seed", ">= 0")),
    Case("plugins-not-list", train("plugins=my_parts.py"), "SpecError", ("plugins", "list")),
    # recipe keys: allowed values and unknown keys with close matches
    Case("unknown-top-level", train("modle.dim=3"), "SpecError", ("modle", "Did you mean `model`")),
    Case(
        "unknown-train-key",
        train("train.batchsize=8"),
        "SpecError",
        ("train.batchsize", "batch_size"),
    ),
    Case(
        "mixed-precision-fp8",
        train("train.mixed_precision=fp8"),
        "SpecError",
        ("train.mixed_precision", "bf16"),
    ),
    Case("audit-value", train("train.audit=loud"), "SpecError", ("train.audit", "warn")),
    Case(
        "hybridize-value", train("train.hybridize=fast"), "SpecError", ("train.hybridize", "auto")
    ),
    Case("strategy-value", train("train.strategy=horovod"), "SpecError", ("train.strategy", "ddp")),
    Case(
        "activations-int",
        train("train.checkpoint_activations=5"),
        "SpecError",
        ("train.checkpoint_activations",),
    ),
    # optimizer, schedule, early stopping, time limit, checkpointing, evaluation: up front
    Case(
        "optimizer-unknown",
        train("train.opt=adamx"),
        "SpecError",
        ("train.opt", "Did you mean `adam"),
    ),
    Case(
        "optimizer-option",
        train("train.opt={name: adamw, betaz: [0.9, 0.99]}"),
        "SpecError",
        ("train.opt", "betaz", "betas"),
    ),
    Case(
        "schedule-unknown", train("train.schedule=cosin"), "SpecError", ("train.schedule", "cosine")
    ),
    Case(
        "schedule-option",
        train("train.schedule={name: cosine, warmpu: 0.1}"),
        "SpecError",
        ("train.schedule", "warmpu"),
    ),
    Case(
        "early-stopping-zero",
        train("train.early_stopping=0"),
        "SpecError",
        ("train.early_stopping",),
    ),
    Case(
        "early-stopping-bool",
        train("train.early_stopping=true"),
        "SpecError",
        ("train.early_stopping",),
    ),
    Case(
        "early-stopping-option",
        train("train.early_stopping={patience: 2, min_delt: 0.1}"),
        "SpecError",
        ("train.early_stopping", "min_delt", "min_delta"),
    ),
    Case("time-limit-zero", train("train.time_limit=0"), "SpecError", ("train.time_limit",)),
    Case(
        "time-limit-string",
        train("train.time_limit=soon"),
        "SpecError",
        ("train.time_limit", "soon"),
    ),
    Case(
        "checkpoint-string",
        train("train.checkpoint=maybe"),
        "SpecError",
        ("train.checkpoint", "maybe"),
    ),
    Case(
        "checkpoint-steps-zero",
        train("train.checkpoint.every_n_steps=0"),
        "SpecError",
        ("train.checkpoint.every_n_steps", "> 0"),
    ),
    Case(
        "checkpoint-minutes-negative",
        train("train.checkpoint.every_n_minutes=-1"),
        "SpecError",
        ("train.checkpoint.every_n_minutes",),
    ),
    Case(
        "checkpoint-key-typo",
        train("train.checkpoint.evry_n_steps=3"),
        "SpecError",
        ("train.checkpoint.evry_n_steps", "every_n_steps"),
    ),
    Case(
        "evaluate-option",
        train("train.evaluate={batch_sise: 8}"),
        "SpecError",
        ("train.evaluate", "batch_sise", "batch_size"),
    ),
    Case("eval-option", train("eval={limit: 3}"), "SpecError", ("eval", "limit")),
    Case(
        "teacher-forcing-range",
        train("train.teacher_forcing=1.5"),
        "SpecError",
        ("train.teacher_forcing", "[0, 1]"),
    ),
    Case(
        "teacher-forcing-no-attribute",
        train("train.teacher_forcing=0.5"),
        "SpecError",
        ("train.teacher_forcing", "teacher_forcing"),
    ),
    Case(
        "teacher-forcing-option",
        train("train.teacher_forcing={mode: linear, strat: 1.0}"),
        "SpecError",
        ("train.teacher_forcing", "strat"),
    ),
    # keys other sections add
    Case(
        # fine_tune.epochs defaults to train.epochs; a given value must be positive.
        "fine-tune-zero-epochs",
        train("train.fine_tune={epochs: 0, freeze_epochs: 1}"),
        "SpecError",
        ("train.fine_tune.epochs",),
    ),
    Case(
        "fine-tune-lr-mult",
        train("train.fine_tune={epochs: 1, lr_mult: 0}"),
        "SpecError",
        ("train.fine_tune.lr_mult",),
    ),
    Case(
        "continual-strategy",
        train("continual={strategy: magic}"),
        "SpecError",
        ("continual.strategy", "rehearsal"),
    ),
    Case(
        "surgery-row",
        train("model.surgery=[{pattern: 1, spec: rms}]"),
        "SpecError",
        ("model", "pattern"),
    ),
    Case("model-from-not-path", train("model.from=3"), "SpecError", ("model", "from")),
    Case(
        "tune-direction",
        train("tune={space: {train.lr: [0.1]}, direction: up}"),
        "SpecError",
        ("tune.direction", "maximize"),
    ),
    Case(
        "tune-range",
        train("tune={space: {model.dim: {int: [64]}}}"),
        "SpecError",
        ("tune.space", "model.dim"),
    ),
    # run names stay inside runs/
    Case("name-escapes", train("name=../../etc"), "SpecError", ("name", "..")),
    Case("name-nested", train("name=a/b"), "SpecError", ("name", "a/b")),
    # data and model specs, checked against the registry's signatures
    Case("data-option-typo", train("data.nme=1"), "SpecError", ("data", "nme")),
    Case("data-unknown", train("data.name=wien"), "SpecError", ("wien", "wine")),
    Case("model-option-typo", train("model.hiden=[4]"), "SpecError", ("hiden", "hidden")),
    Case("model-wrong-kind", train("model.norm=mha"), "SpecError", ("norm", "`mha`")),
    Case(
        "data-missing",
        train(recipe={k: v for k, v in BASE.items() if k != "data"}),
        "SpecError",
        ("data",),
    ),
    # files
    Case(
        "file-duplicate-key", train_file(DUPLICATE), "SpecError", ("r.yaml:6", "epochs", "line 5")
    ),
    Case("file-not-utf8", train_file(NOT_UTF8), "SpecError", ("r.yaml:3", "UTF-8")),
    Case("file-bad-yaml", train_file(BAD_YAML), "SpecError", ("r.yaml:3",)),
    Case("file-not-mapping", train_file("- a\n- b\n"), "SpecError", ("r.yaml", "mapping")),
    Case(
        "file-wrong-type-line",
        train_file(yaml.safe_dump(with_recipe(train__epochs="two"))),
        "SpecError",
        ("r.yaml:", "train.epochs", "two"),
    ),
    # part and model boundaries
    Case(
        "attention-int-input",
        call_attention(torch.randint(0, 5, (2, 5, 16))),
        "ShapeError",
        ("mha", "float"),
    ),
    Case(
        "attention-causal-string",
        call_attention(torch.randn(2, 5, 16), causal="yes"),
        "SpecError",
        ("mha", "causal", "'yes'"),
    ),
    Case(
        "attention-causal-int",
        call_attention(torch.randn(2, 5, 16), causal=1),
        "SpecError",
        ("mha", "causal"),
    ),
    Case(
        "block-int-input",
        call_block(torch.randint(0, 5, (2, 5, 16))),
        "ShapeError",
        ("block", "float"),
    ),
    Case(
        "block-causal-string",
        call_block(torch.randn(2, 5, 16), causal="no"),
        "SpecError",
        ("block", "causal"),
    ),
    Case(
        "slot-output-width",
        swapped_lm(WrongWidth()),
        "ShapeError",
        ("decoder.layers.0.self_attention", "[2, 5, 8]"),
    ),
    Case(
        "slot-output-rank",
        swapped_lm(WrongRank()),
        "ShapeError",
        ("decoder.layers.0.self_attention", "[2, 16]"),
    ),
    # commands
    Case(
        "export-one-of-two-inputs",
        cli(
            "export",
            "TMP/model",
            "--onnx",
            "TMP/m.onnx",
            "--input",
            "2x5:tokens=20",
            make_model=True,
        ),
        "SpecError",
        ("src", "tgt_in", "2 inputs"),
    ),
    Case(
        # the seq2seq model takes src, tgt_in and two optional masks: five is too many
        "audit-too-many-inputs",
        cli("audit", "TMP/model", *["--input", "2x5:tokens=20"] * 5, make_model=True),
        "SpecError",
        ("tgt_in", "5 inputs"),
    ),
    # run folders: locks, finished runs, resume
    Case("folder-busy", busy_folder, "TrainingError", ("run", "process", str(os.getppid()))),
    Case("folder-finished", run_twice(), "TrainingError", ("finished run", "--overwrite")),
    Case(
        "resume-without-checkpoint",
        train(resume=True),
        "CheckpointError",
        ("--resume", "no checkpoint"),
    ),
    Case("resume-another-model", resume_after_edit, "TrainingError", ("model.hidden", "[12]")),
    Case(
        "out-is-a-file",
        cli("train", "RECIPE", "--out", "RECIPE"),
        "TrainingError",
        ("r.yaml", "is a file"),
    ),
    Case("resume-corrupt-checkpoint", resume_corrupt, "CheckpointError", ("training.json",)),
    Case(
        "resume-and-overwrite",
        cli("train", "RECIPE", "--out", "TMP/run", "--resume", "--overwrite"),
        "TrainingError",
        ("--overwrite",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_named(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    expected = getattr(errors, case.error)
    try:
        case.action(tmp_path)
    except _CLIFailed:
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "Traceback" not in err, err
        # The CLI prints the error class's message; it must name the place too.
        message = err
    except expected as exc:
        message = str(exc)
    else:
        pytest.fail(f"{case.id}: accepted silently")
    for word in case.words:
        assert word in message, f"{case.id}: {word!r} not in: {message}"


def test_a_resume_with_new_settings_records_them_beside_the_original(tmp_path: Path) -> None:
    from nnblocks.experiment import load_recipe, run_recipe

    path = write_recipe(tmp_path)
    run_recipe(load_recipe(path), tmp_path / "run", progress=False)
    original = (tmp_path / "run" / "recipe.yaml").read_text()
    run_recipe(load_recipe(path, ["train.epochs=2"]), tmp_path / "run", progress=False, resume=True)
    assert (tmp_path / "run" / "recipe.yaml").read_text() == original
    note = (tmp_path / "run" / "recipe.resume-1.yaml").read_text()
    assert "# changed on resume: train.epochs: 1 -> 2" in note
    assert yaml.safe_load(note)["train"]["epochs"] == 2


def test_overwrite_replaces_a_finished_run(tmp_path: Path) -> None:
    from nnblocks.experiment import load_recipe, run_recipe

    path = write_recipe(tmp_path)
    run_recipe(load_recipe(path), tmp_path / "run", progress=False)
    (tmp_path / "run" / "stale.txt").write_text("from the old run")
    run_recipe(load_recipe(path), tmp_path / "run", progress=False, overwrite=True)
    assert not (tmp_path / "run" / "stale.txt").exists()
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert not (tmp_path / "run" / ".nnblocks.owner.json").exists()  # released


def test_the_recipe_is_validated_once_into_a_typed_object(tmp_path: Path) -> None:
    from nnblocks.experiment import check_recipe, load_recipe
    from nnblocks.experiment.recipe import Recipe, validate_recipe

    recipe = load_recipe(write_recipe(tmp_path), ["train.lr=3e-3"])
    assert isinstance(recipe, Recipe) and recipe.settings.train.lr == 0.003
    assert recipe.settings.train.epochs == 1 and isinstance(recipe.settings.train.epochs, int)
    assert validate_recipe(recipe) is recipe  # no second validation
    checked = check_recipe(recipe)
    assert checked.recipe is recipe and checked.model is not None and checked.data is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["--set", "train.epochs=1.5"],
        ["--set", "train.checkpoint.every_n_steps=0"],
        ["--set", "train.opt=adamx"],
    ],
)
def test_cli_train_with_an_invalid_option_exits_at_once_writing_nothing(tmp_path, argv):
    import subprocess
    import sys

    recipe = write_recipe(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "nnblocks.cli", "train", str(recipe), "--out", str(out), *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
