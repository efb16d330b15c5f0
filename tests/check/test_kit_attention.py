"""The attention contract: a correct plain attention passes; each planted fault is caught."""

import broken_parts as bp
import pytest
import torch
from torch import nn

import nnblocks
from nnblocks import registry
from nnblocks.check import assert_contract, check_part, compare_parts
from nnblocks.errors import RegistryError, SpecError


def test_plain_attention_passes_with_no_failure_or_warning():
    report = check_part("attention", bp.PlainAttention)
    assert report.ok, str(report)
    assert not report.warnings, str(report)
    passed = {r.name for r in report.passed}
    # every capability it offers is really checked, not skipped
    assert {
        "causal_leakage",
        "cache_self",
        "cache_cross",
        "need_weights",
        "dtype_float64",
    } <= passed
    assert {r.name for r in report.skipped} == {
        "torch_compile",
        "torch_export",
        "speed_memory_vs_mha",
    }


# fault -> the check that must fail because of it
FAULTS = [
    (bp.PeeksAtFuture, "causal_leakage"),
    (bp.IgnoresPadding, "padding_mask"),
    (bp.DeadParameter, "gradient"),
    (bp.MixesBatch, "batch_independence"),
    (bp.NaNOnFullyMasked, "fully_masked_finite"),
    (bp.ComputesInFloat32, "dtype_float64"),
    (bp.ComputesInFloat32, "dtype_bfloat16"),
    (bp.ComputesInBfloat16, "dtype_float64"),
    (bp.ForgetsCausalWithCache, "cache_self"),
    (bp.ScalesInputInPlace, "inputs_unchanged"),
]


def test_torch_errors_instead_of_shape_errors_only_warn():
    # DESIGN.md's contract is about shapes; naming the part is nnblocks' own convention,
    # so a third-party part that fails with torch's error still passes, with a warning.
    report = check_part("attention", bp.RaisesRuntimeError, only=["shape_errors"])
    assert report["shape_errors"].status == "warn", str(report)
    assert report.ok


def test_builtin_attention_parts_give_no_warnings():
    # The built-ins keep the stricter conventions: ShapeError and zero rows.
    for name in ("mha", "gqa", "local", "additive"):
        report = check_part("attention", name, only=["shape_errors", "fully_masked_zero"])
        assert not report.warnings and not report.failures, (name, str(report))


@pytest.mark.parametrize("part, check", FAULTS, ids=[f"{p.__name__}-{c}" for p, c in FAULTS])
def test_each_planted_fault_fails_its_check(part, check):
    report = check_part("attention", part, only=[check])
    assert report[check].status == "fail", str(report)
    assert not report[check].message.startswith("crashed"), report[check].message
    assert not report.ok


def test_faults_do_not_fail_unrelated_checks():
    # A fault in one place must not look like a fault everywhere (precise messages).
    report = check_part("attention", bp.DeadParameter)
    assert {r.name for r in report.failures} == {"gradient"}
    assert "gate" in report["gradient"].message
    report = check_part("attention", bp.IgnoresPadding)
    assert "causal_leakage" not in {r.name for r in report.failures}


def test_a_crashing_check_is_a_failure_not_a_crash():
    report = check_part("attention", bp.CrashesOnCross)
    record = report["shape_cross"]
    assert record.status == "fail"
    assert "crashed: RuntimeError: cross-attention not implemented" in record.message
    assert report["shape_self"].status == "pass"  # the kit went on


class NoCapabilities(bp.PlainAttention):
    """Correct, without cache= or need_weights=."""

    def forward(self, x, context=None, mask=None, causal=False):
        return super().forward(x, context, mask, causal)


def test_missing_capabilities_are_skipped_not_failed():
    report = check_part("attention", NoCapabilities)
    assert report.ok, str(report)
    for name in ("cache_self", "cache_reorder", "cache_cross", "need_weights"):
        assert report[name].status == "skip"


