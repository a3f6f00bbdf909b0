"""What augmentation costs a build: the same small CNN with and without
random_rotation and random_zoom, on each backend, alternating.

    python benchmarks/augmentation_speed.py [--rounds 3] [--backends jax,tensorflow]

The image folder and the CNN are benchmarks/image_training.py's (scikit-learn's
digits at 32x32 RGB, 5 epochs). Augmentation runs on the training batches in
the input pipeline (the generated build_augmentation), so the compiled
training step is the same with and without it; this measures what the
pipeline adds. Prints the medians of the training seconds (metrics.json's
timing.train_seconds) and of the whole build, and the ratios with / without.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_training import ROOT, SPECS, measure, write_folder

AUGMENTATION = "".join(
    f"  - {layer}\n"
    for layer in (
        "{type: random_rotation, factor: 0.05}",
        "{type: random_zoom, height_factor: 0.1}",
    )
)


def build(spec: Path, folder: Path, backend: str, out: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "l2compile", "build", str(spec), "--out", str(out)]
    result = measure([*command, "--data", str(folder), "--backend", backend])
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "train_s": float(metrics["timing"]["train_seconds"]),
        "wall_s": float(result["wall_s"]),
        "accuracy": float(metrics["test_accuracy"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="jax,tensorflow")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        write_folder(work / "digits")
        specs = {"with": work / "with.yaml", "without": work / "without.yaml"}
        specs["with"].write_text(SPECS["cnn"])
        assert AUGMENTATION in SPECS["cnn"]
        specs["without"].write_text(SPECS["cnn"].replace(AUGMENTATION, ""))
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            for backend in args.backends.split(","):
                order = ["with", "without"]
                for which in order if round_ % 2 == 0 else order[::-1]:
                    found = build(specs[which], work / "digits", backend, work / "out")
                    subprocess.run(["rm", "-rf", str(work / "out")], check=True)
                    results.setdefault((backend, which), []).append(found)
                    print(f"round {round_ + 1} {backend} {which}: {found}", flush=True)
    print(f"\nmedians over {args.rounds} rounds, alternating ({ROOT.name})")
    print("| backend | | with augmentation | without | with / without |")
    print("|---|---|---|---|---|")
    for backend in args.backends.split(","):
        for label, key in (
            ("training seconds", "train_s"),
            ("build seconds", "wall_s"),
        ):
            a = statistics.median(r[key] for r in results[(backend, "with")])
            b = statistics.median(r[key] for r in results[(backend, "without")])
            print(f"| {backend} | {label} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
        a = statistics.median(r["accuracy"] for r in results[(backend, "with")])
        b = statistics.median(r["accuracy"] for r in results[(backend, "without")])
        print(f"| {backend} | test accuracy | {a:.4f} | {b:.4f} | |")


if __name__ == "__main__":
    main()
