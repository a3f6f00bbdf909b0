"""Memory benchmark: reading a CSV table of a few hundred MB for the csv recipe.

    python benchmarks/csv_memory.py [--rows 700000] [--keep FILE]

Writes a table of `--rows` rows (30 numeric columns, a text column of 50
values, a 0/1 label: about 290 bytes a row), then reads it in a fresh
process with `l2compile.tables.read_csv` as a build does (test_split 0.2),
and prints the file's size, the seconds the read took, the process's peak
resident memory, and, as the yardstick, the size of the arrays it becomes
and the peak of a process that only imports what the reader imports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

READ = """
import resource, sys, time
from pathlib import Path
from l2compile import tables
from l2compile.recipes import ModelInput, recipe_for
from l2compile.tasks import Binary
began = time.perf_counter()
if sys.argv[2] == "read":
    recipe = recipe_for("csv", label=("label",), test_split=0.2)
    task = Binary(loss_name="binary_crossentropy", metric_names=("accuracy",),
                  outputs=1, names=("0", "1"))
    data = tables.read_csv(recipe, Path(sys.argv[1]), None, seed=0,
                           model_input=ModelInput((81,), task=task))
    splits = (data.x_train, data.y_train, data.x_test, data.y_test)
    arrays = sum(a.nbytes for a in splits)
else:
    arrays = 0
seconds = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(seconds, peak, arrays / 2**20)
"""


def write_table(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    header = [f"f{i}" for i in range(30)] + ["city", "label"]
    cities = [f"city_{i}" for i in range(50)]
    with path.open("w", encoding="utf-8") as f:
        f.write(",".join(header) + "\n")
        for start in range(0, rows, 10_000):
            block = rng.normal(size=(min(10_000, rows - start), 30))
            for values in block:
                f.write(",".join(f"{v:.6f}" for v in values))
                f.write(f",{cities[rng.integers(50)]},{rng.integers(2)}\n")


def run(path: Path, mode: str) -> tuple[float, float, float]:
    out = subprocess.run(
        [sys.executable, "-c", READ, str(path), mode],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), float(out[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=700_000)
    parser.add_argument("--keep", type=Path, help="write the table here, and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.keep or Path(folder) / "table.csv"
        if not path.is_file():
            write_table(path, args.rows)
        size = os.path.getsize(path) / 2**20
        _, floor, _ = run(path, "import")
        seconds, peak, arrays = run(path, "read")
    print(f"file: {size:,.0f} MiB, {args.rows:,} rows")
    print(f"read in {seconds:.1f} s")
    print(f"peak memory {peak:,.0f} MiB: imports alone {floor:,.0f} MiB, the arrays")
    print(f"  {arrays:,.0f} MiB, the rest {peak - floor - arrays:,.0f} MiB")
    print(f"peak / file size: {peak / size:.2f}")


if __name__ == "__main__":
    main()
