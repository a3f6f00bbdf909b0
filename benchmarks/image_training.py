"""Side-by-side benchmark: photo folder to classifier, `l2compile build` with
its defaults against the script a user would write by hand.

    python benchmarks/image_training.py [--rounds 3] [--models cnn,mobilenet]

It writes an image folder (scikit-learn's 1,797 handwritten digits, scaled
up to 32x32 RGB and tinted at random: train/ holds 1,438 of them, test/ 359,
stratified), then builds, in one run, alternating which goes first:

- `cnn`: two convolutions and a softmax head, with random_rotation and
  random_zoom in front (geometric augmentation: flipping a digit changes it),
  32x32, 5 epochs;
- `mobilenet`: a MobileNetV3Small from scratch (weights: none, trained) under
  a softmax head, 96x96, 3 epochs;

each with `l2compile build SPEC --data FOLDER` (the defaults: backend auto,
every export format the spec lists: here the Keras file only, as the script
saves nothing else) and with benchmarks/image_script.py (keras.io's "Image
classification from scratch": image_dataset_from_directory, augmentation in
the tf.data map, TensorFlow). Both have the same layers, L2 (on the head's
and the convolutions' kernels), optimizer, batch size and epochs, validate on
a seeded tenth of train/, and are scored on the same test/ images.

For each it prints the medians over the rounds of the wall seconds, the CPU
seconds, the peak memory (every process of the command counted at its peak,
summed: a build trains in one process and may export in another), and the
test accuracy, with the ratios l2compile / script.

The machine is shared and noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from peaks import measure

ROOT = Path(__file__).resolve().parent.parent
SPECS = {
    "cnn": """\
name: bench_cnn
description: a small CNN with geometric augmentation (benchmarks/image_training.py)
input: {shape: [32, 32, 3]}
l2: 0.0001
layers:
  - {type: random_rotation, factor: 0.05}
  - {type: random_zoom, height_factor: 0.1}
  - {type: conv2d, filters: 16, kernel_size: 3, activation: relu}
  - {type: max_pooling2d}
  - {type: conv2d, filters: 32, kernel_size: 3, activation: relu}
  - {type: max_pooling2d}
  - {type: flatten}
  - {type: dense, units: 10, activation: softmax}
train:
  recipe: image_folder
  epochs: 5
  batch_size: 32
export:
  formats: [keras]
""",
    "mobilenet": """\
name: bench_mobilenet
description: MobileNetV3Small from scratch (benchmarks/image_training.py)
input: {shape: [96, 96, 3]}
l2: 0.0001
layers:
  - {type: backbone, model: mobilenet_v3_small, weights: none, trainable: true, l2: 0}
  - {type: global_average_pooling2d}
  - {type: dense, units: 10, activation: softmax}
train:
  recipe: image_folder
  epochs: 3
  batch_size: 32
export:
  formats: [keras]
""",
}
SIZES = {"cnn": 32, "mobilenet": 96}
EPOCHS = {"cnn": 5, "mobilenet": 3}


def write_folder(root: Path) -> None:
    """The digits as 32x32 RGB PNGs in train/ and test/ (a seeded, stratified
    fifth tests)."""
    import keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    test = np.zeros(len(digits.target), dtype=bool)
    for label in range(10):
        members = np.flatnonzero(digits.target == label)
        test[rng.permutation(members)[: round(len(members) * 0.2)]] = True
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        gray = np.kron(image / 16.0, np.ones((4, 4)))  # 8x8 -> 32x32
        tint = rng.uniform(0.4, 1.0, size=3)
        pixels = gray[..., None] * tint + rng.normal(0, 0.05, size=(32, 32, 3))
        folder = root / ("test" if test[i] else "train") / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        keras.utils.save_img(
            folder / f"{i:04d}.png", np.clip(pixels * 255, 0, 255).astype(np.uint8)
        )


def run_l2compile(model: str, folder: Path, work: Path) -> dict[str, float]:
    spec = work / f"{model}.yaml"
    out = work / f"build_{model}"
    command = [sys.executable, "-m", "l2compile", "build", str(spec)]
    result = measure([*command, "--out", str(out), "--data", str(folder)])
    metrics = json.loads((out / "metrics.json").read_text())
    reason = metrics.get("backend_reason")
    print(f"  l2compile {model}: trained on {metrics['backend']} ({reason})")
    return {**_numbers(result), "accuracy": float(metrics["test_accuracy"])}


def run_script(model: str, folder: Path) -> dict[str, float]:
    script = str(ROOT / "benchmarks" / "image_script.py")
    options = ["--epochs", str(EPOCHS[model]), "--size", str(SIZES[model])]
    result = measure(
        [sys.executable, script, "--data", str(folder), "--model", model, *options]
    )
    found = re.search(r"Test accuracy: ([\d.]+)", str(result["out"]))
    assert found is not None, result["out"]
    return {**_numbers(result), "accuracy": float(found.group(1))}


def _numbers(result: dict[str, float | str]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items() if k != "out"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", default="cnn,mobilenet")
    args = parser.parse_args()
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        folder = work / "digits"
        write_folder(folder)
        for model in models:
            (work / f"{model}.yaml").write_text(SPECS[model])
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            for model in models:
                order = ["l2compile", "script"]
                for who in order if round_ % 2 == 0 else order[::-1]:
                    result = (
                        run_l2compile(model, folder, work)
                        if who == "l2compile"
                        else run_script(model, folder)
                    )
                    results.setdefault((model, who), []).append(result)
                    print(f"round {round_ + 1} {model} {who}: {result}", flush=True)
    print(f"\nmedians over {args.rounds} rounds, alternating, the same images")
    print("| model | | l2compile | script | l2compile / script |")
    print("|---|---|---|---|---|")
    for model in models:
        mine, theirs = results[(model, "l2compile")], results[(model, "script")]
        for label, key, form in (
            ("wall seconds", "wall_s", ".1f"),
            ("CPU seconds", "cpu_s", ".1f"),
            ("peak memory, MiB (every process)", "memory_mib", ".0f"),
            ("test accuracy", "accuracy", ".4f"),
        ):
            a = statistics.median(r[key] for r in mine)
            b = statistics.median(r[key] for r in theirs)
            ratio = f"{a / b:.2f}" if key != "accuracy" else f"{a - b:+.4f}"
            print(f"| {model} | {label} | {a:{form}} | {b:{form}} | {ratio} |")


if __name__ == "__main__":
    main()
