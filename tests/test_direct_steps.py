"""While a model decodes, its stacks step eligible blocks through ``step_directly``: the
same bits as the module path, and the module path wherever a hook, a mask or another part
would see the difference."""

import contextlib

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks import generate
from nnblocks.models._direct_steps import direct_block_steps
from nnblocks.models._stack import TransformerStack
from nnblocks.parts.block import TransformerBlock

LAYERS = 2


def _lm(**options) -> nn.Module:
    torch.manual_seed(0)
    spec = {"name": "transformer_lm", "vocab_size": 40, "dim": 16, "heads": 4}
    return nnblocks.build({**spec, "layers": LAYERS, **options}).eval()


@contextlib.contextmanager
def _counting_direct_steps(patch: pytest.MonkeyPatch):
    """Counts the calls ``step_directly`` served (returned a step, not None)."""
    served = []
    original = TransformerBlock.step_directly

    def spy(self, x, cache, *context):
        out = original(self, x, cache, *context)
        if out is not None:
            served.append(self)
        return out

    patch.setattr(TransformerBlock, "step_directly", spy)
    yield served


def _module_path_only(patch: pytest.MonkeyPatch) -> None:
    """``generate`` without the direct steps: every block through ``Module.__call__``."""
    patch.setattr(generate, "direct_block_steps", lambda model: contextlib.nullcontext())


def _steps(model, prompt, n, *, direct, src=None):
    """``model.step`` ``n`` times with greedy tokens: every step's logits and the last state."""
    tokens, logits = prompt, []
    state = model.begin(src)
    with torch.inference_mode(), direct_block_steps(model) if direct else contextlib.nullcontext():
        for _ in range(n):
            out, state = model.step(tokens, state, use_cache=True)
            logits.append(out)
            tokens = torch.cat([tokens, out.argmax(-1, keepdim=True)], dim=1)
    return logits, state


CONFIGS = [
    {"position": "rotary", "norm": "rms", "self_attention": "gqa", "feedforward": "swiglu"},
    {},  # learned positions, LayerNorm, mha, mlp
    {"norm_placement": "post"},
    {"self_attention": "mqa", "feedforward": "geglu", "position": "rotary"},
    {"position": None, "self_attention": {"name": "mha", "position": "rotary", "bias": False}},
]


@pytest.mark.parametrize(
    "options", CONFIGS, ids=lambda o: ",".join(map(str, o.values())) or "defaults"
)
def test_direct_steps_give_the_module_paths_bits(options):
    model = _lm(**options)
    prompt = torch.randint(3, 40, (3, 4), generator=torch.Generator().manual_seed(1))
    n = 7
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        direct, direct_state = _steps(model, prompt, n, direct=True)
    module, module_state = _steps(model, prompt, n, direct=False)
    # The prompt fills the caches, the next step allocates their buffers, the rest go direct.
    assert len(served) == (n - 2) * LAYERS
    for a, b in zip(direct, module):
        assert torch.equal(a, b)
    for a, b in zip(direct_state["caches"], module_state["caches"]):
        assert a["self"]["offset"] == b["self"]["offset"]
        assert a["self"]["filled"] == b["self"]["filled"]
        filled = a["self"]["filled"]
        for key in ("k", "v"):
            assert torch.equal(a["self"][key][:, :, :filled], b["self"][key][:, :, :filled])


def test_generate_takes_direct_steps_and_gives_the_same_tokens_as_the_module_path():
    model = _lm(position="rotary", norm="rms", self_attention="gqa")
    prompt = torch.randint(3, 40, (2, 3), generator=torch.Generator().manual_seed(2))
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        greedy = generate.greedy(model, prefix=prompt, max_new_tokens=12)
        beam = generate.beam(model, prefix=prompt, beam_size=3, max_new_tokens=12)
    assert served  # greedy and beam search both went direct
    with pytest.MonkeyPatch.context() as patch:
        _module_path_only(patch)
        assert torch.equal(greedy, generate.greedy(model, prefix=prompt, max_new_tokens=12))
        assert torch.equal(
            beam, generate.beam(model, prefix=prompt, beam_size=3, max_new_tokens=12)
        )


def test_a_hooked_sub_part_keeps_its_block_on_the_module_path():
    model = _lm()
    calls = []
    model.decoder.layers[0].feedforward.register_forward_hook(lambda *args: calls.append(1))
    n = 6
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        generate.greedy(model, prefix=torch.tensor([[1, 5, 6]]), max_new_tokens=n)
    assert len(calls) == n  # the hook ran at every step
    assert served and all(block is model.decoder.layers[1] for block in served)