def test_every_form_of_part_is_accepted():
    registry.register("attention", "kit_test_plain")(bp.PlainAttention)
    try:
        by_name = check_part(
            "attention", "kit_test_plain", only=["shape_self", "state_dict_round_trip"]
        )
        by_spec = check_part(
            "attention", {"name": "kit_test_plain", "bias": False}, only=["shape_self"]
        )
        built = nnblocks.build("kit_test_plain", "attention", dim=16, heads=2)
        from_spec = check_part("attention", built, only=["shape_self", "state_dict_round_trip"])
    finally:
        registry._PARTS["attention"].pop("kit_test_plain")
    assert by_name.ok and by_spec.ok and from_spec.ok
    assert "rebuilt from its spec" in by_name["state_dict_round_trip"].message
    assert "[2, 7, 16]" in from_spec["shape_self"].message  # the instance's own width is used
    instance = check_part(
        "attention", bp.PlainAttention(48, 6), only=["shape_self", "state_dict_round_trip"]
    )
    assert instance.ok and "[2, 7, 48]" in instance["shape_self"].message
    assert "not checked" in instance["state_dict_round_trip"].message


def test_user_errors_are_nnblocks_errors():
    with pytest.raises(SpecError, match="did you mean `slow`"):
        check_part("attention", bp.PlainAttention, slwo=True)
    with pytest.raises(SpecError, match="Checks: signature"):
        check_part("attention", bp.PlainAttention, only=["no_such_check"])
    with pytest.raises(RegistryError):
        check_part("attention", "no_such_attention")
    with pytest.raises(SpecError, match="no contract for kind `model`"):
        check_part("model", nn.Linear(2, 2))


def test_assert_contract_fails_the_test_with_the_table():
    assert assert_contract("attention", bp.PlainAttention, only=["causal_leakage"]).ok
    with pytest.raises(AssertionError, match="causal_leakage") as info:
        assert_contract("attention", bp.PeeksAtFuture)
    assert "peeks at the future" in str(info.value)


class SDPAAttention(bp.PlainAttention):
    """The same parameters as PlainAttention, computed with the fused SDPA kernel."""

    def forward(self, x, context=None, mask=None, causal=False):
        B, T, D = x.shape
        source = x if context is None else context
        q, k, v = (self._split(f(t)) for f, t in ((self.q, x), (self.k, source), (self.v, source)))
        allowed = self.allowed(mask, causal, B, T, k.shape[2], 0, x.device)
        out = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.o(out.transpose(1, 2).reshape(B, T, D))


def test_against_same_weights_agree_per_dtype():
    report = compare_parts("attention", SDPAAttention, bp.PlainAttention)
    assert report.ok, str(report)
    assert [r.name for r in report] == ["against_float64", "against_float32", "against_bfloat16"]
    assert report["against_float64"].details["forward"] < 1e-12


def test_against_catches_a_lower_precision_kernel_and_mismatched_parameters():
    report = compare_parts("attention", bp.ComputesInBfloat16, bp.PlainAttention)
    assert report["against_float32"].status == "fail"
    assert report["against_bfloat16"].status == "pass"  # no worse than bfloat16 itself
    mismatch = compare_parts("attention", bp.DeadParameter, bp.PlainAttention)
    assert mismatch["against_parameters"].status == "fail"
    assert "gate" in mismatch["against_parameters"].message


def test_check_part_against_option_appends_the_comparison():
    report = check_part("attention", SDPAAttention, only=["shape_self"], against=bp.PlainAttention)
    assert [r.name for r in report] == [
        "shape_self",
        "against_float64",
        "against_float32",
        "against_bfloat16",
    ]


def test_checks_leave_the_users_module_untouched():
    part = bp.PlainAttention(32, 4)
    before = {k: v.clone() for k, v in part.state_dict().items()}
    part.train()
    check_part("attention", part)
    assert part.training
    assert all(torch.equal(before[k], v) for k, v in part.state_dict().items())


@pytest.mark.slow
def test_slow_checks_run_when_asked():
    report = check_part("attention", "mha", slow=True, only=["torch_export", "speed_memory_vs_mha"])
    assert report.ok, str(report)
    assert "vs mha" in report["speed_memory_vs_mha"].message
