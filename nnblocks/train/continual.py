"""Continual learning: keep what a model knew while it learns a new task.

Three callbacks, the baseline strategies of the Avalanche library (Lomonaco et al. 2021)
with its definitions:

- ``Rehearsal`` (Avalanche's ``ReplayPlugin`` with a reservoir buffer): a buffer of
  earlier training examples, filled by reservoir sampling (Vitter 1985: after ``n``
  examples each is in the buffer with probability ``size / n``), is mixed into every
  training batch: a fraction ``fraction`` of the mixed batch comes from the buffer
  (Avalanche's default, as many memory examples as new ones, is ``fraction=0.5``). The
  buffer is saved with the run (``save``) so the next task can use it (``load``).
- ``EWC`` (Kirkpatrick et al. 2017; Avalanche's ``EWCPlugin``, mode "separate"): after a
  task, the diagonal Fisher information ``F`` of each parameter is estimated on that task's
  training data as the mean over batches of the squared gradient of the loss, and later
  tasks add ``lam * sum_t sum_i F_t,i (theta_i - theta*_t,i)^2`` to the loss (Avalanche's
  scaling: no factor 1/2).
- ``LwF`` (Li & Hoiem 2016; Avalanche's ``LwFPlugin``): the model as it was before the new
  task is the teacher; the loss gets ``alpha * KL(softmax(teacher / T) || softmax(student
  / T))`` (batch mean) over the teacher's outputs - for a head grown by
  ``nnblocks.surgery.grow`` only its old units, as Avalanche restricts to the units active
  in earlier tasks.

A class-incremental head grows with ``nnblocks.surgery.grow(model, "head", n)``, keeping
the old rows. ``save_state``/``load_state`` write and read what a run keeps for the next
task (``continual/`` in the run folder); recipes use them through a ``continual:`` section
and ``nnblocks train RECIPE --from RUN``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nnblocks.errors import CheckpointError, DataError, SpecError, TrainingError
from nnblocks.io.atomic import atomic_write_text
from nnblocks.io.safetensors_io import read_metadata, read_tensors, write_tensors
from nnblocks.train.callback import Callback

if TYPE_CHECKING:
    from nnblocks.train.learner import Learner

__all__ = [
    "ReservoirBuffer",
    "Rehearsal",
    "EWC",
    "LwF",
    "fisher_information",
    "CONTINUAL_KEYS",
    "continual_callbacks",
    "save_state",
    "STATE_DIR",
]

STATE_DIR = "continual"
BUFFER_FILE = "rehearsal.safetensors"
EWC_FILE = "ewc.safetensors"
PAD = 0  # the pad id of every nnblocks tokenizer: shorter sequences are padded with it


def _pad_to(t: torch.Tensor, length: int) -> torch.Tensor:
    """``t`` padded with ``PAD`` along axis 1 to ``length`` (token sequences of one batch)."""
    if t.dim() < 2 or t.shape[1] == length:
        return t
    pad = t.new_full((t.shape[0], length - t.shape[1], *t.shape[2:]), PAD)
    return torch.cat([t, pad], dim=1)


def _stack(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Examples (no batch axis) stacked, sequences padded to the longest."""
    if rows[0].dim() == 0:
        return torch.stack(list(rows))
    length = max(r.shape[0] for r in rows)
    return torch.cat([_pad_to(r[None], length) for r in rows])


