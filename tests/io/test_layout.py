"""The shared folder layout (config.json, model card), checks before allocating, plugins."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import yaml
from torch import nn

import nnblocks
from nnblocks import plugins
from nnblocks.errors import CheckpointError
from nnblocks.io import (
    CARD_NAME,
    CONFIG_NAME,
    MANIFEST_NAME,
    SPEC_NAME,
    WEIGHTS_NAME,
    write_manifest,
)


def edit_config(folder, change) -> None:
    doc = json.loads((folder / CONFIG_NAME).read_text())
    change(doc)
    (folder / CONFIG_NAME).write_text(json.dumps(doc))
    write_manifest(folder, [CONFIG_NAME, WEIGHTS_NAME])


def test_config_json_is_the_spec_document_with_the_library_name(tmp_path, tiny_model):
    doc = json.loads((nnblocks.save(tiny_model, tmp_path) / CONFIG_NAME).read_text())
    assert doc["library_name"] == "nnblocks" and doc["format_version"] == 2
    assert doc["spec"] == nnblocks.spec_of(tiny_model)
    assert doc["nnblocks_version"] == nnblocks.__version__
    listed = json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]
    assert set(listed) == {CONFIG_NAME, WEIGHTS_NAME}  # the card is not vouched for


def test_folder_in_the_format_1_layout_still_loads(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    doc = json.loads((folder / CONFIG_NAME).read_text())
    doc["format_version"] = 1
    del doc["library_name"]
    (folder / CONFIG_NAME).unlink()
    (folder / CARD_NAME).unlink()
    (folder / SPEC_NAME).write_text(json.dumps(doc))
    write_manifest(folder, [SPEC_NAME, WEIGHTS_NAME])
    loaded = nnblocks.load(folder)
    assert torch.equal(loaded.mix.weight, tiny_model.mix.weight)
    nnblocks.save(loaded, folder)  # a re-save moves it to the new layout
    assert not (folder / SPEC_NAME).exists() and (folder / CONFIG_NAME).exists()


def test_editing_the_model_card_keeps_the_folder_loadable(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    (folder / CARD_NAME).write_text("my own words\n")
    assert torch.equal(nnblocks.load(folder).mix.weight, tiny_model.mix.weight)


def test_model_card_has_front_matter_slots_metrics_and_recipe(tmp_path, tiny_model):
    recipe = {"seed": 3, "model": {"name": "io_test_lm", "dim": 8}, "train": {"lr": 0.01}}
    folder = nnblocks.save(tiny_model, tmp_path, recipe=recipe, metrics={"valid_loss": 1.25})
    text = (folder / CARD_NAME).read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["library_name"] == "nnblocks"
    assert {"nnblocks", "io_test_lm", "io_test_norm"} <= set(front["tags"])
    n_params = sum(p.numel() for p in {id(p): p for p in tiny_model.parameters()}.values())
    assert f"{n_params:,} parameters" in text
    assert "| `norm` | norm | `io_test_norm` |" in text
    assert "| valid_loss | 1.25 |" in text
    assert "lr: 0.01" in text


def test_wrong_sizes_fail_naming_the_tensor_before_allocating(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    # dim=200_000 would need a 160 GB `mix` layer: only a check on the meta device can
    # answer this quickly with a message instead of running out of memory.
    edit_config(folder, lambda doc: doc["spec"].update(dim=200_000))
    with pytest.raises(CheckpointError) as info:
        nnblocks.load(folder)
    message = str(info.value)
    assert "model.safetensors` does not fit" in message
    assert "tensor `scale` expected shape [200000], found [8] in the file" in message


class BigTable(nn.Module):
    """A model with a recomputed (unsaved) buffer whose size comes from the spec."""

    def __init__(self, dim: int = 4, table: int = 16, dtype_code: int = 0):
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        self.register_buffer("table", torch.arange(table, dtype=torch.float32), persistent=False)
        self.register_buffer("code", torch.tensor([dtype_code]))  # an integer buffer

    def forward(self, x):
        return self.lin(x) + self.table[: x.shape[-1]]


class ReadsItsWeights(nn.Module):
    """Computes with a parameter's value in __init__: cannot be built on the meta device."""

    def __init__(self, dim: int = 4):
        super().__init__()
        self.lin = nn.Linear(dim, dim)
        self.start = float(self.lin.bias.detach().abs().sum())

    def forward(self, x):
        return self.lin(x)


@pytest.fixture
def extra_parts():
    nnblocks.register("model", "io_big_table", override=True)(BigTable)
    nnblocks.register("model", "io_reads_weights", override=True)(ReadsItsWeights)
    yield
    nnblocks.registry.unregister("model", "io_big_table")
    nnblocks.registry.unregister("model", "io_reads_weights")


def test_unsaved_buffers_far_larger_than_the_weights_are_refused(tmp_path, extra_parts):
    folder = nnblocks.save(nnblocks.build({"name": "io_big_table"}), tmp_path)
    loaded = nnblocks.load(folder)
    assert torch.equal(loaded.table, torch.arange(16.0))  # recomputed, not garbage
    edit_config(folder, lambda doc: doc["spec"].update(table=2**30))  # 4 GiB on meta only
    with pytest.raises(CheckpointError, match="buffers that no file holds"):
        nnblocks.load(folder)


