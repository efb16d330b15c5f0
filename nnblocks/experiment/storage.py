"""A table of runs in a database that many workers share: atomic claims and heartbeats.

An ablation's cells (variant x seed) are rows of one table (``nnblocks_runs``) in an SQL
database: an SQLite file by default, PostgreSQL (``postgresql+psycopg://...``) when
workers on many machines share the grid. A worker claims a row with one conditional
``UPDATE ... WHERE state = 'todo' OR (state = 'running' AND heartbeat < stale)``: the
database lets exactly one concurrent claimer match, so no run is done twice. While a run
trains, its worker refreshes the heartbeat; a worker that dies stops refreshing, and after
``timeout`` seconds another worker claims the run again, so none is lost. The finished
run's metrics are stored in the row, so any worker can make the table and the chart.

SQLAlchemy (installed with Optuna) speaks to both databases.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from nnblocks.errors import NNBlocksError, SpecError

__all__ = ["Claim", "RunStore", "database_url", "open_store"]

log = logging.getLogger(__name__)

TODO, RUNNING, DONE, FAILED = "todo", "running", "done", "failed"


@dataclasses.dataclass(frozen=True)
class Claim:
    """A run this worker now owns: its cell key and the payload it was added with."""

    cell: str
    payload: dict[str, Any]


def database_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 (SQLAlchemy's default driver, psycopg2, is not a
    dependency); every other URL is kept."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlalchemy() -> Any:
    try:
        import sqlalchemy
    except ImportError as exc:  # pragma: no cover - installed with optuna
        raise NNBlocksError(
            "a shared run table needs SQLAlchemy: pip install 'nnblocks[search]'"
        ) from exc
    return sqlalchemy


class RunStore:
    """The runs of one ablation (``group``) in the database at ``url``.

    Args:
        url: an SQLAlchemy URL (``sqlite:///path/runs.db``, ``postgresql+psycopg://...``;
            ``postgresql://`` is read as psycopg 3).
        group: the ablation's name; many ablations may share one database.
        timeout: seconds without a heartbeat after which a running claim is stale.

    Raises:
        SpecError: the URL cannot be parsed or the database cannot be reached (before any
            run starts).
    """

    def __init__(self, url: str, group: str, *, timeout: float = 120.0):
        sa = _sqlalchemy()
        self.sa, self.group, self.timeout = sa, group, float(timeout)
        url = database_url(url)
        try:
            options: dict[str, Any] = {}
            if url.startswith("sqlite"):  # wait for the file lock instead of failing at once
                options = {"connect_args": {"timeout": 60}, "poolclass": sa.pool.NullPool}
            self.engine = sa.create_engine(url, **options)
            meta = sa.MetaData()
            self.table = sa.Table(
                "nnblocks_runs",
                meta,
                sa.Column("grp", sa.String(200), primary_key=True),
                sa.Column("cell", sa.String(400), primary_key=True),
                sa.Column("fingerprint", sa.String(64), nullable=False),
                sa.Column("payload", sa.Text, nullable=False),
                sa.Column("state", sa.String(16), nullable=False),
                sa.Column("worker", sa.String(200)),
                sa.Column("heartbeat", sa.Float),
                sa.Column("attempts", sa.Integer, nullable=False, default=0),
                sa.Column("completions", sa.Integer, nullable=False, default=0),
                sa.Column("metrics", sa.Text),
                sa.Column("error", sa.Text),
            )
            meta.create_all(self.engine)
        except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise SpecError(
                f"cannot open the run table. Expected a reachable SQLAlchemy database URL. "
                f"Received: {url!r} ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                path="--storage",
            ) from exc

    def _where(self, cell: str | None = None) -> Any:
        t = self.table
        cond = t.c.grp == self.group
        return cond if cell is None else self.sa.and_(cond, t.c.cell == cell)

    def add(self, cells: Sequence[tuple[str, str, dict[str, Any]]]) -> list[str]:
        """Add ``(cell, fingerprint, payload)`` rows not there yet; failed rows go back to
        todo. Returns the cells whose stored fingerprint differs (made from another recipe)."""
        sa, t = self.sa, self.table
        conflicts = []
        with self.engine.begin() as conn:
            rows = {
                r.cell: r
                for r in conn.execute(
                    sa.select(t.c.cell, t.c.fingerprint, t.c.state).where(self._where())
                )
            }
            for cell, fingerprint, payload in cells:
                row = rows.get(cell)
                if row is None:
                    try:
                        with conn.begin_nested():  # another worker may add it at the same time
                            conn.execute(
                                t.insert().values(
                                    grp=self.group,
                                    cell=cell,
                                    fingerprint=fingerprint,
                                    payload=json.dumps(payload),
                                    state=TODO,
                                    attempts=0,
                                    completions=0,
                                )
                            )
                    except sa.exc.IntegrityError:
                        row = conn.execute(
                            sa.select(t.c.fingerprint, t.c.state).where(self._where(cell))
                        ).one()
                if row is not None and row.fingerprint != fingerprint:
                    conflicts.append(cell)
                elif row is not None and row.state == FAILED:
                    conn.execute(t.update().where(self._where(cell)).values(state=TODO))
        return conflicts

    def remove(self, cells: Sequence[str]) -> None:
        """Forget these cells (``--overwrite``)."""
        with self.engine.begin() as conn:
            for cell in cells:
                conn.execute(self.table.delete().where(self._where(cell)))

    def claim(self, worker: str, cells: Sequence[str] | None = None) -> Claim | None:
        """Atomically take one todo (or stale running) run, among ``cells`` if given."""
        sa, t = self.sa, self.table
        while True:
            now = time.time()
            open_ = sa.or_(
                t.c.state == TODO,
                sa.and_(t.c.state == RUNNING, t.c.heartbeat < now - self.timeout),
            )
            with self.engine.begin() as conn:
                query = sa.select(t.c.cell, t.c.payload).where(self._where(), open_)
                if cells is not None:
                    query = query.where(t.c.cell.in_(list(cells)))
                row = conn.execute(query.order_by(t.c.cell).limit(1)).first()
                if row is None:
                    return None
                # The condition is checked again inside the UPDATE: of two workers that saw
                # the same row, only one changes it.
                done = conn.execute(
                    t.update()
                    .where(self._where(row.cell), open_)
                    .values(state=RUNNING, worker=worker, heartbeat=now, attempts=t.c.attempts + 1)
                )
                if done.rowcount == 1:
                    return Claim(row.cell, json.loads(row.payload))

    def heartbeat(self, cell: str, worker: str) -> bool:
        """Refresh a claim; False when the claim is no longer this worker's."""
        t = self.table
        with self.engine.begin() as conn:
            res = conn.execute(
                t.update()
                .where(self._where(cell), t.c.worker == worker, t.c.state == RUNNING)
                .values(heartbeat=time.time())
            )
        return res.rowcount == 1

    def finish(
        self, cell: str, worker: str, metrics: dict[str, Any] | None, error: str = ""
    ) -> bool:
        """Record a claimed run's metrics (or its error); False if the claim was lost."""
        t = self.table
        values: dict[str, Any] = {"state": FAILED, "error": error}
        if metrics is not None:
            values = {
                "state": DONE,
                "metrics": json.dumps(metrics, default=str),
                "completions": t.c.completions + 1,
            }
        with self.engine.begin() as conn:
            res = conn.execute(
                t.update()
                .where(self._where(cell), t.c.worker == worker, t.c.state == RUNNING)
                .values(**values)
            )
        if res.rowcount != 1:
            log.warning("run %s was claimed again by another worker; its result is dropped", cell)
        return res.rowcount == 1

    def rows(self, cells: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        """Every row of the group (or of ``cells``) as a dict, metrics decoded."""
        sa, t = self.sa, self.table
        with self.engine.begin() as conn:
            query = sa.select(t).where(self._where())
            if cells is not None:
                query = query.where(t.c.cell.in_(list(cells)))
            out = {}
            for r in conn.execute(query).mappings():
                row = dict(r)
                row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else None
                out[row["cell"]] = row
        return out

    def settled(self, cells: Sequence[str]) -> bool:
        """True once every one of ``cells`` is done or failed."""
        rows = self.rows(cells)
        return len(rows) == len(set(cells)) and all(
            r["state"] in (DONE, FAILED) for r in rows.values()
        )


def open_store(url: str, group: str, *, timeout: float = 120.0) -> RunStore:
    """A RunStore (see the class)."""
    return RunStore(url, group, timeout=timeout)
