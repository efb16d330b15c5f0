"""`Report` and `Record`: what the check kit, the reuse audit and `--against` return.

A report is a list of records, one per check, each with a status:

- ``pass``: the contract holds,
- ``fail``: the contract is broken (``report.ok`` is False),
- ``warn``: suspicious but allowed (a parameter whose gradient is exactly zero),
- ``skip``: the part does not offer the capability (no ``cache=``), or the check was not asked
  for (slow checks without ``slow=True``).

``str(report)`` is a plain-text table; ``report.table()`` is the rich table the command
line prints in colour.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Record", "Report", "STATUSES"]

STATUSES = ("pass", "fail", "warn", "skip")
_STYLE = {"pass": "green", "fail": "bold red", "warn": "yellow", "skip": "dim"}


@dataclasses.dataclass(frozen=True)
class Record:
    """The outcome of one check.

    Args:
        name: the check's name, e.g. ``"causal_leakage"``.
        status: one of ``"pass"``, ``"fail"``, ``"warn"``, ``"skip"``.
        message: what was found, in words a user can act on.
        details: numbers behind the message (differences, ratios), for JSON output.
    """

    name: str
    status: str
    message: str = ""
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:  # internal invariant: records are made by the kit
            raise ValueError(f"status must be one of {STATUSES}, received {self.status!r}")


class Report:
    """The records of one run of the kit (or the audit), in the order the checks ran.

    Args:
        title: what was checked, e.g. ``"attention:mha"``.
        results: the records.

    Example:
        >>> report = Report("demo", [Record("shape", "pass", "[2, 7, 32]")])
        >>> report.ok
        True
    """

    def __init__(self, title: str, results: list[Record] | None = None):
        self.title = title
        self.results: list[Record] = list(results or [])

    def add(self, name: str, status: str, message: str = "", **details: Any) -> Record:
        """Append a record and return it."""
        record = Record(name, status, message, details)
        self.results.append(record)
        return record

    def extend(self, other: Report) -> None:
        """Append every record of ``other``."""
        self.results.extend(other.results)

    @property
    def ok(self) -> bool:
        """True when no record failed."""
        return not self.failures

    @property
    def failures(self) -> list[Record]:
        return self._with("fail")

    @property
    def warnings(self) -> list[Record]:
        return self._with("warn")

    @property
    def skipped(self) -> list[Record]:
        return self._with("skip")

    @property
    def passed(self) -> list[Record]:
        return self._with("pass")

    def _with(self, status: str) -> list[Record]:
        return [r for r in self.results if r.status == status]

    def __getitem__(self, name: str) -> Record:
        """The record named ``name`` (the first one if several share it)."""
        for record in self.results:
            if record.name == name:
                return record
        known = ", ".join(r.name for r in self.results)
        raise KeyError(f"no record named {name!r} in report {self.title!r}. Records: {known}")

    def __contains__(self, name: object) -> bool:
        return any(r.name == name for r in self.results)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def summary(self) -> str:
        """``"12 passed, 1 failed, 0 warnings, 2 skipped"``."""
        return (
            f"{len(self.passed)} passed, {len(self.failures)} failed, "
            f"{len(self.warnings)} warnings, {len(self.skipped)} skipped"
        )

    def table(self) -> Table:
        """A rich table: check, status, message."""
        table = Table(title=self.title, caption=self.summary(), title_justify="left")
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("message", overflow="fold")
        for r in self.results:
            table.add_row(r.name, f"[{_STYLE[r.status]}]{r.status}[/]", r.message)
        return table

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: title, ok and every record."""
        return {
            "title": self.title,
            "ok": self.ok,
            "results": [dataclasses.asdict(r) for r in self.results],
        }

    def __str__(self) -> str:
        buffer = io.StringIO()
        console = Console(file=buffer, width=120, color_system=None, force_terminal=False)
        console.print(self.table())
        return buffer.getvalue().rstrip()

    def __repr__(self) -> str:
        return f"Report({self.title!r}: {self.summary()})"
