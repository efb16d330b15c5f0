"""Mistral (Jiang et al. 2023) <-> `transformer_lm`: Llama's mapping with a sliding window.

``sliding_window`` becomes the `local` attention part (query ``p`` sees keys
``p - window + 1 .. p``, the rule transformers applies); None keeps full `gqa` attention.
"""

from __future__ import annotations

from typing import Any

from nnblocks.interop._arch import Architecture
from nnblocks.interop._weights import Config, Rule
from nnblocks.interop.llama import llama_config, llama_rules, llama_spec

__all__ = ["MISTRAL"]


def _spec(cfg: Config, variant: str) -> dict[str, Any]:
    window = cfg.get("sliding_window")
    if window is None:
        return llama_spec(cfg, {"bias": False})
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise cfg.refuse("sliding_window", window, ["None", "a positive integer"])
    return llama_spec(cfg, {"name": "local", "window": window, "bias": False})


def _rules(cfg: Config, variant: str, prefix: str) -> tuple[list[Rule], Any]:
    return llama_rules(cfg, variant, prefix, qkv_bias=False, out_bias=False, mlp_bias=False)


def _to_config(model: Any, variant: str) -> dict[str, Any]:
    config = llama_config(model, "mistral", "MistralForCausalLM")
    del config["attention_bias"], config["mlp_bias"]
    config["sliding_window"] = getattr(model.decoder.layers[0].self_attention, "window", None)
    return config


MISTRAL = Architecture(
    model_type="mistral",
    config_class="MistralConfig",
    base_prefix="model.",
    variants={"MistralForCausalLM": "lm"},
    spec=_spec,
    rules=_rules,
    to_config=_to_config,
)
