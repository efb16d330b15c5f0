"""Three ablation workers share one grid through a database; one is killed mid-run (slow).

Against SQLite (the default: a file in the ablation folder) and against a real PostgreSQL
server the test starts on 127.0.0.1 (Debian's `postgresql` package, `make setup-postgres`;
skipped with the reason where its binaries are missing).
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
sqlalchemy = pytest.importorskip("sqlalchemy")

from nnblocks.experiment.storage import RunStore  # noqa: E402

HEARTBEAT = 0.5  # seconds; a run is claimed again after 12 missed beats (6 s)


def _recipe(tmp_path: Path) -> Path:
    recipe = {
        "name": "wine_workers",
        "seed": 0,
        "data": {"name": "wine"},
        "model": {"name": "mlp", "hidden": [8]},
        "train": {"epochs": 2, "lr": 0.01, "batch_size": 32, "checkpoint": False},
    }
    path = tmp_path / "wine.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _worker(recipe: Path, out: Path, storage: str | None, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "nnblocks.cli",
        "ablate",
        str(recipe),
        "--vary",
        "model.norm=batch,layer",
        "--seeds",
        "3",
        "--out",
        str(out),
        "--heartbeat",
        str(HEARTBEAT),
    ]
    if storage:
        cmd += ["--storage", storage]
    env = dict(os.environ, OMP_NUM_THREADS="1", NNBLOCKS_PROGRESS="0")
    return subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def _run_three_workers_and_kill_one(tmp_path: Path, storage: str | None) -> dict:
    recipe = _recipe(tmp_path)
    out = tmp_path / "abl"
    url = storage or f"sqlite:///{(out / 'runs.db').resolve()}"
    workers = [_worker(recipe, out, storage, tmp_path / f"w{i}.log") for i in range(3)]
    victim = workers[0]
    deadline = time.time() + 300
    store = None
    killed_cell = None
    while time.time() < deadline and killed_cell is None:
        time.sleep(0.2)
        if store is None and (storage or (out / "runs.db").exists()):
            try:
                store = RunStore(url, out.absolute().name, timeout=12 * HEARTBEAT)
            except Exception:  # the table is being created by a worker right now
                continue
        if store is not None:
            for row in store.rows().values():
                if row["state"] == "running" and f":{victim.pid}:" in (row["worker"] or ""):
                    killed_cell = row["cell"]
        assert victim.poll() is None, (tmp_path / "w0.log").read_text()
    assert killed_cell is not None, "worker 0 never claimed a run"
    time.sleep(1.0)  # mid-run: its training child is working on the run
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    codes = [w.wait(timeout=600) for w in workers[1:]]
    logs = [(tmp_path / f"w{i}.log").read_text() for i in (1, 2)]
    assert codes == [0, 0], logs
    rows = store.rows()
    summary = json.loads((out / "summary.json").read_text())
    return {"rows": rows, "killed": killed_cell, "summary": summary, "out": out}


def _check(result: dict) -> None:
    rows = result["rows"]
    assert len(rows) == 6  # 2 variants x 3 seeds
    assert all(r["state"] == "done" for r in rows.values()), rows
    assert [r["completions"] for r in rows.values()] == [1] * 6  # exactly once per cell
    assert rows[result["killed"]]["attempts"] == 2  # the killed worker's run was re-claimed
    assert sum(r["attempts"] for r in rows.values()) == 7  # nothing else ran twice
    assert all(len(r["values"]) == 3 for r in result["summary"]["rows"])  # table from the db
    print(
        "worker-kill test:",
        {c: (r["attempts"], r["completions"]) for c, r in sorted(rows.items())},
    )


def test_three_sqlite_workers_one_killed_complete_the_grid_once(tmp_path):
    _check(_run_three_workers_and_kill_one(tmp_path, None))


def _pg_bin() -> Path | None:
    for pattern in ("/usr/lib/postgresql/*/bin",):
        for found in sorted(glob.glob(pattern), reverse=True):
            if (Path(found) / "initdb").exists() and (Path(found) / "pg_ctl").exists():
                return Path(found)
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    pytest.importorskip("psycopg", reason="psycopg 3 is needed: pip install 'nnblocks[postgres]'")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: make setup-postgres")
    root = Path(tempfile.mkdtemp(prefix="nnb-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as `postgres`
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "nnb", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-o",
            f"-p {port} -k {root} -h 127.0.0.1",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://nnb@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_three_postgres_workers_one_killed_complete_the_grid_once(tmp_path, postgres_url):
    _check(_run_three_workers_and_kill_one(tmp_path, postgres_url))


def test_three_tune_workers_share_one_study(tmp_path):
    optuna = pytest.importorskip("optuna")
    recipe = _recipe(tmp_path)
    text = yaml.safe_load(recipe.read_text())
    text["train"]["epochs"] = 1
    text["tune"] = {
        "metric": "valid_loss",
        "space": {"train.lr": {"float": [1.0e-3, 3.0e-2], "log": True}},
    }
    recipe.write_text(yaml.safe_dump(text))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    env = dict(os.environ, OMP_NUM_THREADS="1", NNBLOCKS_PROGRESS="0")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nnblocks.cli",
                "tune",
                str(recipe),
                "--trials",
                "6",
                "--storage",
                url,
                "--out",
                str(tmp_path / f"tune{i}"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        for i in range(3)
    ]
    assert [w.wait(timeout=900) for w in workers] == [0, 0, 0]
    study = optuna.load_study(study_name="wine_workers", storage=url)
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    # Each worker stops once the shared study holds 6; trials still in flight then finish.
    assert 6 <= len(finished) <= 8
    assert len({t.number for t in study.trials}) == len(study.trials)
    by_worker = {i: len(list((tmp_path / f"tune{i}").glob("trial-*"))) for i in range(3)}
    assert sum(by_worker.values()) == len(study.trials)
    print("tune workers:", by_worker, "finished trials:", len(finished))
