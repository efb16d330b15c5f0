"""The shared run table (claims, heartbeats, re-claims) and run reuse by fingerprint."""

import threading
import time

import pytest
import yaml

pytest.importorskip("sqlalchemy")

from nnblocks.errors import SpecError  # noqa: E402
from nnblocks.experiment.ablate import _looks, _Plan, _register  # noqa: E402
from nnblocks.experiment.grid import expand_grid  # noqa: E402
from nnblocks.experiment.recipe import load_recipe  # noqa: E402
from nnblocks.experiment.storage import RunStore  # noqa: E402


def _store(tmp_path, timeout=60.0, group="g"):
    return RunStore(f"sqlite:///{tmp_path / 'runs.db'}", group, timeout=timeout)


def test_every_cell_is_claimed_exactly_once_by_racing_workers(tmp_path):
    store = _store(tmp_path)
    cells = [(f"v{i}/seed-{s}", "f" * 64, {"i": i}) for i in range(4) for s in range(5)]
    assert store.add(cells) == []
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(n):
        own = _store(tmp_path)  # one connection per worker, as separate processes have
        while (claim := own.claim(f"w{n}")) is not None:
            with lock:
                claimed.append(claim.cell)
            assert own.finish(claim.cell, f"w{n}", {"value": 1.0})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(c for c, _, _ in cells)  # none twice, none lost
    rows = store.rows()
    assert all(r["state"] == "done" and r["completions"] == 1 for r in rows.values())
    assert store.settled([c for c, _, _ in cells])


def test_a_silent_worker_loses_its_claim_after_the_timeout(tmp_path):
    store = _store(tmp_path, timeout=0.5)
    store.add([("a/seed-0", "f" * 64, {})])
    first = store.claim("dead")
    assert first is not None and store.claim("alive") is None  # fresh claim: not stale yet
    time.sleep(0.7)
    second = store.claim("alive")
    assert second is not None and second.cell == "a/seed-0"
    assert not store.heartbeat("a/seed-0", "dead")  # the dead worker's claim is gone
    assert not store.finish("a/seed-0", "dead", {"value": 0.0})  # its result is dropped
    assert store.heartbeat("a/seed-0", "alive")
    assert store.finish("a/seed-0", "alive", {"value": 2.0})
    row = store.rows()["a/seed-0"]
    assert row["attempts"] == 2 and row["completions"] == 1 and row["metrics"] == {"value": 2.0}


def test_heartbeats_keep_a_claim(tmp_path):
    store = _store(tmp_path, timeout=0.6)
    store.add([("a/seed-0", "f" * 64, {})])
    assert store.claim("w") is not None
    for _ in range(4):
        time.sleep(0.3)
        assert store.heartbeat("a/seed-0", "w")
        assert store.claim("other") is None


def test_failed_runs_go_back_to_todo_and_fingerprints_are_compared(tmp_path):
    store = _store(tmp_path)
    store.add([("a/seed-0", "1" * 64, {})])
    claim = store.claim("w")
    store.finish(claim.cell, "w", None, error="boom")
    assert store.rows()["a/seed-0"]["state"] == "failed"
    assert store.add([("a/seed-0", "1" * 64, {})]) == []
    assert store.rows()["a/seed-0"]["state"] == "todo"
    assert store.add([("a/seed-0", "2" * 64, {})]) == ["a/seed-0"]
    other = _store(tmp_path, group="h")  # another ablation in the same database
    assert other.add([("a/seed-0", "2" * 64, {})]) == []


def test_an_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(SpecError, match="--storage"):
        RunStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2", "g")
    with pytest.raises(SpecError, match="--storage"):
        RunStore("notadb://x", "g")


def test_looks_of_seeds_auto():
    assert _looks(10) == [3, 6, 9, 10]
    assert _looks(5) == [3, 4, 5]
    assert _looks(3) == [3]


