"""Side-by-side benchmark: the article's script against `l2compile build` on
each Keras backend.

    python benchmarks/train_speed.py [--rounds 3] [--spec specs/mnist.yaml]
                                     [--backends jax,tensorflow]

Runs the article's script (benchmarks/article.py, as published but for its
data source) and `l2compile build SPEC --backend B` for each backend, in
turn, `--rounds` times each, rotating which goes first, on the same data
($L2COMPILE_DATA, a folder holding mnist.npz). For each it prints the medians
over the rounds of:

- training seconds: `fit` alone (the article's script times it; l2compile's
  metrics.json records it as timing.train_seconds);
- whole-process seconds: from the command's start to its end (l2compile: the
  import, training, the SavedModel and all four TFLite files checked, and
  publishing);
- peak memory: the largest resident set of the command's processes (a build
  trains in one process and exports in another, at the same time), and the
  sum of every process's peak, which bounds what they held at once
  (benchmarks/peaks.py);
- test accuracy;

and the ratios article / l2compile (how many times faster, or smaller), with
the targets of issue 13. It also measures this machine's float32 matrix
multiply rate, and from the model's arithmetic (multiply-adds of the forward
and backward passes, per sample) gives the floor: the training time if every
second went to arithmetic at that rate.

The machine is shared and noisy: compare the ratios of one run, not absolute
figures across runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peaks import measure

ROOT = Path(__file__).resolve().parent.parent
#: (label, key, format, target ratio article / l2compile, and what it means)
ROWS = (
    ("training seconds", "train_s", ".1f", 4.0),
    ("whole-process seconds", "process_s", ".1f", 2.5),
    ("peak memory, largest process (MiB)", "peak_mib", ".0f", 2.0),
    ("peak memory, every process's summed (MiB)", "summed_mib", ".0f", 2.0),
)


def run_article(env: dict[str, str]) -> dict[str, float]:
    # The article's tf.keras is Keras 3 on TensorFlow.
    env = {**env, "KERAS_BACKEND": "tensorflow"}
    result = measure([sys.executable, "benchmarks/article.py"], env)
    out = str(result["out"])
    train = float(re.search(r"Training seconds: ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    accuracy = float(re.search(r"Test accuracy: ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"train_s": train, **_memory(result), "accuracy": accuracy}


def _memory(result: dict[str, float | str]) -> dict[str, float]:
    return {
        "process_s": float(result["wall_s"]),
        "peak_mib": float(result["largest_mib"]),
        "summed_mib": float(result["memory_mib"]),
    }


def run_l2compile(env: dict[str, str], spec: str, backend: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        out_dir = Path(folder) / "build"
        command = [sys.executable, "-m", "l2compile", "build", spec]
        command += ["--out", str(out_dir), "--backend", backend]
        result = measure(command, env)
        metrics = json.loads((out_dir / "metrics.json").read_text())
        checked = sorted(metrics.get("tflite", {}).get("files", {}))
    assert metrics["backend"] == backend, metrics["backend"]
    print(f"  {backend}: TFLite files checked: {', '.join(checked)}", file=sys.stderr)
    return {
        "train_s": metrics["timing"]["train_seconds"],
        **_memory(result),
        "accuracy": metrics["test_accuracy"],
    }


def matmul_gflops() -> float:
    """This machine's float32 matrix multiply rate (NumPy's BLAS, all cores),
    the best of five."""
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    best = 0.0
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(10):
            a @ a
        best = max(best, 10 * 2 * 1024**3 / (time.perf_counter() - began) / 1e9)
    return best


def training_gflop(spec: str) -> float:
    """The article's arithmetic: multiply-adds of the forward pass per sample
    (one per weight), three times that for training (the backward pass
    computes two products per weight), over every sample of every epoch, plus
    the forward pass over the test split after each epoch."""
    from l2compile.generate import compile_spec

    compiled = compile_spec(Path(spec))
    assert not isinstance(compiled, list)
    plan = compiled.plan
    per_sample = 2 * plan.params  # flops of one forward pass (dense layers)
    train = 3 * per_sample * 60_000 * plan.epochs
    validate = per_sample * 10_000 * plan.epochs
    return (train + validate) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spec", default="specs/mnist.yaml")
    installed = [
        b for b in ("jax", "tensorflow", "torch") if importlib.util.find_spec(b)
    ]
    parser.add_argument(
        "--backends",
        default=",".join(installed),
        help=f"comma-separated (default: those installed, {','.join(installed)})",
    )
    args = parser.parse_args()
    if "L2COMPILE_DATA" not in os.environ:
        sys.exit("set L2COMPILE_DATA to the folder holding mnist.npz")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    names = ["article", *args.backends.split(",")]

    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            result = (
                run_article(env)
                if name == "article"
                else run_l2compile(env, args.spec, name)
            )
            results[name].append(result)
            print(f"round {round_ + 1} {name}: {result}", file=sys.stderr)

    median = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    builds = names[1:]
    print(f"medians over {args.rounds} rounds, rotating order, same data")
    head = " | ".join(f"l2compile, {b} | article / {b}" for b in builds)
    print(f"| | article's script | {head} | target |")
    print("|---|---|" + "---|---|" * len(builds) + "---|")
    a = median["article"]
    for label, key, fmt, target in ROWS:
        cells = " | ".join(
            f"{median[b][key]:{fmt}} | {a[key] / median[b][key]:.2f}x" for b in builds
        )
        print(f"| {label} | {a[key]:{fmt}} | {cells} | ≥ {target}x |")
    cells = " | ".join(f"{median[b]['accuracy']:.4f} | " for b in builds)
    print(f"| test accuracy | {a['accuracy']:.4f} | {cells} | |")

    gflop, rate = training_gflop(args.spec), matmul_gflops()
    floor = gflop / rate
    print(
        f"\narithmetic: {gflop:.0f} GFLOP to train and validate; this machine "
        f"multiplies float32 matrices at {rate:.0f} GFLOP/s, so the floor is "
        f"{floor:.1f} s"
    )
    for b in builds:
        print(f"{b}: training takes {median[b]['train_s'] / floor:.1f}x the floor")


if __name__ == "__main__":
    main()
