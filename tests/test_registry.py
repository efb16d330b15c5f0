"""Registry and spec behaviour: building, errors that name the place, plugins, the CLI."""

import sys

import pytest
import torch
from torch import nn

import nnblocks
from nnblocks import registry
from nnblocks.cli import main
from nnblocks.errors import RegistryError, SpecError


@pytest.fixture
def scratch_registry():
    """Undo every registration a test makes."""
    saved = {kind: dict(parts) for kind, parts in registry._PARTS.items()}
    yield
    registry._PARTS.clear()
    registry._PARTS.update(saved)


class Scale(nn.Module):
    """Multiplies by a learned per-feature scale."""

    def __init__(self, dim, init=1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.full((dim,), float(init)))

    def forward(self, x):
        return x * self.weight


# -- building ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["relu", "activation/relu", "activation:relu", {"name": "relu"}])
def test_build_by_name_qualified_name_and_dict(spec):
    act = nnblocks.build(spec, "activation")
    assert type(act) is nnblocks.get_part("activation", "relu")
    assert nnblocks.spec_of(act) == {"name": "relu"}
    assert nnblocks.kind_of(act) == "activation"


def test_build_unique_name_without_kind():
    norm = nnblocks.build("rms", dim=4)
    assert nnblocks.kind_of(norm) == "norm"


def test_build_dict_options_override_offered_defaults_and_unused_defaults_are_dropped():
    norm = nnblocks.build({"name": "layer", "eps": 0.5}, "norm", dim=4, eps=1e-3, heads=2)
    assert norm.eps == 0.5
    assert nnblocks.spec_of(norm) == {"name": "layer", "dim": 4, "eps": 0.5}


def test_build_by_class_and_factory():
    part = nnblocks.build(Scale, "norm", dim=3, heads=7)  # heads is not taken: not passed
    assert part.weight.shape == (3,)
    made = nnblocks.build(lambda dim: nn.Linear(dim, dim), "feedforward", dim=5)
    assert made.in_features == 5


def test_build_instance_is_returned_as_is():
    ready = nn.Tanh()
    assert nnblocks.build(ready, "activation") is ready


def test_spec_round_trip_rebuilds_the_same_architecture():
    ff = nnblocks.build({"name": "mlp", "hidden": 7, "activation": "relu"}, "feedforward", dim=4)
    spec = nnblocks.spec_of(ff)
    assert spec == {"name": "mlp", "dim": 4, "hidden": 7, "activation": "relu"}
    spec["hidden"] = 99  # a copy: changing it leaves the module's record alone
    assert nnblocks.spec_of(ff)["hidden"] == 7
    again = nnblocks.build(nnblocks.spec_of(ff), nnblocks.kind_of(ff))
    assert [p.shape for p in again.parameters()] == [p.shape for p in ff.parameters()]


def test_spec_of_a_plain_module_fails_clearly():
    with pytest.raises(SpecError, match="not built from a spec"):
        nnblocks.spec_of(nn.Linear(2, 2))


@pytest.mark.parametrize("spec", [42, "", {"heads": 2}, {"name": 3}])
def test_malformed_spec(spec):
    with pytest.raises(SpecError, match=r"at `model.norm`"):
        nnblocks.build(spec, "norm", at="model.norm", dim=4)


# -- unknown names ----------------------------------------------------------------------


def test_unknown_part_suggests_closest_and_lists_kind():
    with pytest.raises(RegistryError) as info:
        nnblocks.build("rleu", "activation", at="model.act")
    message = str(info.value)
    assert "model.act" in message
    assert "Did you mean `relu`?" in message
    assert "Known activation parts:" in message and "gelu" in message and "silu" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, nnblocks.NNBlocksError)


def test_unknown_kind_suggests_closest():
    with pytest.raises(RegistryError, match=r"unknown kind `nrom`. Did you mean `norm`\?"):
        nnblocks.build("layer", "nrom")


def test_unknown_name_without_kind_lists_every_part():
    with pytest.raises(
        RegistryError, match=r"no part named `swigl`.*Did you mean `swiglu`.*norm/rms"
    ):
        nnblocks.build("swigl")


