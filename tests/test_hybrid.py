"""Tests of nnblocks.hybrid: hybridize (eager <-> compiled) and export (ONNX, torch.export).

torch.compile, torch.export and the dynamo ONNX exporter take many seconds on CPU, so those
tests are `slow`; the fast ones cover the decision logic with injected timings and fake
compilers, the equivalence failures, and ONNX through the (fast) TorchScript exporter.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch
from torch import nn

import nnblocks
from nnblocks.errors import NNBlocksError, SpecError
from nnblocks.hybrid import (
    EquivalenceError,
    ExportError,
    HybridResult,
    choose,
    compare,
    export_onnx,
    export_program,
    hybridize,
    tolerance,
)

D, H = 16, 2


def mha():
    return nnblocks.build("mha", "attention", dim=D, heads=H)


def identity_compile(model, **options):
    return model


def shifted_compile(shift):
    """A fake compiler whose 'compiled' model is off by ``shift`` (the equivalence check must see it)."""

    def compile_fn(model, **options):
        return lambda *args: model(*args) + shift

    return compile_fn


def fixed_times(eager, compiled):
    def time_fn(steps, *, warmup, repeats, sync):
        assert set(steps) == {"eager", "compiled"}
        return {"eager": eager, "compiled": compiled}

    return time_fn


class Noisy(nn.Module):
    """Dropout and BatchNorm: a training step changes RNG state and running statistics."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.norm = nn.BatchNorm1d(8)
        self.frozen = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.frozen(self.norm(self.lin(x))))


# --- choose and compare ------------------------------------------------------------------


def test_choose_needs_the_margin():
    assert choose(2.0, 1.0) == "compile"
    assert choose(1.0, 1.0) == "eager"
    assert choose(1.05, 1.0, min_speedup=1.1) == "eager"
    assert choose(1.1, 1.0, min_speedup=1.1) == "compile"
    assert choose(1.0, 0.0) == "eager"  # a zero time is a broken timer, not a speed-up


def test_tolerance_per_dtype_and_overrides():
    assert tolerance(torch.float32) == (1e-4, 1e-5)
    assert tolerance(torch.float16)[0] > tolerance(torch.float32)[0] > tolerance(torch.float64)[0]
    assert tolerance(torch.float32, rtol=0.5) == (0.5, 1e-5)
    assert tolerance(torch.int64) == (0.0, 0.0)


def test_compare_names_the_leaf_and_index_of_the_difference():
    a = {"logits": torch.zeros(2, 3), "aux": (torch.ones(4), 7)}
    b = {"logits": torch.zeros(2, 3), "aux": (torch.ones(4), 7)}
    b["logits"][1, 2] = 0.5
    result = compare(a, b)
    assert not result.ok
    assert result.max_diff == pytest.approx(0.5)
    assert "output['logits']" in result.where and "(1, 2)" in result.where
    assert compare(a, a).ok and compare(a, a).max_diff == 0.0


def test_compare_structure_shape_nan_and_plain_values():
    x = torch.tensor([1.0, float("nan")])
    assert compare(x, x.clone()).ok  # NaN at the same place on both sides is agreement
    assert not compare(x, torch.tensor([1.0, 2.0])).ok
    assert not compare((x, x), (x,)).ok
    assert "shape" in compare(torch.zeros(2, 3), torch.zeros(3, 2)).problem
    assert not compare((x, 1), (x, 2)).ok
    assert not compare(torch.tensor([3]), torch.tensor([4])).ok  # integers: exact


def test_compare_respects_tolerance():
    x = torch.ones(5)
    assert compare(x, x + 5e-6).ok
    assert not compare(x, x + 1e-3).ok
    assert compare(x, x + 1e-3, atol=1e-2).ok


# --- hybridize ---------------------------------------------------------------------------


def test_eager_returns_the_model_without_running_it():
    class Untouchable(nn.Module):
        def forward(self, x):
            raise AssertionError("eager mode must not run the model")

    model = Untouchable()
    result = hybridize(model, torch.randn(2, 3), "eager")
    assert result.mode == "eager" and result.model is model
    assert result.eager_s is None and result.max_diff is None


def test_compile_returns_the_checked_compiled_model():
    model, x = mha().eval(), torch.randn(2, 5, D)
    seen = {}

    def compile_fn(m, **options):
        seen.update(options, model=m)
        return lambda *a: m(*a)

    result = hybridize(
        model, x, "compile", compile_fn=compile_fn, compile_options={"dynamic": True}
    )
    assert result.mode == "compile" and result.model is not model
    assert seen == {"dynamic": True, "model": model}
    assert result.max_diff == 0.0 and result.compile_s is not None
    assert torch.equal(result.model(x), model(x))


