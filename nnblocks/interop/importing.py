"""`from_transformers`: a Hugging Face model (folder or instance) as an nnblocks model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.interop._arch import Architecture
from nnblocks.interop._source import Source, open_source
from nnblocks.interop._weights import Config, load_weights, materialise, plan_shapes
from nnblocks.interop.bert import BERT
from nnblocks.interop.gpt2 import GPT2
from nnblocks.interop.llama import LLAMA
from nnblocks.interop.mistral import MISTRAL
from nnblocks.interop.qwen2 import QWEN2
from nnblocks.registry import build

__all__ = ["from_transformers", "ARCHITECTURES", "architecture_of"]

ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a for a in (GPT2, LLAMA, MISTRAL, QWEN2, BERT)
}


def _supported() -> str:
    return ", ".join(name for a in ARCHITECTURES.values() for name in a.variants)


def architecture_of(model_type: Any, class_name: str, where: str) -> tuple[Architecture, str]:
    """The mapping for a config's ``model_type`` and transformers class, and its variant.

    Raises:
        SpecError: an architecture nnblocks does not map, naming the supported ones.
    """
    arch = ARCHITECTURES.get(model_type) if isinstance(model_type, str) else None
    if arch is None:
        raise SpecError(
            f"model_type {model_type!r} ({class_name or 'no architecture named'}) is not "
            f"supported; supported: {_supported()}",
            path=where,
        )
    variant = arch.variants.get(class_name)
    if variant is None:
        raise SpecError(
            f"{arch.config_class}: architecture {class_name!r} is not supported; supported: "
            f"{', '.join(arch.variants)}",
            path=where,
        )
    return arch, variant


def _prefix(source: Source, base: str) -> str:
    """The base model's prefix as this checkpoint spells it (task models nest the base)."""
    return base if any(name.startswith(base) for name in source.shapes) else ""


def from_transformers(source: Any, *, dtype: torch.dtype = torch.float32) -> nn.Module:
    """Import a Hugging Face model as an ordinary nnblocks model, weights loaded.

    The model is built through the registry (``nnblocks.spec_of(model)`` is plain data,
    every slot can be swapped with ``nnblocks.surgery.swap``), on the meta device first;
    names and shapes are checked against the safetensors headers, then the model is
    materialised once and filled tensor by tensor from the memory-mapped files.

    Supported: GPT-2 (``GPT2LMHeadModel``, ``GPT2Model``), BERT (``BertModel``,
    ``BertForMaskedLM``, ``BertForSequenceClassification``), Llama (``LlamaForCausalLM``),
    Mistral (``MistralForCausalLM``), Qwen2 (``Qwen2ForCausalLM``).

    Args:
        source: a folder in the Hugging Face layout (``config.json`` plus
            ``model.safetensors`` or a sharded ``model.safetensors.index.json``), read
            without transformers and without running anything from the folder; or a
            transformers ``PreTrainedModel`` instance.
        dtype: floating dtype of the nnblocks model's weights.

    Returns:
        The nnblocks model in eval mode. It takes ``attention_mask`` and ``position_ids``
        as transformers models do (and ``token_type_ids`` for BERT). Tokens equal to the
        config's ``pad_token_id`` are masked out when no ``attention_mask`` is given; so
        in ``nnblocks.generate`` (which has no mask argument) a left-padded prompt works as
        with transformers, but a pad id the model generates itself is masked afterwards.

    Raises:
        SpecError: an architecture, config option or value nnblocks does not map (named,
            with what is supported), or a model whose code ships with the checkpoint.
        CheckpointError: missing files; tensors missing or left over after the mapping
            (listed); config sizes that disagree with the weights' shapes.

    Example:
        >>> model = nnblocks.interop.from_transformers("path/to/llama-folder")  # doctest: +SKIP
        >>> nnblocks.surgery.swap(model, "decoder.layers.*.self_attention",
        ...                       {"name": "local", "window": 64})  # doctest: +SKIP
    """
    src = open_source(source)
    try:
        arch, variant = architecture_of(src.config.get("model_type"), src.architecture, src.where)
        where = (
            src.where if not isinstance(source, (str, Path)) else str(Path(source) / "config.json")
        )
        cfg = Config(src.config, arch.config_class, where)
        spec = arch.spec(cfg, variant)
        rules, optional = arch.rules(cfg, variant, _prefix(src, arch.base_prefix))
        with torch.device("meta"):
            model = build(spec, "model")
        plan_shapes(model, src, rules, {n for n in src.shapes if optional(n)})
        model.to(dtype)
        materialise(model)
        load_weights(model, src, rules)
    finally:
        src.close()
    return model.eval()