def _plan(tmp_path, epochs=2, plugin_text=None):
    recipe = {
        "name": "wine_small",
        "seed": 0,
        "data": {"name": "wine"},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": epochs, "checkpoint": False},
    }
    if plugin_text is not None:
        (tmp_path / "plug.py").write_text(plugin_text)
        recipe["plugins"] = ["plug.py"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    base = load_recipe(path)
    variants = expand_grid([("model.norm", ["batch", "layer"])])
    return _Plan(path, base, variants, (), "all", tmp_path / "abl")


def test_a_changed_recipe_into_the_same_folder_refuses(tmp_path, monkeypatch):
    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    store = _store(tmp_path)
    plan = _plan(tmp_path, epochs=2)
    cells = plan.cells([[0, 1], [0, 1]])
    _register(store, cells, overwrite=False)
    for c in cells:
        (c.folder / "metrics.json").write_text("{}")
    _register(store, plan.cells([[0, 1], [0, 1]]), overwrite=False)  # same recipe: reused
    changed = _plan(tmp_path, epochs=1).cells([[0, 1], [0, 1]])
    assert {c.fingerprint for c in changed}.isdisjoint({c.fingerprint for c in cells})
    with pytest.raises(SpecError, match="different recipe.*--out.*--overwrite"):
        _register(store, changed, overwrite=False)
    _register(store, changed, overwrite=True)
    assert not any((c.folder / "metrics.json").exists() for c in changed)  # old runs gone
    assert all(r["fingerprint"] in {c.fingerprint for c in changed} for r in store.rows().values())


def test_plugin_code_is_part_of_the_fingerprint(tmp_path, monkeypatch):
    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    a = _plan(tmp_path, plugin_text="X = 1\n").cell(0, 0).fingerprint
    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    b = _plan(tmp_path, plugin_text="X = 2\n").cell(0, 0).fingerprint
    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    c = _plan(tmp_path, plugin_text="X = 2\n").cell(0, 0).fingerprint
    assert a != b and b == c


def test_folders_from_before_fingerprints_are_not_reused(tmp_path, monkeypatch):
    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    plan = _plan(tmp_path)
    cell = plan.cell(0, 0)
    cell.folder.mkdir(parents=True)
    (cell.folder / "metrics.json").write_text("{}")  # an old run: no fingerprint recorded
    with pytest.raises(SpecError, match="different recipe"):
        _register(_store(tmp_path), [cell], overwrite=False)


def test_named_seeds_vary_one_source(tmp_path, monkeypatch):
    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    plan = _plan(tmp_path)
    plan.vary_seed = "data"
    sets = [c.sets[-1] for c in plan.cells([[0, 1, 2]])]
    assert sets == [
        'seed={"init": 0, "data": 0, "dropout": 0}',
        'seed={"init": 0, "data": 1, "dropout": 0}',
        'seed={"init": 0, "data": 2, "dropout": 0}',
    ]
    plan.vary_seed = "all"
    assert [c.sets[-1] for c in plan.cells([[0, 1]])] == ["seed=0", "seed=1"]


def test_a_changed_search_space_or_recipe_refuses_to_resume_a_study(tmp_path, monkeypatch):
    optuna = pytest.importorskip("optuna")
    from nnblocks.experiment.tune import _check_same_study

    monkeypatch.delenv("NNBLOCKS_PLUGINS", raising=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    recipe = {"name": "t", "seed": 0, "train": {"epochs": 2},
              "tune": {"space": {"train.lr": {"float": [1e-4, 1e-2]}}}}  # fmt: skip
    study = optuna.create_study(study_name="t", storage=url)
    _check_same_study(study, recipe, "t")  # records the fingerprints
    study.optimize(lambda trial: trial.suggest_float("train.lr", 1e-4, 1e-2), n_trials=1)
    again = optuna.load_study(study_name="t", storage=url)
    _check_same_study(again, recipe, "t")  # the same: resumes
    wider = {**recipe, "tune": {"space": {"train.lr": {"float": [1e-5, 1e-1]}}}}
    with pytest.raises(SpecError, match="search space of study `t` changed"):
        _check_same_study(again, wider, "t")
    shorter = {**recipe, "train": {"epochs": 1}}
    with pytest.raises(SpecError, match="different recipe"):
        _check_same_study(again, shorter, "t")