def test_compile_raises_naming_the_largest_difference():
    model, x = mha(), torch.randn(2, 5, D)
    with pytest.raises(EquivalenceError, match=r"MultiHeadAttention|mha") as info:
        hybridize(model, x, "compile", compile_fn=shifted_compile(0.25))
    assert info.value.max_diff == pytest.approx(0.25, rel=1e-5)
    assert "output at index" in info.value.where
    assert "0.25" in str(info.value)
    assert isinstance(info.value, NNBlocksError)


def test_looser_tolerance_accepts_a_small_difference():
    model, x = mha(), torch.randn(2, 5, D)
    result = hybridize(model, x, "compile", compile_fn=shifted_compile(1e-3), atol=1e-2)
    assert result.mode == "compile" and result.max_diff == pytest.approx(1e-3, rel=1e-3)


def test_auto_falls_back_to_eager_when_compiled_differs(caplog):
    model, x = mha(), torch.randn(2, 5, D)
    with caplog.at_level(logging.WARNING, logger="nnblocks.hybrid"):
        result = hybridize(
            model, x, "auto", compile_fn=shifted_compile(0.5), time_fn=fixed_times(9, 1)
        )
    assert result.mode == "eager" and result.model is model
    assert result.max_diff == pytest.approx(0.5, rel=1e-5)
    assert "disagrees" in result.reason and "disagrees" in caplog.text


def test_compile_failure_raises_in_compile_mode_and_falls_back_in_auto():
    def broken(model, **options):
        def run(*args):
            raise RuntimeError("backend exploded")

        return run

    model, x = mha(), torch.randn(2, 5, D)
    with pytest.raises(
        ExportError, match="torch.compile failed on MultiHeadAttention.*backend exploded"
    ):
        hybridize(model, x, "compile", compile_fn=broken)
    result = hybridize(model, x, "auto", compile_fn=broken)
    assert result.mode == "eager" and "backend exploded" in result.reason


def test_an_error_of_the_eager_model_is_not_blamed_on_compile():
    with pytest.raises(RuntimeError, match="mat1 and mat2"):
        hybridize(nn.Linear(4, 4), torch.randn(2, 5), "auto", compile_fn=identity_compile)


@pytest.mark.parametrize(
    ("eager", "compiled", "expected"),
    [(2.0, 1.0, "compile"), (1.0, 0.95, "eager"), (1.0, 2.0, "eager")],
)
def test_auto_keeps_the_faster(eager, compiled, expected):
    model, x = mha().eval(), torch.randn(2, 5, D)
    fast = {}

    def compile_fn(m, **options):
        fast["model"] = lambda *a: m(*a)
        return fast["model"]

    result = hybridize(model, x, compile_fn=compile_fn, time_fn=fixed_times(eager, compiled))
    assert isinstance(result, HybridResult)
    assert result.mode == expected
    assert result.model is (fast["model"] if expected == "compile" else model)
    assert result.eager_s == eager and result.compiled_s == compiled
    assert result.speedup == pytest.approx(eager / compiled)
    assert result.max_diff == 0.0 and not result.backward
    assert f"mode={expected}" in str(result)


def test_auto_times_forward_and_backward_of_a_training_model_without_side_effects():
    model = Noisy().train()
    model.frozen.eval()  # a deliberately frozen BatchNorm must stay in eval mode
    x = torch.randn(6, 8)
    running = model.norm.running_mean.clone()
    rng = torch.get_rng_state()
    ran = {}

    def time_fn(steps, *, warmup, repeats, sync):
        for name, step in steps.items():
            step()
            ran[name] = [p.grad is not None for p in model.parameters()]
        return {"eager": 1.0, "compiled": 1.0}

    result = hybridize(model, x, compile_fn=identity_compile, time_fn=time_fn)
    assert result.backward and result.mode == "eager"
    assert all(ran["eager"]) and all(ran["compiled"])  # the steps ran backward
    assert all(p.grad is None for p in model.parameters())  # ... and left no gradients
    assert torch.equal(model.norm.running_mean, running)  # nor statistics
    assert torch.equal(torch.get_rng_state(), rng)  # nor used up random numbers
    assert model.training and model.norm.training and not model.frozen.training


