"""Small random transformers models for the interop tests (nothing is downloaded)."""

from __future__ import annotations

import types

import pytest
import torch

transformers = pytest.importorskip("transformers")

V, T = 100, 12
SMALL = {"vocab_size": V, "bos_token_id": 1, "eos_token_id": 2}
LLAMA_LIKE = {
    **SMALL,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}
LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8,
}

# name -> (transformers class, config); the causal language models
CAUSAL = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Config",
             {**SMALL, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64}),
    "gpt2_untied": ("GPT2LMHeadModel", "GPT2Config",
                    {**SMALL, "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 64,
                     "tie_word_embeddings": False, "activation_function": "relu"}),
    "llama": ("LlamaForCausalLM", "LlamaConfig", LLAMA_LIKE),
    "llama_variants": ("LlamaForCausalLM", "LlamaConfig", {
        **LLAMA_LIKE, "head_dim": 12, "attention_bias": True, "mlp_bias": True,
        "tie_word_embeddings": True, "rope_parameters": LLAMA3_ROPE}),
    "llama_linear": ("LlamaForCausalLM", "LlamaConfig", {
        **LLAMA_LIKE, "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0,
                                          "factor": 4.0}}),
    "mistral": ("MistralForCausalLM", "MistralConfig",
                {**LLAMA_LIKE, "sliding_window": 4, "head_dim": 16}),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", LLAMA_LIKE),
}  # fmt: skip

BERT = {
    **SMALL,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
    "pad_token_id": 0,
}


def reference(model_class: str, config_class: str, options: dict, **extra) -> torch.nn.Module:
    """A transformers model with random weights, in eval mode."""
    config = getattr(transformers, config_class)(**{**options, **extra})
    torch.manual_seed(0)
    return getattr(transformers, model_class)(config).eval()


def left_padding(batch: int = 3, length: int = T) -> torch.Tensor:
    """``[B, T]`` long attention mask: row 0 full, the others left-padded by 4 and 7."""
    mask = torch.ones(batch, length, dtype=torch.long)
    for row, pad in zip(range(1, batch), (4, 7)):
        mask[row, :pad] = 0
    return mask


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


@pytest.fixture
def ref() -> types.SimpleNamespace:
    """The helpers above, for the test modules (tests are not a package)."""
    return types.SimpleNamespace(
        V=V, T=T, CAUSAL=CAUSAL, BERT=BERT, LLAMA_LIKE=LLAMA_LIKE, reference=reference,
        left_padding=left_padding, positions_of=positions_of, transformers=transformers,
    )  # fmt: skip