def _read_state(path: str | Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a state file ``save`` wrote.

    Raises:
        CheckpointError: a missing or invalid file (naming it and ``what`` it should hold).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: `{path}`")
    return read_tensors(path), read_metadata(path)


class ReservoirBuffer:
    """A fixed-size uniform sample of every training example seen (reservoir sampling).

    Args:
        size: how many examples it keeps.
        seed: seeds which examples are kept and which are drawn.
    """

    def __init__(self, size: int = 200, seed: int = 0):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise TrainingError(
                f"rehearsal buffer size must be a positive integer. Received: {size!r}"
            )
        self.size = size
        self.seen = 0
        self.columns: list[list[torch.Tensor]] = []  # per batch column, one tensor per example
        self.source = "the rehearsal buffer"  # names the file once loaded, for messages
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    def add(self, batch: Sequence[torch.Tensor]) -> None:
        """Offer every example of ``batch`` (a tuple of tensors, batch axis first)."""
        cpu = [t.detach().cpu() for t in batch]
        if not self.columns:
            self.columns = [[] for _ in cpu]
        for i in range(int(cpu[0].shape[0])):
            self.seen += 1
            if len(self) < self.size:
                for col, t in zip(self.columns, cpu):
                    col.append(t[i].clone())
                continue
            j = int(torch.randint(0, self.seen, (1,), generator=self.generator))
            if j < self.size:  # keeps each of the `seen` examples with probability size/seen
                for col, t in zip(self.columns, cpu):
                    col[j] = t[i].clone()

    def sample(self, n: int) -> list[torch.Tensor]:
        """``n`` examples drawn uniformly (with replacement when ``n`` exceeds the buffer)."""
        replace = n > len(self)
        if replace:
            idx = torch.randint(0, len(self), (n,), generator=self.generator)
        else:
            idx = torch.randperm(len(self), generator=self.generator)[:n]
        return [_stack([col[int(i)] for i in idx]) for col in self.columns]

    def check_fits(self, data: Any, *, where: str = "the new task") -> None:
        """Raise unless the buffer's examples have the new data's columns, dtypes and shapes.

        Sequences (integer tensors) may differ in length; everything else must match.

        Raises:
            DataError: naming the buffer's file and the column that does not fit.
        """
        tensors = getattr(data, "tensors", None)
        if not self.columns or tensors is None:
            return
        if len(tensors) != len(self.columns):
            raise DataError(
                f"{self.source} holds examples of {len(self.columns)} tensors, but {where} has "
                f"{len(tensors)} per example. Expected the same inputs and targets as the "
                "task it was filled on."
            )
        for i, (col, t) in enumerate(zip(self.columns, tensors)):
            mine, theirs = col[0], t[0]
            seq = not mine.is_floating_point() and mine.dim() >= 1
            same = mine.shape[1:] == theirs.shape[1:] if seq else mine.shape == theirs.shape
            if mine.dtype != theirs.dtype or mine.dim() != theirs.dim() or not same:
                raise DataError(
                    f"{self.source}: column {i} holds examples of shape {tuple(mine.shape)} "
                    f"{mine.dtype}, but {where} has {tuple(theirs.shape)} {theirs.dtype}. "
                    "Expected the same per-example shape and dtype (sequences may differ in "
                    "length)."
                )

    def save(self, path: str | Path) -> Path:
        """Write the buffer as one safetensors file (columns padded and stacked)."""
        tensors = {f"column{i}": _stack(col) for i, col in enumerate(self.columns)}
        meta = {"seen": str(self.seen), "size": str(self.size)}
        write_tensors(Path(path), tensors, metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, *, seed: int = 0) -> ReservoirBuffer:
        """Read a buffer ``save`` wrote.

        Raises:
            CheckpointError: a missing or invalid file (naming it).
        """
        tensors, meta = _read_state(path, "rehearsal buffer")
        buffer = cls(int(meta.get("size", len(next(iter(tensors.values()))))), seed=seed)
        n = len(tensors)
        buffer.columns = [list(tensors[f"column{i}"].unbind(0)) for i in range(n)]
        buffer.seen = int(meta.get("seen", len(buffer)))
        buffer.source = f"rehearsal buffer `{Path(path)}`"
        return buffer


def _cat(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    old = old.to(new.device)
    if new.dim() >= 2 and new.shape[2:] == old.shape[2:] and new.shape[1] != old.shape[1]:
        length = max(new.shape[1], old.shape[1])
        new, old = _pad_to(new, length), _pad_to(old, length)
    return torch.cat([new, old])


class Rehearsal(Callback):
    """Mix examples of earlier tasks into each training batch; keep a reservoir of this one.

    Args:
        buffer: the buffer of earlier examples (``ReservoirBuffer.load``); default: a new,
            empty one (the first task only fills it).
        fraction: the share of each mixed training batch drawn from the buffer, in [0, 1).
        size: the size of a new buffer.
        seed: seeds a new buffer.

    Raises:
        TrainingError: ``fraction`` outside [0, 1).
        DataError: (at ``before_fit``) a buffer whose examples do not fit the training data.
    """

    order = 5  # before everything that reads the batch

    def __init__(
        self,
        buffer: ReservoirBuffer | None = None,
        fraction: float = 0.5,
        size: int = 200,
        seed: int = 0,
    ):
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not 0 <= fraction < 1
        ):
            raise TrainingError(
                f"Received an invalid value for `fraction` of Rehearsal: expected a number in "
                f"[0, 1). Received: fraction={fraction!r}"
            )
        self.buffer = buffer if buffer is not None else ReservoirBuffer(size, seed)
        self.fraction = float(fraction)
        self._new: tuple[Any, ...] | None = None
        self._incoming: ReservoirBuffer | None = None

    def before_fit(self, learn: Learner) -> None:
        self.buffer.check_fits(learn.splits.get("train"), where="the training data")
        # As in Avalanche, the buffer replayed during a task holds earlier tasks only; this
        # task's examples go into a copy that becomes the buffer when the fit ends.
        self._incoming = copy.deepcopy(self.buffer)

    def after_fit(self, learn: Learner) -> None:
        if self._incoming is not None and learn.error is None:
            self.buffer = self._incoming
        self._incoming = None

    def before_batch(self, learn: Learner) -> None:
        if not learn.training:
            return
        self._new = learn.batch
        n = len(self.buffer)
        if n == 0 or self.fraction == 0:
            return
        size = int(learn.batch[0].shape[0])
        m = max(1, round(size * self.fraction / (1 - self.fraction)))
        memory = self.buffer.sample(m)
        learn.batch = tuple(_cat(new, old) for new, old in zip(learn.batch, memory))

    def after_batch(self, learn: Learner) -> None:
        if learn.training and self._new is not None and self._incoming is not None:
            self._incoming.add(self._new)  # only this task's examples enter the reservoir
            self._new = None


def fisher_information(learn: Learner, data: Any = None) -> dict[str, torch.Tensor]:
    """Diagonal Fisher information of ``learn.model``'s parameters on ``data``.

    As Avalanche computes EWC importances: the model in eval mode, one backward pass of
    the (batch-mean) loss per batch, the squared gradients summed and divided by the
    number of batches.

    Args:
        learn: the Learner (its model, loss, batching and device).
        data: the data (default: the training split).

    Returns:
        ``{parameter name: importance}`` for every parameter that got a gradient (CPU).
    """
    model = learn.model
    loader = learn.make_loader(learn.splits["train"] if data is None else data)
    if hasattr(loader, "set_epoch"):
        loader.set_epoch(0, 0)
    was_training = model.training
    model.eval()
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(True)
    total: dict[str, torch.Tensor] = {}
    batches = 0
    try:
        for batch in loader:
            model.zero_grad(set_to_none=True)
            n = learn.n_inputs
            loss = learn.loss_func(model(*batch[:n]), *batch[n:])
            loss.backward()
            for name, p in model.named_parameters():
                if p.grad is not None:
                    g2 = p.grad.detach().pow(2)
                    total[name] = total[name] + g2 if name in total else g2
            batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        for name, p in model.named_parameters():
            p.requires_grad_(flags[name])
        model.train(was_training)
    return {k: (v / max(batches, 1)).cpu() for k, v in total.items()}


def _overlap(current: torch.Tensor, saved: torch.Tensor) -> torch.Tensor:
    """``current`` cut to ``saved``'s shape (a grown head keeps its old rows first)."""
    if current.shape == saved.shape:
        return current
    return current[tuple(slice(0, s) for s in saved.shape)]


class EWC(Callback):
    """Elastic weight consolidation: pull important parameters toward earlier tasks' values.

    Args:
        lam: the penalty's weight (Avalanche's ``ewc_lambda``).
        penalties: earlier tasks' ``(importance, anchor)`` pairs (``EWC.load``).
        consolidate: after this fit, estimate this task's Fisher information on the
            training data and keep it (``penalties`` grows by one; ``save`` writes it).

    Raises:
        TrainingError: a negative ``lam``.
    """

    order = 25

    def __init__(
        self,
        lam: float = 100.0,
        penalties: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] | None = None,
        *,
        consolidate: bool = True,
    ):
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
            raise TrainingError(f"EWC lam must be a number >= 0. Received: lam={lam!r}")
        self.lam = float(lam)
        self.penalties = list(penalties or [])
        self.consolidate = consolidate
        self._moved: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = []

    def before_fit(self, learn: Learner) -> None:
        params = dict(learn.model.named_parameters())
        device = next(iter(params.values())).device if params else torch.device("cpu")
        self._moved = [
            (
                {k: v.to(device) for k, v in imp.items() if k in params},
                {k: v.to(device) for k, v in anchor.items() if k in params},
            )
            for imp, anchor in self.penalties
        ]

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """``sum_t sum_i F_t,i (theta_i - theta*_t,i)^2`` over the earlier tasks."""
        params = dict(model.named_parameters())
        total = torch.zeros((), device=next(iter(params.values())).device)
        for imp, anchor in self._moved:
            for name, f in imp.items():
                total = total + (f * (_overlap(params[name], f) - anchor[name]).pow(2)).sum()
        return total

    def before_backward(self, learn: Learner) -> None:
        if self._moved and self.lam:
            learn.loss_grad = learn.loss_grad + self.lam * self.penalty(learn.model)

    def after_fit(self, learn: Learner) -> None:
        if self.consolidate and learn.error is None:
            importance = fisher_information(learn)
            anchor = {
                n: p.detach().cpu().clone()
                for n, p in learn.model.named_parameters()
                if n in importance
            }
            self.penalties.append((importance, anchor))

    def save(self, path: str | Path) -> Path:
        tensors = {
            f"{t}.{kind}.{name}": value
            for t, pair in enumerate(self.penalties)
            for kind, values in zip(("importance", "anchor"), pair)
            for name, value in values.items()
        }
        write_tensors(Path(path), tensors, metadata={"tasks": str(len(self.penalties))})
        return Path(path)

    @staticmethod
    def load(path: str | Path) -> list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
        """The penalties ``save`` wrote.

        Raises:
            CheckpointError: a missing or invalid file (naming it).
        """
        tensors, meta = _read_state(path, "EWC state")
        n = int(meta.get("tasks", "0"))
        out: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = [
            ({}, {}) for _ in range(n)
        ]
        for key, value in tensors.items():
            t, kind, name = key.split(".", 2)
            out[int(t)][0 if kind == "importance" else 1][name] = value
        return out