def test_a_global_module_hook_keeps_every_block_on_the_module_path():
    model = _lm()
    seen = []
    handle = nn.modules.module.register_module_forward_hook(
        lambda module, args, out: (
            seen.append(module) if isinstance(module, TransformerBlock) else None
        )
    )
    try:
        with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
            generate.greedy(model, prefix=torch.tensor([[1, 5]]), max_new_tokens=5)
    finally:
        handle.remove()
    assert not served
    assert len(seen) == 5 * LAYERS  # every block at each of the 5 steps


@pytest.mark.parametrize(
    "options",
    [
        {"self_attention": {"name": "local", "window": 4}},  # a key window
        {"position": None, "self_attention": {"name": "mha", "position": "alibi"}},  # a bias
        {"self_attention": "linear"},  # not a key-value softmax attention
    ],
    ids=["local", "alibi", "linear"],
)
def test_attentions_without_the_short_path_leave_their_stack_on_the_module_path(options):
    model = _lm(**options)
    with direct_block_steps(model):
        assert model.decoder.direct_steps is None
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        generate.greedy(model, prefix=torch.tensor([[1, 5, 6]]), max_new_tokens=5)
    assert not served


def test_a_model_in_training_mode_or_a_traced_call_is_not_stepped_directly():
    model = _lm().train()
    with direct_block_steps(model):
        assert model.decoder.direct_steps is None
    model.eval()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.jit, "is_tracing", lambda: True)
        with direct_block_steps(model):
            assert model.decoder.direct_steps is None


def test_a_call_traced_within_a_decoding_call_takes_the_module_path():
    model = _lm(position="rotary", norm="rms", pad_id=None)  # no key mask to compute
    prompt = torch.tensor([[1, 5, 6]])
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        patch.setattr(nnblocks.models._stack, "_tracing", lambda: True)
        traced, _ = _steps(model, prompt, 5, direct=True)
    assert not served
    module, _ = _steps(model, prompt, 5, direct=False)
    assert all(torch.equal(a, b) for a, b in zip(traced, module))


def test_a_left_padded_prompt_decodes_on_the_module_path_with_the_same_tokens():
    model = _lm(position="rotary", norm="rms")
    prompt = torch.tensor([[0, 0, 1, 7], [1, 9, 8, 7]])  # pad_id 0: the first row is padded
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        out = generate.greedy(model, prefix=prompt, max_new_tokens=6)
    assert not served  # a key mask at every step
    with pytest.MonkeyPatch.context() as patch:
        _module_path_only(patch)
        assert torch.equal(out, generate.greedy(model, prefix=prompt, max_new_tokens=6))


def test_a_subclass_that_changes_forward_is_not_stepped_by_the_base_copy():
    class Scaled(TransformerBlock):
        def forward(self, *args, **kwargs):
            return super().forward(*args, **kwargs)

    block = Scaled(dim=16, heads=4).eval()
    assert not block.can_step_directly()
    assert TransformerBlock(dim=16, heads=4).eval().can_step_directly()


def test_afterwards_no_stack_holds_direct_steps_also_after_an_exception():
    model = _lm()
    with direct_block_steps(model):
        assert len(model.decoder.direct_steps) == LAYERS
    assert "direct_steps" not in model.decoder.__dict__
    with pytest.raises(RuntimeError, match="stop"), direct_block_steps(model):
        raise RuntimeError("stop")
    assert "direct_steps" not in model.decoder.__dict__
    assert TransformerStack.direct_steps is None


def _seq2seq(**options) -> nn.Module:
    torch.manual_seed(0)
    spec = {"name": "transformer_seq2seq", "vocab_size": 30, "dim": 16, "heads": 2}
    return nnblocks.build({**spec, "encoder_layers": 1, "decoder_layers": LAYERS, **options}).eval()


@pytest.mark.parametrize("padded_source", [False, True])
@pytest.mark.parametrize("options", [{}, {"norm_placement": "post", "position": "rotary"}])
def test_encoder_decoder_blocks_step_directly_with_the_module_paths_bits(options, padded_source):
    model = _seq2seq(pad_id=0, **options)
    src = torch.randint(3, 30, (3, 6), generator=torch.Generator().manual_seed(4))
    if padded_source:
        src[1, 4:] = 0  # the cross-attention gets a context mask
    n = 7
    bos = torch.full((src.shape[0], 1), model.bos_id)
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        direct, direct_state = _steps(model, bos, n, direct=True, src=src)
    module, module_state = _steps(model, bos, n, direct=False, src=src)
    assert len(served) == (n - 2) * LAYERS
    for a, b in zip(direct, module):
        assert torch.equal(a, b)
    for a, b in zip(direct_state["caches"], module_state["caches"]):
        assert a.keys() == b.keys() == {"self", "cross"}
        assert a["cross"]["offset"] == b["cross"]["offset"] == n
        for key in ("context_k", "context_v"):
            assert torch.equal(a["cross"][key], b["cross"][key])