def test_get_part_unknown_name():
    with pytest.raises(RegistryError, match="Known norm parts: batch, layer, rms"):
        nnblocks.get_part("norm", "group")


# -- arguments --------------------------------------------------------------------------


def test_unknown_argument_names_path_closest_and_accepted_arguments():
    with pytest.raises(SpecError) as info:
        nnblocks.build({"name": "layer", "epss": 1e-3}, "norm", dim=4, at="model.encoder.norm")
    message = str(info.value)
    assert message.startswith("at `model.encoder.norm`")
    assert "unknown argument `epss` (did you mean `eps`?)" in message
    assert "Accepted arguments: dim, eps=1e-05, bias=True" in message
    assert info.value.path == "model.encoder.norm"


def test_missing_argument_names_path_and_accepted_arguments():
    with pytest.raises(
        SpecError,
        match=r"at `model.embedding`: missing required argument `vocab_size`.*scale=False",
    ):
        nnblocks.build("token", "embedding", dim=4, at="model.embedding")


def test_nested_build_extends_the_spec_path():
    spec = {"name": "mlp", "activation": {"name": "gelu", "aproximate": "tanh"}}
    with pytest.raises(SpecError) as info:
        nnblocks.build(spec, "feedforward", dim=4, at="model.layers.0.feedforward")
    assert info.value.path == "model.layers.0.feedforward.activation"
    assert "did you mean `approximate`?" in str(info.value)


def test_constructor_value_error_is_reported_with_place_and_arguments(scratch_registry):
    @nnblocks.register("norm", "picky_test_norm")
    class Picky(nn.Module):
        def __init__(self, dim):
            super().__init__()
            if dim % 2:
                raise ValueError("dim must be even")

    with pytest.raises(SpecError, match=r"at `m.n`: norm part `picky_test_norm`.*dim=3.*even"):
        nnblocks.build("picky_test_norm", "norm", dim=3, at="m.n")


# -- registration -----------------------------------------------------------------------


