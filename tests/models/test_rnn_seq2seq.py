"""Model `rnn_seq2seq`: slots, teacher forcing, the decoding protocol, ties and bad input."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import nnblocks
from nnblocks.errors import NNBlocksError, ShapeError, SpecError

PAD, BOS, EOS = 0, 1, 2
SRC_V, TGT_V = 13, 11


def assert_close(actual, expected, rtol=1e-5, atol=1e-6):
    # torch.testing.assert_close costs a second of imports on first use; this is the same check.
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual, expected, rtol=rtol, atol=atol), (actual - expected).abs().max()


def make(**options):
    spec = {
        "name": "rnn_seq2seq",
        "src_vocab_size": SRC_V,
        "tgt_vocab_size": TGT_V,
        "dim": 8,
        "pad_id": PAD,
        "bos_id": BOS,
        "eos_id": EOS,
        **options,
    }
    return nnblocks.build(spec, "model")


def tokens(B, T, vocab, pad_from=None):
    x = torch.randint(3, vocab, (B, T))
    if pad_from is not None:
        for b, start in enumerate(pad_from):
            x[b, start:] = PAD
    return x


def greedy_by_step(model, src, steps, use_cache=True):
    """Greedy decoding through begin/step only; returns the prefix [B, 1 + steps] and logits."""
    state = model.begin(src)
    prefix = torch.full((src.shape[0], 1), BOS)
    logits = []
    for _ in range(steps):
        step_logits, state = model.step(prefix, state, use_cache=use_cache)
        logits.append(step_logits)
        prefix = torch.cat([prefix, step_logits.argmax(-1, keepdim=True)], dim=1)
    return prefix, torch.stack(logits, dim=1)


CONFIGS = [
    {"cell": "lstm", "bidirectional": False, "attention": "none"},
    {"cell": "lstm", "bidirectional": True, "attention": "additive", "layers": 2},
    {"cell": "gru", "bidirectional": True, "attention": "multiplicative"},
    {"cell": "gru", "bidirectional": False, "attention": None, "input_feeding": True},
    {"cell": "lstm", "bidirectional": True, "attention": "additive", "input_feeding": True},
    {"cell": "gru", "bidirectional": False, "attention": {"name": "mha", "heads": 2}},
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_forward_shape_and_gradients(config):
    model = make(**config)
    logits = model(tokens(3, 6, SRC_V, pad_from=[6, 4, 2]), tokens(3, 5, TGT_V))
    assert logits.shape == (3, 5, TGT_V)
    logits.logsumexp(-1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_cached_and_uncached_steps_equal_teacher_forced_forward(config):
    model = make(**config).eval()
    src, tgt_in = tokens(3, 6, SRC_V, pad_from=[6, 3, 5]), tokens(3, 5, TGT_V)
    tgt_in[:, 0] = BOS
    with torch.no_grad():
        full = model(src, tgt_in)  # [B, T, V]
        state, cached = model.begin(src), []
        for t in range(1, tgt_in.shape[1] + 1):
            step_logits, state = model.step(tgt_in[:, :t], state)
            cached.append(step_logits)
            uncached, _ = model.step(tgt_in[:, :t], model.begin(src), use_cache=False)
            assert_close(uncached, full[:, t - 1])
    assert_close(torch.stack(cached, dim=1), full)
    assert state["length"] == tgt_in.shape[1]


@pytest.mark.parametrize("config", CONFIGS[:3], ids=lambda c: "-".join(map(str, c.values())))
def test_greedy_by_step_is_argmax_of_forward_on_its_own_outputs(config):
    model = make(**config).eval()
    src = tokens(4, 7, SRC_V, pad_from=[7, 5, 3, 6])
    with torch.no_grad():
        prefix, _ = greedy_by_step(model, src, steps=6)
        again = model(src, prefix[:, :-1]).argmax(-1)  # [B, 6]
    assert torch.equal(again, prefix[:, 1:])


def test_step_keeps_the_input_state_and_rejects_an_already_cached_prefix():
    model = make(attention="additive").eval()
    src = tokens(2, 5, SRC_V)
    state = model.begin(src)
    before = {k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)}
    prefix = torch.full((2, 1), BOS)
    _, new_state = model.step(prefix, state)
    assert all(torch.equal(state[k], v) for k, v in before.items())
    assert state["length"] == 0 and new_state["length"] == 1
    with pytest.raises(ShapeError, match="cache already covers 1"):
        model.step(prefix, new_state)


def test_state_tensors_are_batch_first_so_beams_can_reorder_them():
    model = make(
        cell="lstm", layers=2, bidirectional=True, attention="additive", input_feeding=True
    )
    model.eval()
    src = tokens(3, 4, SRC_V, pad_from=[4, 2, 3])
    state = model.begin(src)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    assert {"memory", "memory_mask", "h", "c", "feed"} <= set(tensors)
    assert all(v.shape[0] == 3 for v in tensors.values())
    order = torch.tensor([2, 0, 0])
    reordered = {k: (v.index_select(0, order) if k in tensors else v) for k, v in state.items()}
    prefix = torch.full((3, 1), BOS)
    with torch.no_grad():
        logits, _ = model.step(prefix, state)
        logits_reordered, _ = model.step(prefix, reordered)
    assert_close(logits_reordered, logits[order])


def test_padding_on_the_right_changes_nothing():
    # A bidirectional encoder packs the padded batch, and attention masks padded keys: a
    # sentence gives the same logits alone and padded inside a batch with a longer one.
    model = make(bidirectional=True, attention="additive").eval()
    alone = tokens(1, 4, SRC_V)
    batch = torch.cat(
        [torch.cat([alone, torch.zeros(1, 3, dtype=torch.long)], 1), tokens(1, 7, SRC_V)]
    )
    tgt_in = tokens(1, 5, TGT_V)
    with torch.no_grad():
        single = model(alone, tgt_in)
        padded = model(batch, torch.cat([tgt_in, tgt_in]))[:1]
        memory = model.encode(batch)["memory"]
    assert_close(padded, single)
    assert not memory[0, 4:].any()  # nothing is computed at padded positions


class ProbeAttention(nn.Module):
    """A user's attention written outside the library: uniform weights over unmasked keys."""

    calls: list = []

    def __init__(self, dim, heads=1):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None, mask=None, causal=False):
        ProbeAttention.calls.append((tuple(x.shape), tuple(context.shape), mask.dtype, causal))
        weights = mask.float() / mask.float().sum(-1, keepdim=True)  # [B, S]
        pooled = torch.einsum("bs,bsd->bd", weights, context)  # [B, D]
        return self.proj(pooled)[:, None].expand_as(x)  # [B, Tq, D]


