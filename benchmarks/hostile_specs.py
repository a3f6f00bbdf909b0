"""How long `l2compile validate` takes to answer hostile specs under the 1 MiB
limit, against a good spec, side by side.

    python benchmarks/hostile_specs.py [--rounds 3]

Writes each hostile file into a temporary folder, then runs
`python -m l2compile validate FILE` for the good spec and every hostile one in
turn, `--rounds` times, and prints for each the median wall seconds, the
median peak memory (RSS) and the ratios to the good spec. The target: every
spec under the limit answered in under 1 s and 150 MB. The machine is shared
and noisy: read the ratios of one run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = (1 << 20) - 64  # just under the 1 MiB limit


def _fill(head: str, unit: str, tail: str = "") -> str:
    count = (LIMIT - len(head) - len(tail)) // len(unit)
    return head + unit * count + tail


def hostile() -> dict[str, str]:
    """The files: each as large as the limit allows."""
    good = (ROOT / "specs" / "mnist.yaml").read_text(encoding="utf-8")
    return {
        "good spec (specs/mnist.yaml)": good,
        "500k ones under an unknown key": _fill("junk: [", "1, ", "1]\n"),
        "ones as a block list under layers": _fill("layers:\n", "- 1\n"),
        "small mappings": _fill("junk:\n", "- {a: 1}\n"),
        "a flow mapping of distinct keys": "junk: {"
        + ", ".join(f"k{i}: 1" for i in range(LIMIT // 12))
        + "}\n",
        "distinct anchors": "junk:\n"
        + "".join(f"- &a{i} 1\n" for i in range(LIMIT // 14)),
        "aliases of one anchor": _fill("a: &x 1\njunk: [", "*x, ", "*x]\n"),
        "billion laughs": "a0: &a0 [x]\n"
        + "".join(
            f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
            for i in range(1, 10)
        ),
        "comments": good + _fill("", "# a comment line of a spec\n"),
        "one long string": _fill("description: ", "x", "\n"),
        "folded double-quoted text": _fill('description: "', "a\n\n  ", 'b"\n'),
        "deep flow nesting": _fill("junk: ", "[", "\n"),
        "graph: 512 misspelled inputs": _graph(),
    }


def _graph() -> str:
    """990 named layers, then merges of names none of them has: each unknown
    name is a located error, and a search for the closest earlier name."""
    head = "name: hostile\ninput: {shape: [16]}\nlayers:\n"
    named = "".join(
        f"  - {{type: dense, units: 8, name: layer_number_{i}}}\n" for i in range(990)
    )
    wrong = ", ".join(f"lay_number_{i * 15}" for i in range(64))
    merges = f"  - {{type: add, inputs: [{wrong}]}}\n" * 8
    tail = "train: {recipe: npz, num_classes: 10, epochs: 1, batch_size: 8}\n"
    return head + named + merges + tail


def run(path: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `validate`."""
    began = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "l2compile", "validate", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as folder:
        files = {}
        for i, (name, text) in enumerate(hostile().items()):
            path = Path(folder) / f"{i:02d}.yaml"
            path.write_text(text, encoding="utf-8")
            files[name] = path
        times: dict[str, list[float]] = {name: [] for name in files}
        peaks: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(rounds):
            for name, path in files.items():
                # ru_maxrss of children is the largest so far: measure each in
                # a fresh process that reports its own child's peak.
                seconds, peak = _isolated(path)
                times[name].append(seconds)
                peaks[name].append(peak)
    base_t = statistics.median(times["good spec (specs/mnist.yaml)"])
    base_m = statistics.median(peaks["good spec (specs/mnist.yaml)"])
    print(f"{'spec':36} {'seconds':>8} {'MiB':>6} {'x time':>7} {'x MiB':>6}")
    for name in files:
        t, m = statistics.median(times[name]), statistics.median(peaks[name])
        print(f"{name:36} {t:8.2f} {m:6.0f} {t / base_t:7.2f} {m / base_m:6.2f}")


def _isolated(path: Path) -> tuple[float, float]:
    probe = (
        "import sys; from pathlib import Path; "
        "sys.path.insert(0, sys.argv[1]); "
        "from hostile_specs import run; "
        "print(*run(Path(sys.argv[2])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(Path(__file__).parent), str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1])


if __name__ == "__main__":
    main()
