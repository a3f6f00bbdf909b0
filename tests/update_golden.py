"""Golden records: the generated module of every spec in specs/ and tests/specs/.

tests/specs/ holds specs that exist for testing: together they use every layer
type and every l2 rule (global, per-layer override, 0, l2_bias, l2_norm,
decoupled weight decay).

Regenerate them after an intended change to the templates or the specs:

    python -m tests.update_golden

and review the diff like any code change.
"""

from __future__ import annotations

import sys
from pathlib import Path

from l2compile.render import render_module

from .conftest import GOLDEN, ROOT, SPECS, TEST_SPECS, plan_file


def expected_records() -> dict[str, str]:
    """File name -> generated source, for every spec in specs/ and tests/specs/."""
    records = {}
    for path in all_specs():
        plan = plan_file(path, path.relative_to(ROOT).as_posix())
        assert f"{plan.name}.py" not in records, f"two specs named {plan.name}"
        records[f"{plan.name}.py"] = render_module(plan)
    return records


def all_specs() -> list[Path]:
    """The specs that have golden records."""
    return sorted(SPECS.glob("*.yaml")) + sorted(TEST_SPECS.glob("*.yaml"))


def main() -> int:
    records = expected_records()
    GOLDEN.mkdir(exist_ok=True)
    for stale in GOLDEN.glob("*.py"):
        if stale.name not in records:
            stale.unlink()
            print(f"removed {stale.relative_to(ROOT)}")
    for name, code in records.items():
        target = GOLDEN / name
        if not target.exists() or target.read_text(encoding="utf-8") != code:
            target.write_text(code, encoding="utf-8", newline="\n")
            print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