def test_any_attention_part_is_called_with_the_attention_contract():
    ProbeAttention.calls.clear()
    model = make(attention=ProbeAttention, dim=6)
    src = tokens(2, 5, SRC_V, pad_from=[5, 2])
    model(src, tokens(2, 4, TGT_V))
    assert ProbeAttention.calls == [((2, 4, 6), (2, 5, 6), torch.bool, False)]
    model.eval()
    ProbeAttention.calls.clear()
    model.step(torch.full((2, 1), BOS), model.begin(src))
    assert ProbeAttention.calls == [((2, 1, 6), (2, 5, 6), torch.bool, False)]


def _attention_parts():
    return [n for n in nnblocks.list_parts("attention") if n not in ("parallel", "sequential")]


@pytest.mark.parametrize("name", _attention_parts())
def test_every_registered_attention_part_fits_the_slot(name):
    model = make(attention=name).eval()
    src, tgt_in = tokens(2, 5, SRC_V, pad_from=[5, 3]), tokens(2, 3, TGT_V)
    with torch.no_grad():
        full = model(src, tgt_in)
        _, by_step = greedy_by_step(model, src, steps=1)
        step_logits, _ = model.step(tgt_in, model.begin(src), use_cache=False)
    assert full.shape == (2, 3, TGT_V) and torch.isfinite(full).all()
    assert_close(step_logits, full[:, -1])
    assert by_step.shape == (2, 1, TGT_V)


