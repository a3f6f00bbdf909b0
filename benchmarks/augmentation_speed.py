"""What augmentation costs a build: the same small CNN with random_rotation
and random_zoom, with random_rotation alone, and without augmentation, on
each backend, rotating which goes first.

    python benchmarks/augmentation_speed.py [--rounds 3] [--backends jax,tensorflow]

The image folder and the CNN are benchmarks/image_training.py's (scikit-learn's
digits at 32x32 RGB, 5 epochs). Augmentation runs on the training batches in
the input pipeline (the generated build_augmentation), so the compiled
training step is the same with and without it; this measures what the
pipeline adds. Prints the medians of the training seconds (metrics.json's
timing.train_seconds) and of the whole build, and each one's ratio to the
build without augmentation.
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
from image_training import ROOT, SPECS, write_folder
from peaks import measure

ROTATION = "  - {type: random_rotation, factor: 0.05}\n"
ZOOM = "  - {type: random_zoom, height_factor: 0.1}\n"
VARIANTS = ("rotation and zoom", "rotation", "without")


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
        assert ROTATION + ZOOM in SPECS["cnn"]
        texts = {
            "rotation and zoom": SPECS["cnn"],
            "rotation": SPECS["cnn"].replace(ZOOM, ""),
            "without": SPECS["cnn"].replace(ROTATION + ZOOM, ""),
        }
        specs = {name: work / f"{i}.yaml" for i, name in enumerate(VARIANTS)}
        for name, spec in specs.items():
            spec.write_text(texts[name])
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            for backend in args.backends.split(","):
                shift = round_ % len(VARIANTS)
                for which in VARIANTS[shift:] + VARIANTS[:shift]:
                    found = build(specs[which], work / "digits", backend, work / "out")
                    subprocess.run(["rm", "-rf", str(work / "out")], check=True)
                    results.setdefault((backend, which), []).append(found)
                    print(f"round {round_ + 1} {backend} {which}: {found}", flush=True)
    print(f"\nmedians over {args.rounds} rounds, rotating order ({ROOT.name})")
    print(
        "| backend | augmentation | training seconds | / without | build seconds "
        "| / without | test accuracy |"
    )
    print("|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        median = {
            (which, key): statistics.median(r[key] for r in results[(backend, which)])
            for which in VARIANTS
            for key in ("train_s", "wall_s", "accuracy")
        }
        for which in VARIANTS:
            train, wall = median[(which, "train_s")], median[(which, "wall_s")]
            print(
                f"| {backend} | {which} | {train:.1f} | "
                f"{train / median[('without', 'train_s')]:.2f} | {wall:.1f} | "
                f"{wall / median[('without', 'wall_s')]:.2f} | "
                f"{median[(which, 'accuracy')]:.4f} |"
            )


if __name__ == "__main__":
    main()
