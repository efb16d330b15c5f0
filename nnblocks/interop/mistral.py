"""Mistral (Jiang et al. 2023) <-> `transformer_lm`: Llama's mapping with a sliding window.

``sliding_window`` becomes the `local` attention part (query ``p`` sees keys
``p - window + 1 .. p``, the rule transformers applies); None keeps full `gqa` attention.
"""

from __future__ import annotations

from typing import Any

from nnblocks.interop._weights import Config
from nnblocks.interop.llama import llama_like, llama_spec

__all__ = ["MISTRAL"]


def _spec(cfg: Config, variant: str) -> dict[str, Any]:
    window = cfg.get("sliding_window")
    if window is None:
        return llama_spec(cfg, {"bias": False})
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise cfg.refuse("sliding_window", window, ["None", "a positive integer"])
    return llama_spec(cfg, {"name": "local", "window": window, "bias": False})


def _window(model: Any, config: dict[str, Any]) -> None:
    config["sliding_window"] = getattr(model.decoder.layers[0].self_attention, "window", None)


MISTRAL = llama_like(
    "mistral",
    "MistralConfig",
    "MistralForCausalLM",
    spec=_spec,
    biases=(False, False),
    config_extra=_window,
)
