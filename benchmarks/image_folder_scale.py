"""Scale benchmark: an image folder of 6,000 and of 60,000 MNIST digits.

    python benchmarks/image_folder_scale.py [--sizes 6000,30000,60000] [--epochs 3]
                                            [--rounds 1] [--keep FOLDER]

Writes the first N training digits of mnist.npz ($L2COMPILE_DATA, a folder
holding it) as PNG files in `train/<digit>/`, and the first N/6 test digits
in `test/<digit>/`, then runs `l2compile build` on a spec that reads the
folder with the image_folder recipe (the article's MLP, input [28, 28, 1]),
once per size per round, alternating the sizes. Streaming from disk means the
cost grows with the number of images but memory does not: for each size it
prints the medians of

- training seconds (metrics.json's timing.train_seconds: `fit`, which reads
  and decodes every image of every epoch from its file);
- whole-process seconds (the build command, from start to end: listing and
  checking the files, decoding them all once to check them, training,
  scoring the test images, saving);
- peak memory: the largest resident set among the build's processes;
- test accuracy;

and the ratios of the largest size to the smallest: the memory ratio should
be within 1.3. Training time grows linearly when each further image costs
the same: the script prints the extra training seconds per 10,000 more
images between consecutive sizes, which should agree (a build also has a
fixed cost, compiling the model and starting up, which does not grow).

The machine is shared and noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

SPEC = """\
name: mnist_folder
input: {{shape: [28, 28, 1]}}
l2: 0.01
layers:
  - {{type: flatten}}
  - {{type: dense, units: 128, activation: relu}}
  - {{type: dense, units: 64, activation: relu}}
  - {{type: dense, units: 10, activation: softmax}}
train:
  recipe: image_folder
  data: digits
  epochs: {epochs}
  batch_size: 32
export: {{formats: [keras]}}
"""


def write_folder(root: Path, mnist: Path, size: int) -> None:
    """N training digits and N/6 test digits as PNG files, one folder a digit."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    with np.load(mnist) as data:
        parts = {
            "train": (data["x_train"][:size], data["y_train"][:size]),
            "test": (data["x_test"][: size // 6], data["y_test"][: size // 6]),
        }
    for part, (images, labels) in parts.items():
        for digit in range(10):
            (root / part / str(digit)).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            png = tf.io.encode_png(image[..., None]).numpy()
            (root / part / str(label) / f"{i:05d}.png").write_bytes(png)


def build(folder: Path, out: Path) -> dict[str, float]:
    """One build; its seconds, peak memory and test accuracy."""
    command = [sys.executable, "-m", "l2compile", "build", "spec.yaml"]
    began = time.perf_counter()
    process = subprocess.Popen(
        [*command, "--out", str(out)],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    errors = process.stderr.read()
    # The largest resident set of the build and the processes it waited for.
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"the build in {folder} failed:\n{errors[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "train_s": metrics["timing"]["train_seconds"],
        "process_s": seconds,
        "peak_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "accuracy": metrics["test_accuracy"],
    }


ROWS = (
    ("training seconds", "train_s", ".1f"),
    ("whole-process seconds", "process_s", ".1f"),
    ("peak memory (RSS, MiB)", "peak_mib", ".0f"),
    ("test accuracy", "accuracy", ".4f"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="6000,30000,60000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--keep", type=Path, help="write the folders here, and keep them"
    )
    args = parser.parse_args()
    data = os.environ.get("L2COMPILE_DATA")
    mnist = Path(data or "") / "mnist.npz"
    if not data or not mnist.is_file():
        sys.exit("set L2COMPILE_DATA to a folder holding mnist.npz")
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as temporary:
        base = args.keep or Path(temporary)
        for size in sizes:
            folder = base / f"mnist_{size}"
            if not (folder / "digits").is_dir():
                print(f"writing {size:,} + {size // 6:,} PNG files", flush=True)
                write_folder(folder / "digits", mnist, size)
            (folder / "spec.yaml").write_text(SPEC.format(epochs=args.epochs))
        runs: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
        for round_ in range(args.rounds):
            order = sizes if round_ % 2 == 0 else sizes[::-1]
            for size in order:
                folder = base / f"mnist_{size}"
                print(f"round {round_ + 1}: building on {size:,} images", flush=True)
                runs[size].append(build(folder, folder / f"build_{round_}"))
    medians = {
        size: {key: statistics.median(r[key] for r in found) for _, key, _ in ROWS}
        for size, found in runs.items()
    }
    small, large = sizes[0], sizes[-1]
    print(f"\n{args.epochs} epochs, medians of {args.rounds} round(s)")
    print("| | " + " | ".join(f"{n:,} images" for n in sizes) + " | ratio |")
    print("|---|" + "---:|" * (len(sizes) + 1))
    for label, key, form in ROWS:
        found = [medians[n][key] for n in sizes]
        cells = " | ".join(f"{v:{form}}" for v in found)
        print(f"| {label} | {cells} | {found[-1] / found[0]:.2f} |")
    print(
        "| images | "
        + " | ".join(f"{n:,}" for n in sizes)
        + f" | {large / small:.2f} |"
    )
    print("\nextra training seconds per 10,000 more images:")
    for a, b in itertools.pairwise(sizes):
        extra = medians[b]["train_s"] - medians[a]["train_s"]
        print(f"  {a:,} -> {b:,}: {extra / (b - a) * 10_000:.2f} s")


if __name__ == "__main__":
    main()
