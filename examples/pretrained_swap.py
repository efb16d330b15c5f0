"""Import a pretrained Llama-style model, swap attention in its upper half, fine-tune only that.

Offline: a small randomly initialised Llama is built with transformers and saved with
``save_pretrained`` (standing in for a downloaded checkpoint). nnblocks then imports the
folder without transformers, and every slot of the result is an ordinary nnblocks part:

1. ``swap``: the self-attention of the upper half of the layers becomes sliding-window
   attention (`local`, with the imported rotary positions), everything else is frozen, and
   the new parts are fine-tuned on the Python-source language-model data.
2. ``beside``: on a fresh import, a `local` attention is put beside the existing one in
   the same layers (a gated `parallel` of both, the old weights kept), and again only the
   new parts train.

Perplexity on the validation split is printed before and after each, with the counts of
trained and frozen parameters.

    PYTHONPATH=. python examples/pretrained_swap.py
"""

from __future__ import annotations

import os
import tempfile
import time

import torch
import transformers

import nnblocks

SEED = 0
LAYERS = 4
UPPER = f"decoder.layers.{LAYERS // 2}-{LAYERS - 1}"  # for messages
UPPER_SLOTS = [f"decoder.layers.{i}.self_attention" for i in range(LAYERS // 2, LAYERS)]
NEW_ATTENTION = {"name": "local", "window": 16}


def pretend_download(folder: str, vocab_size: int) -> None:
    """A small random Llama saved as a Hugging Face folder."""
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(SEED)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)


def put_beside(model: torch.nn.Module, slot: str, spec: dict) -> None:
    """The existing part at ``slot`` and a new one side by side, gated, old weights kept."""
    beside = getattr(nnblocks.surgery, "beside", None)
    if beside is not None:  # the library's own, where this version has it
        beside(model, slot, spec, merge="gate")
        return
    old = model.get_submodule(slot)
    both = {"name": "parallel", "branches": [nnblocks.spec_of(old), spec], "merge": "gate"}
    nnblocks.surgery.swap(model, slot, both, copy_weights=False)
    model.get_submodule(f"{slot}.branches.0").load_state_dict(old.state_dict())


def counts(model: torch.nn.Module) -> tuple[int, int]:
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trained, frozen


def fine_tune(name: str, model: torch.nn.Module, data, new_slots: list[str]) -> None:
    nnblocks.surgery.freeze(model)
    nnblocks.surgery.unfreeze(model, *new_slots)
    learn = nnblocks.Learner(model, data, lr=3e-3, batch_size=32, progress=False, seed=SEED)
    before = learn.evaluate("valid")["perplexity"]
    trained, frozen = counts(model)
    learn.fit(1)
    after = learn.evaluate("valid")["perplexity"]
    print(
        f"{name:7s} valid perplexity {before:8.2f} -> {after:8.2f}   "
        f"trained {trained:,} / frozen {frozen:,} parameters"
    )


def main() -> None:
    start = time.perf_counter()
    torch.manual_seed(SEED)
    data = nnblocks.data.load("python_source", block_size=64, max_chars=300_000)
    vocab = data.task.model_args["vocab_size"]
    with tempfile.TemporaryDirectory() as folder:
        pretend_download(folder, vocab)

        model = nnblocks.interop.from_transformers(folder)  # no transformers needed here
        print(f"imported {nnblocks.spec_of(model)['name']} from {os.path.basename(folder)}: "
              f"{sum(p.numel() for p in model.parameters()):,} parameters")  # fmt: skip
        for slot in UPPER_SLOTS:
            # the imported rotary positions go with the new part (same spec option)
            position = nnblocks.spec_of(model.get_submodule(slot))["position"]
            nnblocks.surgery.swap(model, slot, {**NEW_ATTENTION, "position": position})
        print(f"swapped the self-attention of layers {UPPER} for `local`")
        fine_tune("swap", model, data, UPPER_SLOTS)

        model = nnblocks.interop.from_transformers(folder)
        for slot in UPPER_SLOTS:
            position = nnblocks.spec_of(model.get_submodule(slot))["position"]
            put_beside(model, slot, {**NEW_ATTENTION, "position": position})
        new = [f"{s}.branches.1" for s in UPPER_SLOTS] + [f"{s}.gate" for s in UPPER_SLOTS]
        print(f"put `local` beside the self-attention of layers {UPPER} (gated)")
        fine_tune("beside", model, data, new)
    print(f"done in {time.perf_counter() - start:.0f} s (load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
