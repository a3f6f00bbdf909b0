"""A CSV header's cost against its column count, this version beside an older one.

    python benchmarks/csv_wide_header.py 25000 50000 --before 0b6d273

For each N, writes a table of N - 1 numeric columns and a label (4 rows) and
times `tables.read_csv` on it with this checkout's reader, then with the
reader of git revision `--before` (its `l2compile/tables.py`, loaded beside
this package), in one process, one after the other, so that the two figures
share the machine's state. A table over `tables.MAX_COLUMNS` is refused by
this version; it is timed again with the limit lifted, to show the reader's
own cost. Issue 27 measured a header's cost as growing with the square of
its columns before; docs/limits.md gives the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from l2compile import tables
from l2compile.errors import BuildError
from l2compile.recipes import ModelInput, recipe_for
from l2compile.tasks import Binary

ROOT = Path(__file__).resolve().parent.parent
BINARY = Binary("binary_crossentropy", ("accuracy",), 1, ("0", "1"))


def _older(revision: str, folder: Path) -> ModuleType:
    """`l2compile/tables.py` as it was at `revision`, as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:l2compile/tables.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = folder / "tables_before.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("tables_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tables_before"] = module
    spec.loader.exec_module(module)
    return module


def _table(folder: Path, columns: int) -> Path:
    path = folder / f"wide_{columns}.csv"
    names = [f"c{k}" for k in range(columns - 1)] + ["y"]
    rows = [",".join([str(r)] * (columns - 1) + [str(r % 2)]) for r in range(4)]
    path.write_text("\n".join([",".join(names), *rows]) + "\n", encoding="utf-8")
    return path


def _time(reader: ModuleType, path: Path, columns: int) -> tuple[float, str]:
    recipe = recipe_for("csv", None, data=str(path), label=("y",), test_split=0.5)
    began = time.perf_counter()
    try:
        reader.read_csv(
            recipe,
            path,
            None,
            seed=0,
            model_input=ModelInput((columns - 1,), task=BINARY),
        )
        outcome = "read"
    except BuildError as exc:
        outcome = "refused"
        if "at most" not in str(exc):
            raise
    return time.perf_counter() - began, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("columns", type=int, nargs="+")
    parser.add_argument("--before", help="a git revision to compare with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        before = _older(args.before, folder) if args.before else None
        for columns in args.columns:
            path = _table(folder, columns)
            now, outcome = _time(tables, path, columns)
            line = f"{columns:>9,} columns: this version {now:8.3f} s ({outcome})"
            reader_cost = now
            if outcome == "refused":
                limit, tables.MAX_COLUMNS = tables.MAX_COLUMNS, 10**7
                try:
                    lifted, _ = _time(tables, path, columns)
                finally:
                    tables.MAX_COLUMNS = limit
                line += f", {lifted:.3f} s with the limit lifted"
                reader_cost = lifted
            if before is not None:
                then, _ = _time(before, path, columns)
                ratio = then / reader_cost
                line += f" | {args.before}: {then:8.3f} s ({ratio:,.0f}x)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
