"""Benchmark: reading a CSV table of a few hundred MB for the csv recipe.

    python benchmarks/table_ingest.py [--rows 700000] [--keep FILE] [--rounds 3]

Writes a table of `--rows` rows (30 numeric columns, a text column of 50
values, a 0/1 label: about 295 bytes a row), then reads it, each time in a
fresh process, alternating A B C for `--rounds` rounds:

- python: l2compile's Python reader (`tables.read_csv`, the csv module),
  which the build falls back to;
- arrow: what the build reads with (`tables_arrow.read_fast`, Arrow), which
  gives the Python reader's dataset bit for bit;
- floor: plain `pyarrow.csv.read_csv` of the same file, which only parses it
  (no checks, no arrays, the whole table held).

Each read as a build reads it (test_split 0.2, task binary). Prints the
medians of the read's wall seconds (imports left out) and of the process's
peak resident memory (ru_maxrss), the file's size, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

READ = """
import resource, sys, time
from pathlib import Path
mode, path = sys.argv[1], Path(sys.argv[2])
if mode == "floor":
    import pyarrow.csv as pv
    began = time.perf_counter()
    rows = pv.read_csv(path).num_rows
else:
    from l2compile import tables, tables_arrow
    from l2compile.recipes import ModelInput
    from l2compile.sources import source_for
    from l2compile.tasks import Binary
    recipe = source_for("csv", None, label=("label",), test_split=0.2)
    task = Binary("binary_crossentropy", ("accuracy",), 1, ("0", "1"))
    read = tables_arrow.read_fast if mode == "arrow" else tables.read_csv
    began = time.perf_counter()
    data = read(recipe, path, None, seed=0, model_input=ModelInput((81,), task=task))
    rows = len(data.x_train) + len(data.x_test)
seconds = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(seconds, peak, rows)
"""

MODES = ("python", "arrow", "floor")


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


def run(mode: str, path: Path) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", READ, mode, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=700_000)
    parser.add_argument("--keep", type=Path, help="write the table here, and keep it")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.keep or Path(folder) / "table.csv"
        if not path.is_file():
            write_table(path, args.rows)
        size = os.path.getsize(path) / 2**20
        found: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
        for round_ in range(args.rounds):
            for mode in MODES:
                found[mode].append(run(mode, path))
                seconds, peak = found[mode][-1]
                print(f"round {round_ + 1} {mode:6} {seconds:6.2f} s {peak:5.0f} MiB")
    print(f"file: {size:,.1f} MiB, {args.rows:,} rows; medians of {args.rounds}")
    medians = {
        mode: tuple(statistics.median(r[i] for r in found[mode]) for i in (0, 1))
        for mode in MODES
    }
    for mode in MODES:
        seconds, peak = medians[mode]
        print(
            f"{mode:6} {seconds:6.2f} s, peak {peak:5.0f} MiB ({peak / size:.2f}x file)"
        )
    python, arrow, floor = (medians[mode][0] for mode in MODES)
    print(f"arrow against python: {python / arrow:.1f} times as fast")
    print(f"arrow against pyarrow.csv.read_csv: {arrow / floor:.2f}x its time")
    print(f"arrow's peak against the file's size: {medians['arrow'][1] / size:.2f}x")


if __name__ == "__main__":
    main()