def test_dtype_family_mismatch_is_refused(tmp_path, extra_parts):
    model = nnblocks.build({"name": "io_big_table"})
    model.code = model.code.float()  # saved as float where the spec builds an integer
    folder = nnblocks.save(model, tmp_path)
    with pytest.raises(
        CheckpointError, match="`code` expected a integer dtype.*found torch.float32"
    ):
        nnblocks.load(folder)


def test_part_that_cannot_live_on_meta_still_loads(tmp_path, extra_parts):
    model = nnblocks.build({"name": "io_reads_weights"})
    loaded = nnblocks.load(nnblocks.save(model, tmp_path))
    assert torch.equal(loaded.lin.weight, model.lin.weight)


def test_loaded_tensors_keep_ties_and_saved_dtypes(tmp_path, tiny_model):
    tiny_model.mix.to(torch.float64)  # mixed precision: each tensor keeps its own dtype
    loaded = nnblocks.load(nnblocks.save(tiny_model, tmp_path))
    assert loaded.head.weight is loaded.embed.weight
    assert all(p.requires_grad for p in loaded.parameters())
    assert loaded.mix.weight.dtype == torch.float64 and loaded.embed.weight.dtype == torch.float32
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    for name, t in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], t), name


def test_part_from_an_installed_package_names_the_distribution(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)

    def rename(doc):
        doc["spec"]["norm"] = "fancy_norm"
        doc["parts"][1] = {
            "kind": "norm",
            "name": "fancy_norm",
            "source": "fancy",
            "package": "nnblocks-fancy-norms",
        }

    edit_config(folder, rename)
    with pytest.raises(CheckpointError, match="pip install nnblocks-fancy-norms"):
        nnblocks.load(folder)


PLUGIN = textwrap.dedent(
    """
    import torch
    import nnblocks

    @nnblocks.register("norm", "io_plugin_norm")
    class PluginNorm(torch.nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.full((dim,), 2.0))

        def forward(self, x):
            return x * self.scale
    """
)


def test_plugin_part_is_recorded_and_nnblocks_load_honours_the_env(
    tmp_path, monkeypatch, tiny_model
):
    plugin = tmp_path / "my_norms.py"
    plugin.write_text(PLUGIN)
    plugins.import_plugin(str(plugin))
    try:
        model = nnblocks.build({"name": "io_test_lm", "dim": 8, "norm": "io_plugin_norm"})
        folder = nnblocks.save(model, tmp_path / "saved")
        parts = json.loads((folder / CONFIG_NAME).read_text())["parts"]
        assert {"kind": "norm", "name": "io_plugin_norm", "plugin": "my_norms.py"}.items() <= (
            next(p for p in parts if p["kind"] == "norm").items()
        )
    finally:  # as if in a new process: the part and the imported file are gone
        nnblocks.registry.unregister("norm", "io_plugin_norm")
        plugins._imported.pop(str(plugin.resolve()), None)
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    with pytest.raises(CheckpointError, match="plugin file `my_norms.py`.*NNBLOCKS_PLUGINS"):
        nnblocks.load(folder)
    monkeypatch.setenv(plugins.ENV_VAR, str(plugin))
    try:
        loaded = nnblocks.load(folder)
        assert torch.equal(loaded.norm.scale, torch.full((8,), 2.0))
    finally:
        nnblocks.registry.unregister("norm", "io_plugin_norm")
        plugins._imported.pop(str(plugin.resolve()), None)


def test_hugging_face_config_is_pointed_to_the_importer(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path)
    (folder / CONFIG_NAME).write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    write_manifest(folder, [CONFIG_NAME, WEIGHTS_NAME])
    with pytest.raises(CheckpointError, match="from_transformers"):
        nnblocks.load(folder)


def test_hugging_face_folder_without_a_manifest_is_pointed_to_the_importer(tmp_path):
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"model_type": "gpt2", "n_embd": 8}))
    (tmp_path / WEIGHTS_NAME).write_bytes(b"")
    with pytest.raises(CheckpointError, match="Hugging Face model folder.*from_transformers"):
        nnblocks.load(tmp_path)


class _FakeTokenizer:
    """Just what nnblocks.save asks of a tokenizer."""

    def tokenizer_json(self):
        return '{"version": "1.0"}'

    def special_tokens(self):
        return {"bos_token": "<s>"}


def test_a_resave_removes_what_it_no_longer_writes_but_not_the_users_files(tmp_path, tiny_model):
    folder = nnblocks.save(tiny_model, tmp_path, tokenizer=_FakeTokenizer())
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    (folder / "notes.txt").write_text("mine")
    (folder / "data.json").write_text("{}")  # as bundle.save_state writes it, unlisted
    nnblocks.save(tiny_model, folder)
    assert not (folder / "tokenizer.json").exists()
    assert not (folder / "tokenizer_config.json").exists()
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "data.json").exists()