# ---- teacher forcing ---------------------------------------------------------------------


def test_teacher_forcing_one_in_training_equals_eval_forward():
    model = make(attention="additive")
    src, tgt_in = tokens(3, 5, SRC_V), tokens(3, 6, TGT_V)
    model.teacher_forcing = 1.0
    train_out = model.train()(src, tgt_in)
    eval_out = model.eval()(src, tgt_in)
    assert_close(train_out, eval_out)


def test_teacher_forcing_zero_feeds_the_models_own_greedy_predictions():
    model = make(attention="multiplicative", input_feeding=True)
    src, tgt_in = tokens(3, 5, SRC_V), tokens(3, 6, TGT_V)
    tgt_in[:, 0] = BOS
    model.train()
    model.teacher_forcing = 0.0
    free_running = model(src, tgt_in)
    with torch.no_grad():  # dropout is 0, so train and eval compute the same function
        _, by_step = greedy_by_step(model.eval(), src, steps=6)
    assert_close(free_running, by_step)


def test_eval_forward_ignores_teacher_forcing():
    model = make(attention="additive").eval()
    src, tgt_in = tokens(2, 5, SRC_V), tokens(2, 6, TGT_V)
    with torch.no_grad():
        model.teacher_forcing = 1.0
        forced = model(src, tgt_in)
        model.teacher_forcing = 0.0
        again = model(src, tgt_in)
    assert_close(again, forced)


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.8, 1.0])
def test_ratio_sets_the_share_of_ground_truth_inputs(ratio):
    # The model can never predict token 4 (its head bias is hugely negative); the target is
    # all 4s after BOS, so the share of fed 4s is the share of ground-truth draws.
    model = make(attention="additive").train()
    with torch.no_grad():
        model.head.bias[4] = -1e4
    fed = []
    model.tgt_embedding.register_forward_hook(lambda m, args, out: fed.append(args[0]))
    B, T = 64, 9
    tgt_in = torch.full((B, T), 4)
    tgt_in[:, 0] = BOS
    model.teacher_forcing = ratio  # a callback changes it between batches like this
    model(tokens(B, 5, SRC_V), tgt_in)
    inputs = torch.cat(fed, dim=1)  # [B, T]
    assert torch.equal(inputs[:, 0], tgt_in[:, 0])
    share = (inputs[:, 1:] == 4).float().mean().item()
    assert abs(share - ratio) < 0.08


# ---- ties, specs, bad input --------------------------------------------------------------


def test_shared_and_tied_embeddings_are_one_parameter_and_declared():
    model = make(tgt_vocab_size=SRC_V, share_embeddings=True, tie_embeddings=True)
    assert model.src_embedding.weight is model.tgt_embedding.weight is model.head.weight
    assert model.tied_parameters == [
        ("src_embedding.weight", "tgt_embedding.weight", "head.weight")
    ]
    tied = make(tie_embeddings=True)
    assert tied.tied_parameters == [("tgt_embedding.weight", "head.weight")]
    assert tied.head.weight is tied.tgt_embedding.weight
    state = model.state_dict()
    for group in model.tied_parameters:
        assert all(name in state for name in group)
    untied = make(tgt_vocab_size=SRC_V)
    assert untied.tied_parameters == []
    count = sum(p.numel() for p in model.parameters())
    untied_count = sum(p.numel() for p in untied.parameters())
    assert untied_count - count == 2 * SRC_V * 8


def test_share_embeddings_needs_one_vocabulary():
    with pytest.raises(SpecError, match="share_embeddings.*src_vocab_size=13, tgt_vocab_size=11"):
        make(share_embeddings=True)


def test_tie_embeddings_needs_a_dim_wide_embedding():
    with pytest.raises(SpecError, match=r"tgt_embedding.*\[11, 8\]"):
        make(tgt_embedding={"name": "token", "dim": 4}, tie_embeddings=True)


