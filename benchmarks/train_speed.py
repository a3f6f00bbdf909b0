"""Side-by-side benchmark: the article's script against `l2compile build`.

    python benchmarks/train_speed.py [--rounds 3] [--spec specs/mnist.yaml]

Runs the two in turn, `--rounds` times each, alternating which goes first, on
the same data ($L2COMPILE_DATA, a folder holding mnist.npz), and prints for
each the training seconds, whole-process seconds, peak memory (RSS) and test
accuracy (medians over the rounds), and the ratios l2compile / article. The
machine is shared and noisy: compare the ratios of one run, not absolute
figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; its wall seconds, peak RSS in MiB and its stdout."""
    began = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed with exit code {process.returncode}")
    return seconds, usage.ru_maxrss / 1024, out  # ru_maxrss is in KiB on Linux


def run_article(env: dict[str, str]) -> dict[str, float]:
    seconds, rss, out = measure([sys.executable, "benchmarks/article.py"], env)
    train = float(re.search(r"Training seconds: ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    accuracy = float(re.search(r"Test accuracy: ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {
        "train_s": train,
        "process_s": seconds,
        "peak_mib": rss,
        "accuracy": accuracy,
    }


def run_l2compile(env: dict[str, str], spec: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        out_dir = Path(folder) / "build"
        command = [
            sys.executable,
            "-m",
            "l2compile",
            "build",
            spec,
            "--out",
            str(out_dir),
        ]
        seconds, rss, _ = measure(command, env)
        metrics = json.loads((out_dir / "metrics.json").read_text())
    return {
        "train_s": metrics["timing"]["train_seconds"],
        "process_s": seconds,
        "peak_mib": rss,
        "accuracy": metrics["test_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--spec", default="specs/mnist.yaml")
    args = parser.parse_args()
    if "L2COMPILE_DATA" not in os.environ:
        sys.exit("set L2COMPILE_DATA to the folder holding mnist.npz")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

    results: dict[str, list[dict[str, float]]] = {"article": [], "l2compile": []}
    for round_ in range(args.rounds):
        order = (
            ["article", "l2compile"] if round_ % 2 == 0 else ["l2compile", "article"]
        )
        for name in order:
            result = (
                run_article(env) if name == "article" else run_l2compile(env, args.spec)
            )
            results[name].append(result)
            print(f"round {round_ + 1} {name}: {result}", file=sys.stderr)

    median = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    a, b = median["article"], median["l2compile"]
    print(f"medians over {args.rounds} rounds, alternating order, same data")
    print("| | article's script | l2compile build | ratio |")
    print("|---|---|---|---|")
    rows = (
        ("training seconds", "train_s", ".1f"),
        ("whole-process seconds", "process_s", ".1f"),
        ("peak memory (RSS, MiB)", "peak_mib", ".0f"),
    )
    for label, key, fmt in rows:
        ratio = b[key] / a[key]
        print(f"| {label} | {a[key]:{fmt}} | {b[key]:{fmt}} | {ratio:.2f} |")
    print(f"| test accuracy | {a['accuracy']:.4f} | {b['accuracy']:.4f} | |")


if __name__ == "__main__":
    main()