def test_auto_times_forward_only_in_eval_mode():
    model = Noisy().eval()

    def time_fn(steps, *, warmup, repeats, sync):
        for step in steps.values():
            step()
        return {"eager": 1.0, "compiled": 1.0}

    result = hybridize(model, torch.randn(4, 8), compile_fn=identity_compile, time_fn=time_fn)
    assert not result.backward
    assert all(p.grad is None for p in model.parameters())


def test_loss_fn_gets_the_output_and_targets():
    model = nn.Linear(8, 3).train()
    x, y = torch.randn(4, 8), torch.randint(0, 3, (4,))
    calls = []

    def loss_fn(out, target):
        calls.append((out.shape, target))
        return nn.functional.cross_entropy(out, target)

    result = hybridize(
        model, x, loss_fn=loss_fn, targets=(y,), compile_fn=identity_compile, warmup=1, repeats=2
    )
    assert result.backward and result.eager_s is not None and result.eager_s > 0
    assert len(calls) == 2 * (1 + 2) and all(c[1] is y for c in calls)
    assert model.weight.grad is None


def test_real_timer_measures_both():
    model, x = mha().eval(), torch.randn(2, 5, D)
    result = hybridize(model, x, compile_fn=identity_compile, warmup=1, repeats=3)
    assert result.eager_s > 0 and result.compiled_s > 0


@pytest.mark.parametrize(
    "options",
    [{"mode": "fast"}, {"warmup": 0}, {"repeats": 0}, {"min_speedup": 0}, {"repeats": 2.5}],
)
def test_bad_options_raise_spec_errors(options):
    with pytest.raises(SpecError):
        hybridize(mha(), torch.randn(2, 5, D), compile_fn=identity_compile, **options)


# --- ONNX (TorchScript exporter: fast) ----------------------------------------------------


def run_onnx(path, *arrays):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {i.name: a for i, a in zip(session.get_inputs(), arrays)}
    return session.run(None, feeds)


def test_onnx_export_with_dynamic_batch_and_length(tmp_path):
    model = mha().train()
    path = tmp_path / "out" / "mha.onnx"
    result = export_onnx(model, torch.randn(2, 5, D), path, exporter="torchscript")
    assert path.is_file() and result.path == path and result.exporter == "torchscript"
    assert result.input_names == ("x",) and result.output_names == ("output",)
    assert result.dynamic_axes == {"x": {0: "batch", 1: "x_len"}}
    assert result.max_diff is not None and result.max_diff < 1e-5
    assert ((2, 5, D),) in result.checked_shapes and ((3, 4, D),) in result.checked_shapes
    assert model.training  # exported in eval mode, then restored
    x = torch.randn(4, 9, D)  # neither the export's batch nor its length
    (out,) = run_onnx(path, x.numpy())
    with torch.no_grad():
        expected = model.eval()(x)
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_onnx_static_axes_when_asked(tmp_path):
    result = export_onnx(
        mha(), torch.randn(2, 5, D), tmp_path / "m.onnx", exporter="torchscript",
        dynamic_batch=False, dynamic_sequence=False,
    )  # fmt: skip
    assert result.dynamic_axes == {"x": {}}
    assert result.checked_shapes == (((2, 5, D),),)


class FrozenBranch(nn.Module):
    """Tracing freezes the branch the example takes; other lengths then disagree."""

    def forward(self, x):
        if x.shape[1] > 4:
            return x * 2
        return x