def test_spec_round_trip_rebuilds_the_same_architecture():
    model = make(
        cell="gru",
        layers=2,
        bidirectional=True,
        attention={"name": "mha", "heads": 2},
        tie_embeddings=True,
        dropout=0.1,
        teacher_forcing=0.5,
    )
    spec = nnblocks.spec_of(model)
    assert json.loads(json.dumps(spec)) == spec
    again = nnblocks.build(spec)
    assert nnblocks.spec_of(again) == spec
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in again.state_dict().items()} == shapes
    assert again.tied_parameters == model.tied_parameters
    assert again.teacher_forcing == 0.5


def test_unknown_slot_fails_at_build_naming_it():
    with pytest.raises(SpecError, match=r"unknown argument `atention` \(did you mean `attention`"):
        make(atention="additive")


@pytest.mark.parametrize("wrong", ["relu", "norm/layer", {"name": "layer"}])
def test_wrong_kind_in_the_attention_slot_names_slot_and_kind(wrong):
    spec = {"name": "rnn_seq2seq", "src_vocab_size": 5, "tgt_vocab_size": 5, "attention": wrong}
    with pytest.raises(SpecError) as info:
        nnblocks.build(spec, "model", at="model")
    message = str(info.value)
    assert "model.attention" in message and "attention" in message.replace("model.attention", "")


@pytest.mark.parametrize(
    "options, match",
    [
        ({"cell": "transformer"}, "cell.*lstm"),
        ({"bidirectional": True, "dim": 7}, "even.*dim=7"),
        ({"teacher_forcing": 1.5}, r"teacher_forcing.*\[0, 1\]"),
        ({"layers": 0}, "layers.*positive"),
    ],
)
def test_bad_options_fail_at_build(options, match):
    with pytest.raises(SpecError, match=match):
        make(**options)


def test_bad_inputs_raise_shape_error_naming_the_model():
    model = make()
    with pytest.raises(ShapeError, match=r"rnn_seq2seq.*`src`.*\[B, T\].*float32"):
        model(torch.randn(2, 5), tokens(2, 3, TGT_V))
    with pytest.raises(ShapeError, match=r"rnn_seq2seq.*`tgt_in`.*\(2, 3, 1\)"):
        model(tokens(2, 5, SRC_V), tokens(2, 3, TGT_V)[..., None])
    with pytest.raises(ShapeError, match="same batch size"):
        model(tokens(2, 5, SRC_V), tokens(3, 3, TGT_V))
    with pytest.raises(ShapeError, match="begin"):
        model.begin(None)


def test_out_of_range_ids_fail_with_an_nnblocks_error():
    model = make()
    with pytest.raises(NNBlocksError):
        model(torch.full((2, 3), SRC_V + 5), tokens(2, 3, TGT_V))


# ---- integration with nnblocks.generate, the audit and training ----------------------------


def _pad_after_eos(tokens):
    ended = (tokens == EOS).long().cumsum(1) - (tokens == EOS).long() > 0  # after the 1st EOS
    return tokens.masked_fill(ended, PAD)


def test_generate_greedy_and_beam_work_on_the_protocol():
    generate = pytest.importorskip("nnblocks.generate")
    model = make(bidirectional=True, attention="additive", layers=2).eval()
    with torch.no_grad():
        model.head.bias[EOS] += 1.5  # let some sequences end early
    src = tokens(6, 6, SRC_V, pad_from=[6, 4, 5, 2, 6, 3])
    with torch.no_grad():
        mine, _ = greedy_by_step(model, src, steps=6)
        out = generate.greedy(model, src, max_new_tokens=6)
        uncached = generate.greedy(model, src, max_new_tokens=6, use_cache=False)
        beam_1 = generate.beam(model, src, beam_size=1, max_new_tokens=6)
        beam_3 = generate.beam(model, src, beam_size=3, max_new_tokens=6)
        beam_3_uncached = generate.beam(model, src, beam_size=3, max_new_tokens=6, use_cache=False)
    expected = _pad_after_eos(mine)[:, : out.shape[1]]
    assert (expected == EOS).any(), "the test wants some sequences to end early"
    assert torch.equal(out, expected)
    assert torch.equal(uncached, out)
    assert torch.equal(beam_1, out)
    assert torch.equal(beam_3, beam_3_uncached)
    assert beam_3.shape[0] == 6 and torch.equal(beam_3[:, 0], torch.full((6,), BOS))


