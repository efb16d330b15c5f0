"""Testing a part in isolation: the contract kit, the reuse audit, numerics watching.

- `check_part(kind, part)` runs the kind's written contract on one part and returns a
  `Report`; `assert_contract` does the same inside a user's own test, in one line.
- `compare_parts(kind, part, reference)` loads the same weights into two parts and reports
  their largest differences per dtype (``nnblocks check ... --against REF``).
- `audit_reuse(model, *inputs)` reports modules called from more than one place.
- `watch_numerics(model)` raises `NumericsError` naming the first module whose output or
  gradient became NaN or Inf.
"""

from nnblocks.check.audit import audit_reuse
from nnblocks.check.kit import assert_contract, check_part, compare_parts
from nnblocks.check.numerics import NumericsWatch, watch_numerics
from nnblocks.check.report import Record, Report

__all__ = [
    "check_part",
    "assert_contract",
    "compare_parts",
    "audit_reuse",
    "watch_numerics",
    "NumericsWatch",
    "Report",
    "Record",
]
