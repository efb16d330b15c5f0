"""The recipe schema: every key of every section, with its type, range and meaning.

One declarative table (pydantic v2 models in strict mode) says what a recipe may hold.
Strict mode is what makes "integers are integers" true: ``1.5`` is not an epoch count,
``"no"`` is not a boolean, ``"3"`` is not a number (an int is accepted where a float is
expected). Adding a recipe key is adding one field here; its ``description`` is what an
error message says was expected.

Sections whose keys belong to a part (``data``, ``model``) are specs: only their shape is
checked here; their options are checked against the part's signature when the recipe is
checked (``nnblocks.experiment.run.check_recipe``).

``translate`` turns pydantic's errors into the project's own ``SpecError`` template: the
place (``file:line: train.lr`` or ``--set train.lr``), what was expected, what was received.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from nnblocks.errors import SpecError
from nnblocks.spec import check_arguments, close_matches

__all__ = [
    "RecipeSettings",
    "TrainSettings",
    "CheckpointOptions",
    "FineTuneOptions",
    "EarlyStoppingOptions",
    "TuneSettings",
    "ContinualSettings",
    "translate",
    "section_fields",
]

PosInt = Annotated[StrictInt, Field(gt=0)]
NonNegInt = Annotated[StrictInt, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]  # strict float: an int is accepted, a str is not
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]

# A run name becomes a folder name under runs/: no separators, no "..", no hidden folder.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class _Section(BaseModel):
    """Strict types, unknown keys rejected, values checked when set too."""

    model_config = ConfigDict(strict=True, extra="forbid", validate_default=False)


def _options_of(spec: Any, where: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``{"name": ..., **options}`` -> (name, options)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, Mapping) and isinstance(spec.get("name"), str):
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise ValueError(f"expected a name or a mapping with a string `name` ({where})")


def _check_call(factory: Callable[..., Any], options: Mapping[str, Any], what: str) -> None:
    """Options must be arguments of ``factory`` (a SpecError names the unknown ones)."""
    try:
        check_arguments(factory, options, path="", what=what)
    except SpecError as exc:
        raise ValueError(str(exc)) from None


class CheckpointOptions(_Section):
    """``train.checkpoint`` as a mapping: when to save ``checkpoints/last`` mid-epoch."""

    every_n_steps: PosInt | None = Field(
        None, description="int > 0: also save every this many training batches"
    )
    every_n_minutes: PosFloat | None = Field(
        None, description="number > 0: also save every this many minutes of training"
    )


class FineTuneOptions(_Section):
    """``train.fine_tune``: train a pretrained model with its body frozen first."""

    epochs: PosInt | None = Field(
        None, description="int > 0: epochs after unfreezing (default: train.epochs)"
    )
    freeze_epochs: NonNegInt = Field(1, description="int >= 0: epochs with the body frozen")
    base_lr: PosFloat | None = Field(None, description="number > 0 or null: the head's rate")
    lr_mult: PosFloat = Field(100.0, description="number > 0: head rate / body rate")


class EarlyStoppingOptions(_Section):
    """``train.early_stopping`` as a mapping (an int is the patience)."""

    patience: PosInt = Field(3, description="int > 0: epochs without improvement")
    min_delta: NonNegFloat = Field(0.0, description="number >= 0: the smallest improvement")
    mode: Literal["auto", "min", "max"] = Field("auto", description="auto, min or max")
    monitor: StrictStr | None = Field(None, description="a history column")


class TrainSettings(_Section):
    """``train:``: Learner and fit settings. Names follow the Learner's arguments."""

    epochs: PosInt = Field(1, description="int > 0: passes over the training data")
    lr: PosFloat | list[PosFloat] = Field(
        1e-3, description="a number > 0 (or a list, one per parameter group): peak learning rate"
    )
    batch_size: PosInt = Field(64, description="int > 0: samples per step")
    valid_batch_size: PosInt | None = Field(
        None, description="int > 0 or null: samples per evaluation step"
    )
    opt: StrictStr | dict[str, Any] = Field(
        "adamw",
        description="an optimizer name (adamw, adam, sgd, radam, rmsprop) or "
        "{name: ..., options of that optimizer}",
    )
    wd: NonNegFloat = Field(0.01, description="number >= 0: decoupled weight decay")
    schedule: StrictStr | dict[str, Any] | None = Field(
        "one_cycle", description="a schedule name or {name: ..., options}, or null"
    )
    clip_grad: PosFloat | None = Field(
        None, description="number > 0 or null: clip the global gradient norm"
    )
    grad_accumulation: PosInt = Field(1, description="int > 0: batches summed per update")
    mixed_precision: Literal["bf16", "fp16"] | None = Field(
        None, description="null (fp32), bf16 or fp16 (CUDA)"
    )
    loss: StrictStr | None = Field(None, description="a loss name; null: the task's loss")
    metrics: list[StrictStr] | None = Field(None, description="metric names; null: the task's")
    monitor: StrictStr | None = Field(
        None, description="a history column for early stopping and the best checkpoint"
    )
    early_stopping: PosInt | EarlyStoppingOptions | None = Field(
        None, description="int > 0 (patience in epochs), {patience, min_delta, mode}, or null"
    )
    teacher_forcing: Fraction | dict[str, Any] | None = Field(
        None, description="a number in [0, 1] or a teacher-forcing schedule {mode: ...}"
    )
    time_limit: PosFloat | None = Field(
        None, description="number > 0 or null: stop training after this many seconds"
    )
    threads: PosInt | None = Field(None, description="int > 0 or null: torch threads")
    deterministic: StrictBool = Field(False, description="true or false: deterministic kernels")
    audit: Literal["warn", "error", "off"] = Field(
        "warn", description="warn, error or off: the reuse audit on the first batch"
    )
    hybridize: Literal["eager", "compile", "auto"] = Field(
        "eager", description="eager, compile or auto"
    )
    checkpoint: StrictBool | CheckpointOptions = Field(
        True,
        description="true, false, or {every_n_steps: int > 0, every_n_minutes: number > 0}",
    )
    evaluate: dict[str, Any] | None = Field(
        None, description="options of the task's evaluation after training"
    )
    show: NonNegInt = Field(0, description="int >= 0: test examples to print after training")
    fine_tune: FineTuneOptions | None = Field(
        None, description="{epochs: int > 0, freeze_epochs, base_lr, lr_mult}"
    )
    strategy: Literal["ddp", "fsdp"] | None = Field(
        None, description="ddp or fsdp (under torchrun), or null"
    )
    fsdp_wrap: StrictStr | list[StrictStr] | None = Field(
        None, description="with strategy fsdp: glob(s) of the modules that form one shard unit"
    )
    checkpoint_activations: StrictStr | list[StrictStr] | None = Field(
        None, description="a module pattern or a list of patterns to recompute in backward"
    )
    tensorboard: StrictBool = Field(False, description="true or false: write TensorBoard logs")

    @field_validator("opt")
    @classmethod
    def _known_optimizer(cls, value: Any) -> Any:
        from nnblocks.train.optim import OPTIMIZERS

        name, options = _options_of(value, "train.opt")
        if name.lower() not in OPTIMIZERS:
            raise ValueError(_unknown_name(name, OPTIMIZERS, "optimizer"))
        if "lr" in options or "params" in options:
            raise ValueError("`lr` is train.lr; `params` come from the model")
        factory = OPTIMIZERS[name.lower()][0]
        _check_call(factory, {"params": [], "lr": 1.0, **options}, f"optimizer `{name}`")
        return value

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, value: Any) -> Any:
        from nnblocks.train.callbacks.schedule import one_cycle_scheduler
        from nnblocks.train.schedules import SCHEDULES

        if value is None or value == "none":
            return value
        name, options = _options_of(value, "train.schedule")
        key = name.lower().replace("-", "_")
        if key not in SCHEDULES:
            raise ValueError(_unknown_name(name, [*SCHEDULES, "none"], "schedule"))
        factory = one_cycle_scheduler if key == "one_cycle" else SCHEDULES[key]
        _check_call(factory, options, f"schedule `{name}`")
        return value

    @field_validator("teacher_forcing")
    @classmethod
    def _teacher_forcing_options(cls, value: Any) -> Any:
        if isinstance(value, dict):
            from nnblocks.train.callbacks.teacher_forcing import TeacherForcing

            _check_call(TeacherForcing, value, "teacher forcing")
        return value