@pytest.mark.parametrize(
    "options, training",
    [
        ({"tgt_vocab_size": SRC_V, "share_embeddings": True, "tie_embeddings": True}, False),
        ({"input_feeding": True, "bidirectional": True, "teacher_forcing": 0.5}, True),
    ],
    ids=["ties", "loops"],
)
def test_reuse_audit_passes(options, training):
    check = pytest.importorskip("nnblocks.check")
    model = make(**options).train(training)
    report = check.audit_reuse(model, tokens(2, 4, SRC_V), tokens(2, 3, model.head.out_features))
    assert report.ok, str(report)


@pytest.mark.slow
def test_learns_to_copy_a_short_sequence():
    torch.manual_seed(0)
    model = make(dim=32, bidirectional=True, attention="multiplicative")
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    for _ in range(150):
        src = torch.randint(3, SRC_V, (32, 4))
        tgt = torch.cat([src.clamp(max=TGT_V - 1), torch.full((32, 1), EOS)], 1)
        tgt_in = torch.cat([torch.full((32, 1), BOS), tgt[:, :-1]], 1)
        loss = loss_fn(model(src, tgt_in).flatten(0, 1), tgt.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    src = torch.randint(3, SRC_V, (64, 4))
    with torch.no_grad():
        prefix, _ = greedy_by_step(model, src, steps=5)
    target = torch.cat([src.clamp(max=TGT_V - 1), torch.full((64, 1), EOS)], 1)
    assert (prefix[:, 1:] == target).all(1).float().mean() > 0.9


# ---- the recipe --------------------------------------------------------------------------

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "rnn_numbers.yaml"


def test_recipe_model_builds_with_the_datasets_model_args():
    recipe = yaml.safe_load(RECIPE.read_text())
    assert recipe["data"] == {"name": "numbers", "lang": "de"}
    args = {"src_vocab_size": 34, "tgt_vocab_size": 31, "pad_id": 0, "bos_id": 1, "eos_id": 2}
    model = nnblocks.build(recipe["model"], "model", at="model", max_len=12, **args)
    assert (model.pad_id, model.bos_id, model.eos_id) == (0, 1, 2)
    assert model(tokens(2, 5, 34), tokens(2, 4, 31)).shape == (2, 4, 31)


@pytest.mark.slow
def test_recipe_runs_a_batch_of_its_dataset():
    recipe = yaml.safe_load(RECIPE.read_text())
    bundle = nnblocks.build(recipe["data"], "dataset")
    model = nnblocks.build(recipe["model"], "model", **bundle.task.model_args)
    batch = bundle.train[torch.arange(16)]
    loss = bundle.task.loss(model(*batch[:2]), *batch[2:])
    assert torch.isfinite(loss)


def test_save_and_load_keep_weights_and_ties(tmp_path):
    pytest.importorskip("nnblocks.io")
    model = make(
        tgt_vocab_size=SRC_V, share_embeddings=True, tie_embeddings=True, bidirectional=True
    )
    model.eval()
    nnblocks.save(model, tmp_path / "rnn")
    loaded = nnblocks.load(tmp_path / "rnn")
    src, tgt_in = tokens(2, 5, SRC_V), tokens(2, 4, SRC_V)
    with torch.no_grad():
        assert torch.equal(loaded(src, tgt_in), model(src, tgt_in))
    assert loaded.head.weight is loaded.src_embedding.weight
    assert loaded.tied_parameters == model.tied_parameters
