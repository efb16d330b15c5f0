"""Count how the bad-input corpus fares on a given version of nnblocks.

    PYTHONPATH=/path/to/other/checkout python tests/hardening/baseline_count.py

Each row of ``test_bad_inputs.CASES`` is run once and sorted into: ``named`` (the expected
kind of nnblocks error, naming the place), ``nnblocks-error`` (an nnblocks error, but not
the expected one or not naming the place), ``traceback`` (any other exception: what a user
sees as a Python traceback) and ``silent`` (accepted). Prints one line per row and the totals.
"""

from __future__ import annotations

import collections
import contextlib
import importlib.util
import io
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    spec = importlib.util.spec_from_file_location("bad_inputs", HERE / "test_bad_inputs.py")
    assert spec is not None and spec.loader is not None
    corpus = importlib.util.module_from_spec(spec)
    sys.modules["bad_inputs"] = corpus  # dataclasses look their module up
    spec.loader.exec_module(corpus)
    from nnblocks import errors

    totals: collections.Counter[str] = collections.Counter()
    for case in corpus.CASES:
        expected = getattr(errors, case.error)
        stderr = io.StringIO()
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stderr(stderr):
            try:
                case.action(Path(tmp))
                verdict, message = "silent", ""
            except corpus._CLIFailed:
                message = stderr.getvalue()
                ok = message.startswith("error: ") and all(w in message for w in case.words)
                verdict = "named" if ok else "nnblocks-error"
            except SystemExit as exc:  # argparse refusing an option
                verdict, message = "nnblocks-error", f"usage error (exit {exc.code})"
            except errors.NNBlocksError as exc:
                message = str(exc)
                ok = isinstance(exc, expected) and all(w in message for w in case.words)
                verdict = "named" if ok else "nnblocks-error"
            except Exception as exc:  # noqa: BLE001 - that is what is being counted
                verdict, message = "traceback", f"{type(exc).__name__}: {exc}"
        totals[verdict] += 1
        print(f"{verdict:15s} {case.id:32s} {message.splitlines()[0][:110] if message else ''}")
    print(f"{len(corpus.CASES)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
