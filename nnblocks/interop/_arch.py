"""What one architecture mapping provides (each lives in its own file: gpt2.py, llama.py...)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from nnblocks.interop._weights import Config, Rule

__all__ = ["Architecture"]


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A transformers model type mapped to an nnblocks model.

    Attributes:
        model_type: ``config.json``'s ``model_type`` (``"gpt2"``).
        config_class: the transformers config class, named in messages (``"GPT2Config"``).
        base_prefix: the prefix of the base model's tensors inside a task model
            (``"transformer."``); checkpoints of the base model itself have none.
        variants: transformers class name -> variant name handed to ``spec``/``rules``
            (``{"GPT2LMHeadModel": "lm", "GPT2Model": "base"}``).
        spec: ``(config, variant) -> nnblocks model spec``.
        rules: ``(config, variant, prefix) -> (rules, optional)``: the weight mapping, and
            checkpoint names that may be present without being used (buffers, tied copies).
        to_config: ``(model, variant) -> config dict`` for ``to_transformers``, read from
            the model's parts (None: the architecture is import-only).
        auto_class: the transformers Auto class that loads an exported folder.
    """

    model_type: str
    config_class: str
    base_prefix: str
    variants: dict[str, str]
    spec: Callable[[Config, str], dict[str, Any]]
    rules: Callable[[Config, str, str], tuple[list[Rule], Callable[[str], bool]]]
    to_config: Callable[[Any, str], dict[str, Any]] | None = None
    auto_class: str = "AutoModelForCausalLM"
