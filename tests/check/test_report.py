"""Report and Record: statuses, lookups and the text table."""

import pytest

from nnblocks.check import Record, Report


def _report():
    return Report(
        "check demo",
        [
            Record("shape", "pass", "[2, 7, 32]"),
            Record("cache", "skip", "no cache="),
            Record("leak", "fail", "peeks at the future"),
            Record("zero_grad", "warn", "bias gradient is zero"),
        ],
    )


def test_ok_failures_warnings_and_lookup():
    report = _report()
    assert not report.ok
    assert [r.name for r in report.failures] == ["leak"]
    assert [r.name for r in report.warnings] == ["zero_grad"]
    assert [r.name for r in report.skipped] == ["cache"]
    assert report["leak"].message == "peeks at the future"
    assert "cache" in report and "nothing" not in report
    with pytest.raises(KeyError, match="shape, cache, leak"):
        report["nothing"]
    assert Report("empty").ok


def test_str_is_a_plain_table_with_every_record():
    text = str(_report())
    assert "\x1b[" not in text  # no colour codes in the plain text
    for name, status in [("shape", "pass"), ("leak", "fail"), ("cache", "skip")]:
        line = next(line for line in text.splitlines() if name in line)
        assert status in line
    assert "1 passed, 1 failed, 1 warnings, 1 skipped" in text


def test_to_dict_and_bad_status():
    data = _report().to_dict()
    assert data["ok"] is False and len(data["results"]) == 4
    with pytest.raises(ValueError, match="status"):
        Record("x", "maybe")