class TuneSettings(_Section):
    """``tune:``: the search space for ``nnblocks tune`` (see ``experiment.space``)."""

    space: dict[str, Any] = Field(description="{recipe.key: [choices] | {int|float: [lo, hi]}}")
    metric: StrictStr | None = Field(None, description="the compared metric")
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="minimize or maximize"
    )
    pruner: StrictStr | None = Field(None, description="reserved: the pruner's name")
    sampler: StrictStr | None = Field(None, description="reserved: the sampler's name")

    @field_validator("space")
    @classmethod
    def _dimensions(cls, value: dict[str, Any]) -> dict[str, Any]:
        from nnblocks.experiment.space import Dimension

        for key, decl in value.items():
            try:
                Dimension(key, decl)
            except SpecError as exc:
                raise ValueError(str(exc)) from None
        return value


class RehearsalOptions(_Section):
    """``continual.rehearsal``: replay a reservoir of earlier examples."""

    size: PosInt = Field(200, description="int > 0: examples kept in the buffer")
    fraction: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.5, description="number in [0, 1): share of each batch replayed"
    )
    seed: NonNegInt = Field(0, description="int >= 0: seeds the buffer")


class EWCOptions(_Section):
    """``continual.ewc``: elastic weight consolidation."""

    lambda_: NonNegFloat = Field(100.0, alias="lambda", description="number >= 0: the weight")