def test_onnx_mismatch_raises_and_writes_nothing(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(EquivalenceError, match=r"\(3, 4, 3\).*Nothing was written") as info:
        export_onnx(FrozenBranch(), torch.randn(2, 5, 3), path, exporter="torchscript")
    assert info.value.max_diff > 0
    assert path.read_bytes() == b"previous"


def test_onnx_check_inputs_replace_the_automatic_variant(tmp_path):
    result = export_onnx(
        FrozenBranch(), torch.randn(2, 5, 3), tmp_path / "m.onnx", exporter="torchscript",
        check_inputs=[torch.randn(3, 6, 3)],
    )  # fmt: skip
    assert result.checked_shapes == (((3, 6, 3),),)


def test_onnx_without_check_skips_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    result = export_onnx(
        FrozenBranch(), torch.randn(2, 5, 3), tmp_path / "m.onnx", exporter="torchscript",
        check=False,
    )  # fmt: skip
    assert result.max_diff is None and (tmp_path / "m.onnx").is_file()


def test_missing_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError, match=r"onnxruntime.*pip install nnblocks\[export\]"):
        export_onnx(mha(), torch.randn(2, 5, D), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnxscript_names_the_extra_for_the_dynamo_exporter(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(ExportError, match=r"onnxscript.*pip install nnblocks\[export\]"):
        export_onnx(mha(), torch.randn(2, 5, D), tmp_path / "m.onnx", exporter="dynamo")


def test_auto_falls_back_to_torchscript_without_onnxscript(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = export_onnx(mha(), torch.randn(2, 5, D), tmp_path / "m.onnx")
    assert result.exporter == "torchscript" and result.max_diff < 1e-5


def test_both_exporters_failing_name_the_model_and_each_reason(tmp_path, monkeypatch):
    class Unexportable(nn.Module):
        def forward(self, x):
            if torch.jit.is_tracing():
                raise RuntimeError("cannot be traced")
            return x * 2

    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(
        ExportError, match=r"Unexportable.*dynamo: .*onnxscript.*torchscript: .*cannot be traced"
    ):
        export_onnx(Unexportable(), torch.randn(2, 5, 3), tmp_path / "m.onnx")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"exporter": "tf"}, "exporter"),
        ({"dynamic_axes": {"y": [0]}}, "input 'y'"),
        ({"dynamic_axes": {"x": {3: "d"}}}, "no axis 3"),
        ({"dynamic_axes": {5: [0]}}, "input 5"),
    ],
)
def test_bad_export_arguments(tmp_path, kwargs, message):
    with pytest.raises(SpecError, match=message):
        export_onnx(mha(), torch.randn(2, 5, D), tmp_path / "m.onnx", **kwargs)


def test_size_one_on_a_dynamic_axis_is_refused(tmp_path):
    with pytest.raises(SpecError, match="size 1 on its dynamic axis 0"):
        export_onnx(mha(), torch.randn(1, 5, D), tmp_path / "m.onnx")
    result = export_onnx(
        mha(), torch.randn(1, 5, D), tmp_path / "m.onnx", exporter="torchscript",
        dynamic_batch=False,
    )  # fmt: skip
    assert result.dynamic_axes == {"x": {1: "x_len"}}


def test_default_axes_follow_the_batch_first_contract(tmp_path):
    from nnblocks.hybrid._shapes import dynamic_axes_for

    args = (torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 4), torch.zeros(2, 3, 8, 8))
    axes = dynamic_axes_for(
        args, ["tokens", "features", "image"], batch=True, sequence=True, overrides=None,
        where="test",
    )  # fmt: skip
    assert axes == {
        "tokens": {0: "batch", 1: "tokens_len"},
        "features": {0: "batch"},
        "image": {0: "batch"},
    }


# --- slow: torch.compile, the dynamo exporter, torch.export --------------------------------


@pytest.mark.slow
def test_real_compile_agrees_and_auto_decides():
    model = nnblocks.build({"name": "mlp", "in_features": 8, "out_features": 3}, "model")
    x = torch.randn(16, 8)
    result = hybridize(model.eval(), x, "compile")
    assert result.mode == "compile" and result.max_diff < 1e-5
    torch.testing.assert_close(result.model(x), model(x))
    auto = hybridize(model.train(), x, "auto", warmup=2, repeats=5)
    assert auto.backward and auto.eager_s > 0 and auto.compiled_s > 0
    assert auto.mode in ("eager", "compile")