class LwF(Callback):
    """Learning without forgetting: distil the model as it was before this fit into it.

    Args:
        alpha: the distillation loss's weight.
        temperature: the softmax temperature ``T`` of teacher and student.

    The teacher is a frozen copy of the model taken at ``before_fit``; its outputs ``[...,
    C_old]`` are compared with the first ``C_old`` outputs of the student.
    """

    order = 25

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0):
        for key, value in (("alpha", alpha), ("temperature", temperature)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise TrainingError(f"LwF {key} must be a positive number. Received: {value!r}")
        self.alpha, self.temperature = float(alpha), float(temperature)
        self.teacher: nn.Module | None = None

    def before_fit(self, learn: Learner) -> None:
        self.teacher = copy.deepcopy(learn.model).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def distillation(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        units = teacher.shape[-1]
        t = self.temperature
        log_p = torch.log_softmax(student[..., :units].reshape(-1, units).float() / t, dim=-1)
        q = torch.softmax(teacher.reshape(-1, units).float() / t, dim=-1)
        return nn.functional.kl_div(log_p, q, reduction="batchmean")

    def before_backward(self, learn: Learner) -> None:
        if self.teacher is None or not isinstance(learn.pred, torch.Tensor):
            return
        with torch.no_grad():
            old = self.teacher(*learn.inputs)
        learn.loss_grad = learn.loss_grad + self.alpha * self.distillation(learn.pred, old)

    def after_fit(self, learn: Learner) -> None:
        self.teacher = None  # the copy is only needed while this task trains


# recipe `continual:` section: key -> (type, meaning)
CONTINUAL_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "rehearsal": (dict, "{size: 200, fraction: 0.5}: replay a reservoir of earlier examples"),
    "ewc": (dict, "{lambda: 100}: elastic weight consolidation (Fisher from the old data)"),
    "lwf": (dict, "{alpha: 1, temperature: 2}: distil the model of the previous task"),
    "grow_head": (str, "module path of a linear head to widen to the data's num_classes"),
}
_OPTIONS = {
    "rehearsal": {"size", "fraction", "seed"},
    "ewc": {"lambda"},
    "lwf": {"alpha", "temperature"},
}


def _check_section(config: Any) -> dict[str, Any]:
    if not isinstance(config, Mapping):
        raise SpecError(
            f"expected a mapping with keys among {', '.join(CONTINUAL_KEYS)}. "
            f"Received: {config!r:.80}",
            path="continual",
        )
    for key, value in config.items():
        if key not in CONTINUAL_KEYS:
            raise SpecError(
                f"unknown key `{key}`. Known keys: {', '.join(CONTINUAL_KEYS)}",
                path=f"continual.{key}",
            )
        types, meaning = CONTINUAL_KEYS[key]
        value = {} if value is None and types is dict else value
        if not isinstance(value, types):
            raise SpecError(f"expected {meaning}. Received: {value!r:.80}", path=f"continual.{key}")
        unknown = (
            sorted(set(value) - _OPTIONS[key])
            if isinstance(value, Mapping) and key in _OPTIONS
            else []
        )
        if unknown:
            raise SpecError(
                f"unknown option(s) {unknown}; expected {', '.join(sorted(_OPTIONS[key]))}",
                path=f"continual.{key}",
            )
    return {k: ({} if v is None else v) for k, v in config.items()}


def continual_callbacks(config: Any, previous: str | Path | None) -> list[Callback]:
    """The callbacks a recipe's ``continual:`` section asks for.

    Args:
        config: the section, e.g. ``{"rehearsal": {"size": 500}, "ewc": {"lambda": 50}}``.
        previous: the folder of the run this one continues (``--from``), or None for the
            first task (which then only collects: a buffer, the Fisher information).

    Raises:
        SpecError: unknown keys or options (naming ``continual.<key>``).
        CheckpointError: ``previous`` lacks the state a strategy needs (naming the file).
    """
    config = _check_section(config)
    state = Path(previous) / STATE_DIR if previous is not None else None
    cbs: list[Callback] = []
    if "rehearsal" in config:
        opts = config["rehearsal"]
        buffer = None
        if state is not None:
            if not (state / BUFFER_FILE).is_file():
                raise CheckpointError(
                    f"continual.rehearsal: `{state / BUFFER_FILE}` not found: the run in --from "
                    "kept no rehearsal buffer (give its recipe a continual.rehearsal section)."
                )
            buffer = ReservoirBuffer.load(state / BUFFER_FILE, seed=int(opts.get("seed", 0)))
            buffer.size = int(opts.get("size", buffer.size))
        cbs.append(
            Rehearsal(
                buffer,
                fraction=float(opts.get("fraction", 0.5)),
                size=int(opts.get("size", 200)),
                seed=int(opts.get("seed", 0)),
            )
        )
    if "ewc" in config:
        penalties = None
        if state is not None:
            penalties = EWC.load(state / EWC_FILE)
        cbs.append(EWC(float(config["ewc"].get("lambda", 100.0)), penalties))
    if "lwf" in config and state is not None:  # the first task has no teacher yet
        opts = config["lwf"]
        cbs.append(LwF(float(opts.get("alpha", 1.0)), float(opts.get("temperature", 2.0))))
    return cbs


def save_state(folder: str | Path, callbacks: Sequence[Callback]) -> Path:
    """Write what the next task needs (buffer, EWC penalties) into ``folder/continual``.

    Returns:
        The folder written (``folder/continual``), with ``state.json`` listing its files.
    """
    out = Path(folder) / STATE_DIR
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for cb in callbacks:
        if isinstance(cb, Rehearsal) and len(cb.buffer):
            files.append(cb.buffer.save(out / BUFFER_FILE).name)
        elif isinstance(cb, EWC) and cb.penalties:
            files.append(cb.save(out / EWC_FILE).name)
    atomic_write_text(out / "state.json", json.dumps({"files": files}, indent=1) + "\n")
    return out