class LwFOptions(_Section):
    """``continual.lwf``: distil the previous task's model."""

    alpha: PosFloat = Field(1.0, description="number > 0: the distillation loss's weight")
    temperature: PosFloat = Field(2.0, description="number > 0: the softmax temperature")


class ContinualSettings(_Section):
    """``continual:``: strategies for learning tasks in sequence (nnblocks.train.continual).

    An empty mapping (``lwf: {}``) or null turns a strategy on with its defaults.
    """

    rehearsal: RehearsalOptions | None = Field(None, description="{size, fraction, seed}")
    ewc: EWCOptions | None = Field(None, description="{lambda}")
    lwf: LwFOptions | None = Field(None, description="{alpha, temperature}")
    grow_head: StrictStr | None = Field(
        None, description="module path of a linear head to widen to the data's num_classes"
    )


class SurgeryRecord(_Section):
    """One ``model.surgery`` row: put ``spec`` in every slot matching ``pattern``."""

    pattern: StrictStr = Field(description="a glob over module paths")
    spec: Any = Field(description="a part spec")
    kind: StrictStr | None = Field(None, description="the slots' kind")


def _check_spec_shape(value: Any, *, section: str, allow_from: bool = False) -> Any:
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("expected a part name; received an empty string")
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a {section} spec: a name or a mapping with `name`")
    has_from = allow_from and "from" in value
    if has_from and not isinstance(value["from"], str):
        raise ValueError("`from` must be a path string (a saved model folder)")
    if "name" not in value and not has_from:
        hint = " or `from` (a saved model folder)" if allow_from else ""
        raise ValueError(f"a {section} spec needs `name` (the part){hint}")
    if "name" in value and not isinstance(value["name"], str):
        raise ValueError("`name` must be a string")
    return value