@pytest.mark.slow
def test_dynamo_onnx_export_of_a_transformer_at_other_sizes(tmp_path):
    model = nnblocks.build(
        {"name": "transformer_lm", "vocab_size": 40, "dim": 16, "heads": 2, "layers": 1,
         "pad_id": None}
    )  # fmt: skip
    tokens = torch.randint(3, 40, (2, 6))
    result = export_onnx(model, tokens, tmp_path / "lm.onnx", exporter="dynamo")
    assert result.exporter == "dynamo" and result.max_diff < 1e-4
    other = torch.randint(3, 40, (3, 9))
    (logits,) = run_onnx(tmp_path / "lm.onnx", other.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(logits, model.eval()(other).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_export_program_is_dynamic_and_failures_name_the_model():
    model, x = mha(), torch.randn(2, 5, D)
    program = export_program(model, x)
    other = torch.randn(3, 7, D)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(other), model.eval()(other))

    class ValueBranch(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with pytest.raises(ExportError, match=r"could not capture ValueBranch.*x.sum\(\) > 0"):
        export_program(ValueBranch(), x)


def test_token_model_export_traces_the_padding_mask(tmp_path):
    model = nnblocks.build(
        {"name": "transformer_classifier", "vocab_size": 40, "num_classes": 3, "dim": D,
         "heads": H, "layers": 1, "pad_id": 0}
    )  # fmt: skip
    unpadded = torch.randint(3, 40, (2, 6))
    # Eagerly the model skips its mask when nothing is padded; while tracing it keeps the
    # mask, so even an unpadded example exports a graph that respects padding (the check's
    # padded variant would catch a frozen shortcut).
    result = export_onnx(model, unpadded, tmp_path / "u.onnx", exporter="torchscript")
    assert result.max_diff < 1e-4
    padded = unpadded.clone()
    padded[1, -2:] = 0
    result = export_onnx(model, padded, tmp_path / "c.onnx", exporter="torchscript")
    assert result.max_diff < 1e-4
    other = torch.randint(3, 40, (3, 8))
    other[2, -3:] = 0
    (scores,) = run_onnx(tmp_path / "c.onnx", other.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(scores, model.eval()(other).numpy(), rtol=1e-4, atol=1e-5)


# --- issue 14: every registered attention exports; the decoder step exports with its cache --


def _attention_spec(name):
    extra = {
        "local": {"window": 4},  # shorter than the example, so the window cuts
        "parallel": {"branches": ["mha", "local"]},
        "sequential": {"parts": ["mha", "gqa"]},
    }
    return {"name": name, **extra.get(name, {})}


class _SelfAttention(torch.nn.Module):
    def __init__(self, part, causal):
        super().__init__()
        self.part, self.causal = part, causal

    def forward(self, x):
        return self.part(x, causal=self.causal)


@pytest.mark.slow
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("name", nnblocks.list_parts("attention"))
def test_every_registered_attention_exports_with_dynamic_batch_and_length(tmp_path, name, causal):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    part = nnblocks.build(_attention_spec(name), "attention", dim=16, heads=2)
    # Length 13 > 2 * window: `local` takes its blocked path in eager, which failed to export.
    result = export_onnx(_SelfAttention(part, causal), torch.randn(2, 13, 16), tmp_path / "a.onnx")
    assert result.checked_shapes == (((2, 13, 16),), ((3, 12, 16),))
    assert result.max_diff is not None and result.max_diff < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("position", ["sinusoidal", "rotary"])
def test_decoder_step_exports_with_its_cache_and_decodes_the_same_tokens(tmp_path, position):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from nnblocks.hybrid import export_decoder_step, onnx_greedy

    torch.manual_seed(0)
    model = nnblocks.build(
        {"name": "transformer_seq2seq", "vocab_size": 23, "dim": 16, "heads": 2,
         "encoder_layers": 2, "decoder_layers": 2, "position": position,
         "tie_embeddings": False}
    ).eval()  # fmt: skip
    with torch.no_grad():  # sharper weights: varied tokens make the comparison meaningful
        for param in model.parameters():
            if param.dim() >= 2:
                param.mul_(3)
    src = torch.randint(3, 23, (3, 7))
    src[0, 5:] = 0  # a padded source
    exported = export_decoder_step(model, src, tmp_path / "step.onnx")
    assert exported.input_names[4:6] == ("past_key_0", "past_value_0")
    assert exported.output_names[:3] == ("logits", "present_key_0", "present_value_0")
    session = ort.InferenceSession(str(exported.path))
    for batch, length in [(3, 7), (5, 4)]:  # other batch and source sizes than the example
        src = torch.randint(3, 23, (batch, length))
        src[0, -1] = 0
        expected = nnblocks.generate.greedy(model, src, max_new_tokens=12)
        assert torch.equal(onnx_greedy(session, model, src, 12), expected)
        assert len(set(expected[:, 1:].flatten().tolist())) > 2


def test_decoder_step_export_refuses_a_model_without_a_decoder(tmp_path):
    from nnblocks.hybrid import export_decoder_step

    model = nnblocks.build({"name": "transformer_lm", "vocab_size": 11, "dim": 8, "heads": 2})
    with pytest.raises(SpecError, match="transformer_seq2seq"):
        export_decoder_step(model, torch.randint(3, 11, (2, 4)), tmp_path / "s.onnx")
