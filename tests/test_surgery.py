"""Tests of nnblocks.surgery: slots, swap (with weights and the recorded spec), freeze, groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks import surgery
from nnblocks.errors import SpecError, TrainingError

D, H, V = 16, 4, 40
ATTENTION = "decoder.layers.*.self_attention"


def small_lm(**options):
    spec = {"name": "transformer_lm", "vocab_size": V, "dim": D, "heads": H, "layers": 2}
    return nnblocks.build({**spec, **options}).eval()


def tokens(batch=2, length=7):
    return torch.randint(3, V, (batch, length))


def same_architecture(a: nn.Module, b: nn.Module) -> bool:
    shapes = {n: t.shape for n, t in a.state_dict().items()}
    return shapes == {n: t.shape for n, t in b.state_dict().items()} and [
        type(m) for m in a.modules()
    ] == [type(m) for m in b.modules()]


# --- slots -------------------------------------------------------------------------------


def test_slots_list_the_parts_with_kind_and_name():
    found = {s.path: (s.kind, s.name) for s in surgery.slots(small_lm())}
    assert found["decoder.layers.1.self_attention"] == ("attention", "mha")
    assert found["decoder.layers.0"] == ("block", "transformer")
    assert found["decoder.final_norm"] == ("norm", "layer")
    assert "" not in found  # the model itself is not a slot
    assert "decoder.layers.0.self_attention.q_proj" not in found  # a plain nn.Linear


# --- swap --------------------------------------------------------------------------------


def test_swap_builds_with_the_old_arguments_and_copies_matching_weights():
    model = small_lm()
    old = model.decoder.layers[0].self_attention
    done = surgery.swap(model, ATTENTION, {"name": "gqa", "kv_heads": 2})
    assert [s.paths for s in done] == [
        ("decoder.layers.0.self_attention",),
        ("decoder.layers.1.self_attention",),
    ]
    new = model.decoder.layers[0].self_attention
    assert nnblocks.kind_of(new) == "attention" and nnblocks.spec_of(new)["name"] == "gqa"
    assert nnblocks.spec_of(new)["heads"] == H and nnblocks.spec_of(new)["dim"] == D  # from the old
    assert torch.equal(new.q_proj.weight, old.q_proj.weight)  # same name and shape: copied
    assert "q_proj.weight" in done[0].copied
    assert "k_proj.weight" in done[0].fresh  # 2 kv heads: another shape, left as built
    assert not new.training  # the model was in eval mode
    assert model(tokens()).shape == (2, 7, V)


def test_new_spec_options_override_the_old_arguments():
    model = small_lm()
    surgery.swap(model, "decoder.layers.0.self_attention", {"name": "mha", "heads": 2})
    assert nnblocks.spec_of(model.decoder.layers[0].self_attention)["heads"] == 2
    assert nnblocks.spec_of(model.decoder.layers[1].self_attention)["heads"] == H


def test_an_equivalent_swap_with_copied_weights_keeps_the_outputs():
    model, x = small_lm(), tokens()
    before = model(x)
    surgery.swap(model, ATTENTION, {"name": "mha", "dropout": 0.3})  # same weights, eval mode
    assert nnblocks.spec_of(model.decoder.layers[0].self_attention).get("dropout") == 0.3
    assert torch.equal(model(x), before)  # the very same computation


def test_copy_weights_false_keeps_fresh_weights():
    model, x = small_lm(), tokens()
    before = model(x)
    done = surgery.swap(model, "decoder.layers.*.feedforward", "mlp", copy_weights=False)
    assert done[0].copied == () and "up.weight" in done[0].fresh
    assert not torch.allclose(model(x), before)


def test_copy_weights_true_fails_on_a_mismatch_and_changes_nothing():
    model = small_lm()
    old = model.decoder.layers[0].self_attention
    spec_before = nnblocks.spec_of(model)
    with pytest.raises(SpecError, match=r"decoder.layers.0.self_attention.*k_proj.weight"):
        surgery.swap(model, ATTENTION, {"name": "gqa", "kv_heads": 2}, copy_weights=True)
    assert model.decoder.layers[0].self_attention is old
    assert nnblocks.spec_of(model) == spec_before


def test_swapped_model_saves_and_loads_as_swapped(tmp_path):
    model, x = small_lm(), tokens()
    surgery.swap(model, ATTENTION, {"name": "gqa", "kv_heads": 2})
    surgery.swap(model, "*_norm", "rms")
    assert nnblocks.spec_of(model)["surgery"] == [
        {"pattern": ATTENTION, "spec": {"name": "gqa", "kv_heads": 2}},
        {"pattern": "*_norm", "spec": "rms"},
    ]
    nnblocks.save(model, tmp_path / "lm")
    loaded = nnblocks.load(tmp_path / "lm")
    assert same_architecture(loaded, model)
    assert nnblocks.spec_of(loaded.decoder.layers[1].self_attention)["name"] == "gqa"
    assert nnblocks.spec_of(loaded.decoder.layers[1].feedforward_norm)["name"] == "rms"
    assert nnblocks.spec_of(loaded) == nnblocks.spec_of(model)
    assert torch.equal(loaded(x), model(x))


def test_build_replays_the_recorded_surgery():
    model = small_lm()
    surgery.swap(model, "decoder.layers.1.feedforward", "swiglu")
    rebuilt = nnblocks.build(nnblocks.spec_of(model))
    assert same_architecture(rebuilt, model)
    assert nnblocks.spec_of(rebuilt)["surgery"] == nnblocks.spec_of(model)["surgery"]


def test_record_false_leaves_the_spec_alone():
    model = small_lm()
    spec = nnblocks.spec_of(model)
    surgery.swap(model, "decoder.final_norm", "rms", record=False)
    assert nnblocks.spec_of(model) == spec


def test_a_pattern_matching_nothing_lists_close_slots():
    with pytest.raises(
        SpecError, match=r"decoder.layer.\*.self_attention.*decoder.layers.\d.self_attention"
    ):
        surgery.swap(small_lm(), "decoder.layer.*.self_attention", "gqa")
    with pytest.raises(SpecError, match=r"Close slots: decoder"):
        surgery.swap(small_lm(), "decoder.zzz*", "gqa")


@pytest.mark.parametrize("spec", ["layer", "norm/rms", {"name": "rms"}])
def test_a_spec_of_another_kind_names_the_slot_and_kind(spec):
    model = small_lm()
    with pytest.raises(SpecError, match=r"decoder.layers.0.self_attention.*attention"):
        surgery.swap(model, ATTENTION, spec)
    assert nnblocks.spec_of(model.decoder.layers[0].self_attention)["name"] == "mha"


def test_the_outermost_match_is_swapped():
    model = small_lm()
    done = surgery.swap(model, "decoder.layers.0*", {"name": "transformer", "norm": "rms"})
    assert [s.paths for s in done] == [("decoder.layers.0",)]
    assert nnblocks.spec_of(model.decoder.layers[0].feedforward_norm)["name"] == "rms"
    assert nnblocks.spec_of(model.decoder.layers[1].feedforward_norm)["name"] == "layer"


def test_a_shared_part_is_replaced_everywhere_by_one_part():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.first = nnblocks.build("layer", "norm", dim=8)
            self.second = self.first

    model = Shared()
    (done,) = surgery.swap(model, "first", "rms")
    assert done.paths == ("first", "second")
    assert model.first is model.second and nnblocks.spec_of(model.first)["name"] == "rms"
    assert nnblocks.spec_of(model.first)["dim"] == 8


def test_a_module_without_a_spec_needs_a_kind():
    model = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
    with pytest.raises(SpecError, match=r"`1`.*LayerNorm.*kind="):
        surgery.swap(model, "1", "rms")
    with pytest.raises(SpecError, match="dim"):  # nothing to take `dim` from: the spec says it
        surgery.swap(model, "1", "rms", kind="norm")
    surgery.swap(model, "1", {"name": "rms", "dim": 8}, kind="norm")
    assert nnblocks.kind_of(model[1]) == "norm"
    with pytest.raises(SpecError, match="holds a `norm` part.*kind='attention'"):
        surgery.swap(model, "1", "mha", kind="attention")


def test_a_ready_module_fills_one_slot_and_keeps_its_weights(tmp_path):
    model = small_lm()
    ready = nnblocks.build({"name": "gqa", "kv_heads": 1}, "attention", dim=D, heads=H)
    weight = ready.q_proj.weight.detach().clone()
    with pytest.raises(SpecError, match="one slot"):
        surgery.swap(model, ATTENTION, ready)
    surgery.swap(model, "decoder.layers.0.self_attention", ready)
    assert model.decoder.layers[0].self_attention is ready
    assert torch.equal(ready.q_proj.weight, weight)
    assert nnblocks.spec_of(model)["surgery"][0]["spec"]["name"] == "gqa"  # plain data
    nnblocks.save(model, tmp_path / "m")
    assert same_architecture(nnblocks.load(tmp_path / "m"), model)


def test_swapping_a_tied_head_updates_the_declared_sharing():
    model = small_lm()
    assert model.tied_parameters == [("embedding.weight", "head.weight")]
    surgery.swap(model, "head", "linear")
    assert model.tied_parameters == []
    assert torch.equal(model.head.weight, model.embedding.weight)  # copied, not shared
    assert model.head.weight is not model.embedding.weight


def test_the_new_part_takes_the_dtype_and_mode_of_the_old():
    model = small_lm().double().train()
    surgery.swap(model, "decoder.final_norm", "rms")
    assert model.decoder.final_norm.weight.dtype == torch.float64
    assert model.decoder.final_norm.training
    assert model(tokens()).dtype == torch.float64


def test_bad_copy_weights_value():
    with pytest.raises(SpecError, match="copy_weights"):
        surgery.swap(small_lm(), "head", "linear", copy_weights="yes")


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ("rms", "list of"),
        ([{"spec": "rms"}], r"surgery\[0\]"),
        ([{"pattern": "head", "spec": "linear", "extra": 1}], r"surgery\[0\].*extra"),
        ([{"pattern": "nothing.here", "spec": "rms"}], "matches no module"),
    ],
)
def test_malformed_surgery_in_a_spec(records, message):
    spec = {"name": "transformer_lm", "vocab_size": V, "dim": D, "heads": H, "layers": 1}
    with pytest.raises(SpecError, match=message):
        nnblocks.build({**spec, "surgery": records})


# --- freeze and parameter groups ----------------------------------------------------------


def test_freeze_and_unfreeze_are_the_learners():
    import importlib

    train_freeze = importlib.import_module("nnblocks.train.freeze")

    assert surgery.freeze is train_freeze.freeze and surgery.unfreeze is train_freeze.unfreeze
    model = small_lm()
    surgery.freeze(model, "decoder.layers.0")
    assert not any(p.requires_grad for p in model.decoder.layers[0].parameters())
    assert all(p.requires_grad for p in model.decoder.layers[1].parameters())


def test_param_groups_apply_multipliers_in_priority_order():
    model = small_lm(tie_embeddings=False)
    groups = surgery.param_groups(model, {"decoder.layers.0": 0.1, "decoder": 0.5}, lr=1e-3)
    assert [g["lr_mult"] for g in groups] == [0.1, 0.5, 1.0]
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 5e-4, 1e-3])
    first, second, rest = (set(g["names"]) for g in groups)
    assert all(n.startswith("decoder.layers.0.") for n in first)
    assert any(n.startswith("decoder.layers.1.") for n in second) and not first & second
    assert {"embedding.weight", "head.weight"} <= rest
    total = sum(len(g["params"]) for g in groups)
    assert total == len(list(model.parameters()))
    assert all(isinstance(p, nn.Parameter) for g in groups for p in g["params"])


def test_param_groups_errors():
    with pytest.raises(TrainingError, match="encoderz"):
        surgery.param_groups(small_lm(), {"encoderz": 0.1})
    with pytest.raises(SpecError, match="multiplier"):
        surgery.param_groups(small_lm(), {"decoder": 0})


# --- beside ------------------------------------------------------------------------------


def _trained_lm():
    torch.manual_seed(0)
    model = small_lm()
    with torch.no_grad():  # weights far from any init, as after training
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("merge", ["gate", "concat"])
def test_beside_keeps_the_trained_part_and_its_outputs(merge):
    model = _trained_lm()
    x = tokens()
    before = model(x)
    old = model.decoder.layers[0].self_attention
    done = surgery.beside(model, ATTENTION, {"name": "local", "window": 3}, merge=merge)
    assert [d.paths for d in done] == [(f"decoder.layers.{i}.self_attention",) for i in (0, 1)]
    assert [(d.old, d.new) for d in done] == [("mha", "local")] * 2
    combined = model.decoder.layers[0].self_attention
    assert nnblocks.kind_of(combined) == "attention"
    assert combined.branches[0] is old  # the trained module itself, weights untouched
    torch.testing.assert_close(model(x), before, atol=1e-6, rtol=0)
    record = nnblocks.spec_of(model)["surgery"][-1]
    assert record == {
        "op": "beside",
        "pattern": ATTENTION,
        "spec": {"name": "local", "window": 3},
        "merge": merge,
    }


def test_beside_saves_and_reloads_with_the_same_outputs(tmp_path):
    model = _trained_lm()
    surgery.beside(model, "decoder.layers.1.self_attention", "mha")
    with torch.no_grad():  # move the new branch and the gate, as training would
        for name, p in model.named_parameters():
            if ".branches.1." in name or ".gate." in name:
                p.add_(0.2 * torch.randn_like(p))
    nnblocks.save(model, tmp_path / "m")
    loaded = nnblocks.load(tmp_path / "m").eval()
    assert same_architecture(loaded, model)
    x = tokens()
    torch.testing.assert_close(loaded(x), model(x), atol=1e-6, rtol=0)
    from nnblocks.slots import inserted

    assert inserted(loaded) == [
        "decoder.layers.1.self_attention.branches.1",
        "decoder.layers.1.self_attention.gate",
    ]


def test_training_moves_the_new_branch_from_the_trained_outputs():
    model = _trained_lm().train()
    surgery.beside(model, ATTENTION, "mha")
    surgery.freeze(model)
    surgery.unfreeze(model, "*.branches.1", "*.gate")
    new = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    old = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert new and all(".branches.1." in n or ".gate." in n for n in new)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = tokens(4, 9)
    for _ in range(5):
        logits = model(x[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    params = dict(model.named_parameters())
    assert all(not torch.equal(params[n], t) for n, t in new.items() if n.endswith("gate.weight"))
    moved = [n for n, t in new.items() if ".branches.1." in n and not torch.equal(params[n], t)]
    assert moved  # the new branch itself learns once its gate has opened
    assert all(torch.equal(params[n], t) for n, t in old.items())


def test_beside_bad_input_names_the_pattern_and_changes_nothing():
    model = small_lm()
    spec_before = nnblocks.spec_of(model)
    types_before = [type(m) for m in model.modules()]
    with pytest.raises(SpecError, match=r"decoder\.layer\.\*\.self_attention.*Close slots"):
        surgery.beside(model, "decoder.layer.*.self_attention", "mha")
    with pytest.raises(
        SpecError,
        match=r"(?s)feedforward.*feedforward` \(a feedforward part\).*Close attention slots: decoder\.layers",
    ):
        surgery.beside(model, "decoder.layers.*.feedforward", "mha")
    # one match of the right kind and one of another: nothing half-applied
    with pytest.raises(SpecError, match="a norm part"):
        surgery.beside(model, "decoder.layers.0.self_attention*", "mha")
    with pytest.raises(SpecError, match="merge"):
        surgery.beside(model, ATTENTION, "mha", merge="sum")
    with pytest.raises(SpecError, match="feedforward"):
        surgery.beside(model, ATTENTION, "mlp")  # a part of another kind
    assert nnblocks.spec_of(model) == spec_before
    assert [type(m) for m in model.modules()] == types_before


def test_beside_in_a_recipe_style_spec():
    spec = {"name": "transformer_lm", "vocab_size": V, "dim": D, "heads": H, "layers": 2}
    records = [{"op": "beside", "pattern": ATTENTION, "spec": "mha", "merge": "gate"}]
    model = nnblocks.build({**spec, "surgery": records})
    assert nnblocks.spec_of(model.decoder.layers[0].self_attention)["name"] == "parallel"
    with pytest.raises(SpecError, match=r"surgery\[0\].*kind"):
        nnblocks.build({**spec, "surgery": [{**records[0], "kind": "attention"}]})
    with pytest.raises(SpecError, match=r"surgery\[0\].*op"):
        nnblocks.build({**spec, "surgery": [{**records[0], "op": "next_to"}]})