class NamedSeeds(_Section):
    """``seed: {init, data, dropout}``: a run's randomness by source (experiment/seeds.py)."""

    init: NonNegInt = Field(0, description="int >= 0: weight initialisation")
    data: NonNegInt = Field(0, description="int >= 0: the training data's order")
    dropout: NonNegInt = Field(0, description="int >= 0: dropout and augmentation")


class RecipeSettings(_Section):
    """A whole recipe, typed. ``data`` and ``model`` stay plain specs (see the module doc)."""

    name: StrictStr | None = Field(None, description="a run-folder name: letters, digits, ._+-")
    description: StrictStr | None = Field(None, description="free text")
    seed: NonNegInt | NamedSeeds = Field(
        0, description="int >= 0, or named seeds {init, data, dropout} (ints >= 0)"
    )
    plugins: list[StrictStr] = Field(
        default_factory=list, description="a list of Python files or module names"
    )
    data: StrictStr | dict[str, Any] | None = Field(None, description="a dataset spec")
    model: StrictStr | dict[str, Any] | None = Field(None, description="a model spec")
    train: TrainSettings = Field(
        default_factory=lambda: TrainSettings.model_validate({}), description="training settings"
    )
    eval: dict[str, Any] | None = Field(
        None, description="options of the task's evaluation after training"
    )
    tune: TuneSettings | None = Field(None, description="a search space {space: ...}")
    continual: ContinualSettings | None = Field(
        None, description="{rehearsal, ewc, lwf, grow_head}: continual learning"
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and (not _SAFE_NAME.match(value) or value in (".", "..")):
            raise ValueError(
                "a run name is one folder name: letters, digits and . _ + - (no / or ..)"
            )
        return value

    @field_validator("data")
    @classmethod
    def _data_spec(cls, value: Any) -> Any:
        return value if value is None else _check_spec_shape(value, section="dataset")

    @field_validator("model")
    @classmethod
    def _model_spec(cls, value: Any) -> Any:
        if value is None:
            return value
        _check_spec_shape(value, section="model", allow_from=True)
        if isinstance(value, Mapping) and "surgery" in value:
            rows = value["surgery"]
            if not isinstance(rows, list):
                raise ValueError("`surgery` must be a list of {pattern, spec, kind?}")
            for row in rows:
                SurgeryRecord.model_validate(row)
        return value


def _unknown_name(name: str, known: Sequence[str] | Mapping[str, Any], what: str) -> str:
    match = close_matches(name, known)
    hint = f" Did you mean `{match[0]}`?" if match else ""
    return f"unknown {what} `{name}`.{hint} Known: {', '.join(known)}"


# -- errors ------------------------------------------------------------------------------

_MODELS: dict[str, type[BaseModel]] = {
    cls.__name__: cls
    for cls in (
        RecipeSettings,
        TrainSettings,
        CheckpointOptions,
        FineTuneOptions,
        EarlyStoppingOptions,
        TuneSettings,
        ContinualSettings,
        SurgeryRecord,
    )
}


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out += _models_in(arg)
    return out


def _walk(
    loc: Sequence[Any], data: Any, *, unknown: bool
) -> tuple[list[Any], type[BaseModel] | None, Any]:
    """A pydantic error location -> (recipe path, the section class holding the last key,
    the field info of the last key). Union tags in the location (``bool``,
    ``CheckpointOptions``, ``list[...]``) are dropped: a piece is part of the path only when
    it is a field of the section or a key (index) of the data there."""
    path: list[Any] = []
    cls: type[BaseModel] | None = RecipeSettings
    parent: type[BaseModel] | None = RecipeSettings
    info = None
    node = data
    for i, piece in enumerate(loc):
        last = i == len(loc) - 1
        if cls is not None and isinstance(piece, str) and piece in cls.model_fields:
            parent, info = cls, cls.model_fields[piece]
            models = _models_in(info.annotation)
            cls = models[0] if len(models) == 1 else None
        elif isinstance(piece, str) and piece in _MODELS:
            cls = _MODELS[piece]
            continue
        elif last and unknown:
            parent, info = cls, None
        elif (
            isinstance(node, Mapping)
            and piece in node
            or (isinstance(node, list) and isinstance(piece, int) and 0 <= piece < len(node))
        ):
            cls = None
        else:
            continue  # a union member's tag
        path.append(piece)
        node = _value_at(node, [piece])
    return path, parent, info


def _value_at(data: Any, path: Sequence[Any]) -> Any:
    node = data
    for piece in path:
        try:
            node = node[piece]
        except (KeyError, IndexError, TypeError):
            return "<missing>"
    return node


_DETAIL_TYPES = {"greater_than", "greater_than_equal", "less_than_equal", "literal_error"}


def translate(
    exc: ValidationError, data: Mapping[str, Any], where: Callable[[str], str]
) -> SpecError:
    """The first problem of a pydantic ValidationError as a SpecError at its recipe key.

    Args:
        exc: the error from ``RecipeSettings.model_validate``.
        data: the validated plain data (to show what was received).
        where: dotted recipe key -> the place shown (``file:line: key`` or ``--set key``).

    Returns:
        A SpecError naming the key, what was expected and what was received; the other
        problems (if any) are listed after it.
    """
    problems: list[tuple[list[Any], str]] = []
    for err in exc.errors(include_url=False):
        unknown = err["type"] == "extra_forbidden"
        path, parent, info = _walk(err["loc"], data, unknown=unknown)
        key = (
            ".".join(str(p) for p in path)
            if path and isinstance(path[-1], int)
            else (path[-1] if path else "")
        )
        if unknown:
            known = parent.model_fields if parent is not None else {}
            match = close_matches(str(key), known)
            hint = f" Did you mean `{match[0]}`?" if match else ""
            text = f"unknown key `{key}`.{hint} Known keys: {', '.join(sorted(known))}"
        elif err["type"] == "missing":
            text = f"a required key is missing: expected {_describe(info)}"
        else:
            value = _value_at(data, path)
            detail = err["msg"]
            if err["type"] == "value_error":
                detail = detail.removeprefix("Value error, ")
            expected = _describe(info)
            if err["type"] in ("value_error", "assertion_error"):
                text = f"{detail}. Received: {_show(key, value)}"
            else:
                extra = f" ({detail.lower()})" if err["type"] in _DETAIL_TYPES else ""
                text = f"expected {expected}{extra}. Received: {_show(key, value)}"
        problems.append((path, text))
    # A union reports one error per member; the deepest location is the real problem.
    keep = [
        (p, t)
        for p, t in problems
        if not any(len(q) > len(p) and q[: len(p)] == p for q, _ in problems)
    ]
    seen: dict[str, str] = {}
    for path, text in keep:
        seen.setdefault(".".join(str(x) for x in path), text)
    (first_key, first_text), *rest = seen.items()
    message = first_text
    if rest:
        message += "".join(f"\n  also at `{where(k)}`: {t}" for k, t in rest)
    return SpecError(message, path=where(first_key))


def _describe(info: Any) -> str:
    if info is not None and info.description:
        return info.description
    return "a valid value"


def _show(key: Any, value: Any) -> str:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    kind = type(value).__name__
    return f"{key}={shown} ({kind})" if key != "" else f"{shown} ({kind})"


def section_fields(section: str) -> dict[str, str]:
    """``{key: description}`` of a section (``"train"``) or of the top level (``""``)."""
    cls = (
        RecipeSettings
        if not section
        else _models_in(RecipeSettings.model_fields[section].annotation)[0]
    )
    return {name: info.description or "" for name, info in cls.model_fields.items()}


def accepted_options(func: Callable[..., Any], skip: Sequence[str]) -> list[str] | None:
    """Keyword names ``func`` accepts (None: any)."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in skip and p.kind is not p.VAR_POSITIONAL]