def test_double_registration_fails_unless_override(scratch_registry):
    @nnblocks.register("activation", "twice_test")
    class First(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(
        RegistryError, match=r"`activation/twice_test` is already registered.*override=True"
    ):

        @nnblocks.register("activation", "twice_test")
        class Second(nn.Module):
            def forward(self, x):
                return -x

    @nnblocks.register("activation", "twice_test", override=True)
    class Third(nn.Module):
        def forward(self, x):
            return 2 * x

    assert nnblocks.get_part("activation", "twice_test") is Third
    nnblocks.register("activation", "twice_test")(Third)  # the same object again is harmless


def test_registering_over_a_builtin_fails(scratch_registry):
    with pytest.raises(RegistryError, match="already registered"):
        nnblocks.register("norm", "layer")(Scale)


def test_register_before_first_lookup_sees_builtins(scratch_registry, monkeypatch, tmp_path):
    # Regression: a user's registration that runs before the lazy import of the built-ins
    # used to succeed and then break that import (or be silently undone).
    (tmp_path / "nnb_fake_builtins.py").write_text(
        "import nnblocks\nfrom torch import nn\n\n"
        "@nnblocks.register('activation', 'fake_builtin_test')\n"
        "class Fake(nn.Module):\n    def forward(self, x):\n        return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_BUILTIN_MODULES", ["nnb_fake_builtins"])
    monkeypatch.setattr(registry, "_load_entry_points", lambda: None)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.delitem(sys.modules, "nnb_fake_builtins", raising=False)
    with pytest.raises(RegistryError, match="already registered"):
        nnblocks.register("activation", "fake_builtin_test")(Scale)
    nnblocks.register("activation", "fake_builtin_test", override=True)(Scale)
    assert nnblocks.get_part("activation", "fake_builtin_test") is Scale
    sys.modules.pop("nnb_fake_builtins", None)


@pytest.mark.parametrize("name", ["a/b", "a:b"])
def test_invalid_part_names(name):
    with pytest.raises(RegistryError, match="Invalid part name"):
        nnblocks.register("norm", name)(Scale)


def test_register_into_unknown_kind():
    with pytest.raises(RegistryError, match=r"unknown kind `atention`. Did you mean `attention`"):
        nnblocks.register("atention", "x")


# -- kinds and slots --------------------------------------------------------------------


def test_name_of_another_kind_in_a_slot():
    with pytest.raises(RegistryError, match=r"`relu` is a part of kind `activation`, not `norm`"):
        nnblocks.build("relu", "norm", dim=4, at="model.norm")


def test_qualified_name_of_another_kind_in_a_slot():
    with pytest.raises(
        SpecError, match=r"at `model.norm`: the slot holds a `norm` part.*`activation/relu`"
    ):
        nnblocks.build("activation/relu", "norm", dim=4, at="model.norm")


def test_factory_that_builds_no_module_in_a_module_slot(scratch_registry):
    nnblocks.register("norm", "not_a_module_test")(lambda dim: dim * 2)
    with pytest.raises(
        SpecError, match=r"must build an nn.Module for a `norm` slot. Received: int"
    ):
        nnblocks.build("not_a_module_test", "norm", dim=4, at="model.norm")


def test_list_parts_with_pattern():
    assert nnblocks.list_parts("norm") == ["batch", "layer", "rms"]
    assert "feedforward/swiglu" in nnblocks.list_parts(pattern="*glu")
    assert all(n.endswith("glu") for n in nnblocks.list_parts(pattern="*glu"))


# -- plugins ----------------------------------------------------------------------------


def test_entry_point_plugin_registers_its_part():
    assert "plugin_square" in nnblocks.list_parts("activation")
    entry = registry.get_entry("activation", "plugin_square")
    assert entry.source == "nnblocks_plugin_demo"
    square = nnblocks.build("plugin_square", "activation")
    torch.testing.assert_close(square(torch.tensor([-3.0, 2.0])), torch.tensor([9.0, 4.0]))


# -- command line -----------------------------------------------------------------------


def test_cli_parts_of_a_kind_lists_arguments(capsys):
    assert main(["parts", "norm"]) == 0
    out = capsys.readouterr().out
    for name in ("layer", "rms", "batch"):
        assert name in out
    assert "channels_first=False" in out and "eps=1e-05" in out


def test_cli_parts_attention(capsys):
    if not nnblocks.list_parts("attention"):
        pytest.skip("no attention parts registered yet")
    assert main(["parts", "attention"]) == 0
    out = capsys.readouterr().out
    assert "mha" in out
    assert "dim, heads" in out


def test_cli_parts_without_kind_lists_kinds_and_plugin(capsys):
    assert main(["parts"]) == 0
    out = capsys.readouterr().out
    assert "nnblocks kinds" in out
    assert "feedforward" in out and "plugin_square" in out


def test_cli_parts_unknown_kind(capsys):
    assert main(["parts", "nrom"]) == 1
    assert "Did you mean `norm`" in capsys.readouterr().err


def test_a_registered_class_built_directly_reports_its_spec():
    cls = nnblocks.get_part("norm", "rms")
    module = nnblocks.build(cls, "norm", dim=8)
    assert nnblocks.spec_of(module)["name"] == "rms"
    assert nnblocks.spec_of(module)["dim"] == 8
    rebuilt = nnblocks.build(nnblocks.spec_of(module), "norm")
    assert type(rebuilt) is cls


def test_building_an_attention_does_not_import_the_data_package():
    # A fresh interpreter: other tests have imported nnblocks.data already.
    import subprocess
    import sys

    code = (
        "import sys, nnblocks\n"
        "nnblocks.build('mha', 'attention', dim=8, heads=2)\n"
        "nnblocks.build({'name': 'transformer_lm', 'dim': 16, 'heads': 2, 'layers': 1,"
        " 'vocab_size': 20}, 'model')\n"
        "print(sorted(m for m in sys.modules if m.startswith('nnblocks.data')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    assert "numbers" in nnblocks.list_parts("dataset")  # the data kinds load when asked for