def test_encoder_decoder_generate_gives_the_module_paths_tokens():
    model = _seq2seq()
    src = torch.randint(3, 30, (2, 5), generator=torch.Generator().manual_seed(5))
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        greedy = generate.greedy(model, src, max_new_tokens=10)
        beam = generate.beam(model, src, beam_size=3, max_new_tokens=10)
    assert served
    with pytest.MonkeyPatch.context() as patch:
        _module_path_only(patch)
        assert torch.equal(greedy, generate.greedy(model, src, max_new_tokens=10))
        assert torch.equal(beam, generate.beam(model, src, beam_size=3, max_new_tokens=10))


def test_a_hooked_or_cacheless_cross_attention_keeps_its_block_on_the_module_path():
    model = _seq2seq()
    calls = []
    model.decoder.layers[0].cross_attention.register_forward_hook(lambda *a: calls.append(1))
    with direct_block_steps(model):
        steps = model.decoder.direct_steps
        assert steps is not None and steps[0] is None and steps[1] is not None
    src = torch.randint(3, 30, (1, 5))
    generate.greedy(model, src, max_new_tokens=6)
    assert len(calls) >= 6  # the hook ran at every step

    class NoCache(nn.Module):  # a third-party cross-attention without `cache=`
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x, context=None, mask=None, causal=False):
            return self.inner(x, context=context, mask=mask)

    model = _seq2seq()
    model.decoder.layers[1].cross_attention = NoCache(model.decoder.layers[1].cross_attention)
    with direct_block_steps(model):
        assert model.decoder.direct_steps[1] is None


class _UserFeedForward(nn.Module):
    """A third-party feedforward written against the contract: ``[B, T, D] -> [B, T, D]``;
    ``broken`` returns two positions for one (the mistake a cached step would reveal)."""

    def __init__(self, dim: int, broken: bool = False):
        super().__init__()
        self.proj, self.broken = nn.Linear(dim, dim), broken

    def forward(self, x):
        y = torch.tanh(self.proj(x))
        return y.expand(-1, 2, -1) if self.broken and x.shape[1] == 1 else y


def test_a_third_party_feedforward_is_stepped_directly_with_the_same_tokens():
    model = _lm(position="rotary", norm="rms")
    torch.manual_seed(3)
    model.decoder.layers[1].feedforward = _UserFeedForward(16)
    prompt = torch.tensor([[1, 5, 6], [1, 7, 8]])
    with pytest.MonkeyPatch.context() as patch, _counting_direct_steps(patch) as served:
        out = generate.greedy(model, prefix=prompt, max_new_tokens=6)
    assert any(block is model.decoder.layers[1] for block in served)
    with pytest.MonkeyPatch.context() as patch:
        _module_path_only(patch)
        assert torch.equal(out, generate.greedy(model, prefix=prompt, max_new_tokens=6))


@pytest.mark.parametrize("direct", [True, False])
def test_a_part_whose_output_does_not_fit_is_named_on_either_path(direct):
    model = _lm()
    model.decoder.layers[0].feedforward = _UserFeedForward(16, broken=True)
    with pytest.MonkeyPatch.context() as patch:
        if not direct:
            _module_path_only(patch)
        with pytest.raises(nnblocks.errors.ShapeError, match="feedforward"):
            generate.greedy(model, prefix=torch.tensor([[1, 5, 6]]), max_new_tokens=5)


def test_an_attention_subclass_that_changes_forward_keeps_its_block_on_the_module_path():
    from nnblocks.parts.attention.multihead import MultiHeadAttention

    class Halved(MultiHeadAttention):
        def forward(self, *args, **kwargs):
            out, cache = super().forward(*args, **kwargs)
            return out / 2, cache

    block = TransformerBlock(dim=16, heads=4).eval()
    block.self_attention = Halved(dim=16, heads=4).eval()
    assert not block.can_step_directly()


@pytest.mark.parametrize(
    "register",
    [
        lambda m: m.register_forward_pre_hook(lambda *a: None),
        lambda m: m.register_forward_hook(lambda *a: None),
        lambda m: m.register_full_backward_hook(lambda *a: None),
        lambda m: nn.modules.module.register_module_forward_pre_hook(lambda *a: None),
        lambda m: nn.modules.module.register_module_full_backward_hook(lambda *a: None),
    ],
    ids=["pre", "forward", "backward", "global pre", "global backward"],
)
def test_any_hook_that_module_call_would_run_is_seen(register):
    from nnblocks.parts._hooks import has_call_hooks

    block = TransformerBlock(dim=16, heads=4).eval()
    assert not has_call_hooks(block.feedforward)
    handle = register(block.feedforward)
    try:
        assert has_call_hooks(block.feedforward)
        assert not block.can_step_directly()
    finally:
        handle.remove()
    assert block.can_step_directly()
