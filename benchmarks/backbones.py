"""Backbone benchmark: size, accuracy and latency of each backbone on LiteRT.

    python benchmarks/backbones.py [--size 96] [--per-class 100] [--epochs 10]
                                   [--models mobilenet_v2 ...] [--out FILE]

Per backbone: a synthetic RGB image folder at --size (tests.conftest's
circles, squares, stripes), a stand-in weights file, a spec (frozen backbone,
global average pooling, softmax head; TFLite float32 and int8) built
in-process with l2compile.build, and the same architecture converted at
224x224 without training (a file's size does not depend on the input size,
its latency does, and phones run 224). Prints a markdown table; writes JSON
to --out (default /tmp/backbones.json); the files stay in a temporary folder.

What the numbers are:

- accuracy: synthetic shapes and stand-in weights, not ImageNet's (no
  download here): random kernels whose batch normalization statistics are the
  images', as in tests/test_phone_classifier.py. It checks the pipeline and
  what int8 costs, not how a backbone transfers to photos. Each builds at the
  default max_accuracy_drop of 0.01 with the int8 fallback (operations kept
  in float); the full int8 file's drop and the fallback file's are reported
  (75 test images: one image is 0.013). Where the fallback does not meet
  0.01, the build exports again (no retraining) at 0.1 with the full file;
- size: --size is 96 by default, not 224, to keep the builds affordable;
- latency: one image (batch 1), LiteRT, one thread, this machine's CPU; the
  median of --invokes invokes after 5 warm-ups, in rounds that alternate the
  files (A B A B ...) so that machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS = (
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_v2_b0",
)
PHONE = 224
SPEC = """\
name: bench_{model}
description: a frozen {model} under a softmax head (benchmarks/backbones.py)
input: {{shape: [{size}, {size}, 3]}}
l2: 0.0001
layers:
  - {{type: random_flip, mode: horizontal}}
  - {{type: backbone, model: {model}, weights: {model}.weights.h5}}
  - {{type: global_average_pooling2d}}
  - {{type: dense, units: 3, activation: softmax}}
train:
  recipe: image_folder
  data: photos
  test_split: 0.25
  epochs: {epochs}
  batch_size: 16
  optimizer: {{learning_rate: 0.01}}
export:
  formats: [keras, tflite]
  tflite: {{quantize: [none, int8], {tflite}}}
"""


def application(model: str, size: int, weights: Path | None = None) -> Any:
    """The keras.applications model without its top, at size x size."""
    import keras

    from l2compile.layers.backbone import BACKBONES

    app = getattr(keras.applications, BACKBONES[model].keras_class)(
        input_shape=(size, size, 3), include_top=False, weights=None
    )
    if weights is not None:
        app.load_weights(weights)
    return app


def stand_in_weights(model: str, size: int, images: list[Path], path: Path) -> None:
    """Random kernels; batch normalization statistics of `images`, as the
    application sees them (momentum 0: one training-mode call sets them)."""
    import keras
    from PIL import Image

    from l2compile.layers.backbone import BACKBONES

    app = application(model, size)
    for layer in app.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    pixels = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in images])
    facts = BACKBONES[model]
    app(pixels.astype("float32") / 255 * facts.scale + facts.offset, training=True)
    app.save_weights(path)


def build(model: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build one backbone's spec at the default max_accuracy_drop (0.01),
    with the int8 fallback; where that fails, export again (no retraining)
    with the full int8 file at max_accuracy_drop 0.1, to report it."""
    from l2compile import build as builder
    from l2compile.errors import BuildError, ParityError
    from l2compile.generate import compile_spec
    from tests.conftest import make_image_folder

    sizes = {"per_class": args.per_class, "size": args.size}
    photos = make_image_folder(folder / "photos", channels=3, split=False, **sizes)
    images = sorted(photos.glob("*/*"))
    weights = folder / f"{model}.weights.h5"
    stand_in_weights(model, args.size, images[::3], weights)
    failed = None
    for tflite, resume in (
        ("int8_fallback: auto", False),
        ("int8_fallback: none, max_accuracy_drop: 0.1", True),
    ):
        spec = folder / "spec.yaml"
        text = SPEC.format(
            model=model, size=args.size, epochs=args.epochs, tflite=tflite
        )
        spec.write_text(text, encoding="utf-8")
        compiled = compile_spec(spec)
        assert not isinstance(compiled, list), [str(e) for e in compiled]
        try:
            # resume: the code is the same, so the retry exports without training.
            result = builder.build(
                compiled.plan,
                compiled.code,
                folder / "build",
                resume=resume,
                log=lambda line: print(f"[{model}] {line}", flush=True),
            )
        except BuildError as error:
            if resume or not isinstance(error.__cause__, ParityError):
                raise
            failed = str(error).splitlines()[0]
            print(f"[{model}] the fallback did not meet 0.01: {failed}")
            continue
        files = result.metrics["tflite"]["files"]
        fallback = files["int8"].get("int8_fallback")
        return {
            "params": compiled.plan.params,
            "fallback_failed": failed,
            "keras_accuracy": result.metrics["test_accuracy"],
            **{f"{m}_accuracy": files[m]["test_accuracy"] for m in files},
            "int8_drop_full": (
                fallback["drop_before"] if fallback else files["int8"]["accuracy_drop"]
            ),
            "int8_drop": files["int8"]["accuracy_drop"],
            "kept_in_float": [
                k["layer"] for k in (fallback["kept_in_float"] if fallback else [])
            ],
            **{f"{m}_mb": files[m]["size_bytes"] / 1e6 for m in files},
            "files": {
                f"{m}_{args.size}": str(folder / "build" / files[m]["file"])
                for m in files
            },
        }
    raise AssertionError("unreachable")


def convert_phone(model: str, weights: Path, out: Path) -> None:
    """(On TensorFlow, in a child process.) The trained model's dynamic-range
    file (the build checks only float32 and int8: on 75 test images one image
    is 0.013, over the 0.01 budget); and the same architecture at 224x224,
    untrained head, converted as a build converts: float32 and full int8."""
    import keras

    from l2compile import export
    from l2compile.layers.backbone import BACKBONES

    trained = keras.saving.load_model(out / "build" / "model.keras")
    size = trained.input_shape[1]
    source = out / f"{model}_{size}_source"
    export.export_tflite_source(
        trained, source, (size, size, 3), 1, "probabilities"
    )  # the dynamic-range file of the trained model, outside the build's check
    export.convert_tflite(source, out / "build" / "model.dynamic.tflite", "dynamic")
    shutil.rmtree(source)
    facts = BACKBONES[model]
    inputs = keras.Input((PHONE, PHONE, 3))
    x = keras.layers.Rescaling(facts.scale, offset=facts.offset)(inputs)
    x = application(model, PHONE, weights)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    source = out / f"{model}_{PHONE}_source"
    export.export_tflite_source(
        keras.Model(inputs, outputs), source, (PHONE, PHONE, 3), 1, "probabilities"
    )
    calibration = np.random.default_rng(0).random((32, PHONE, PHONE, 3), "float32")
    for mode in ("none", "int8"):
        path = out / f"{model}_{PHONE}.{mode}.tflite"
        export.convert_tflite(source, path, mode, calibration)
    shutil.rmtree(source)


Key = tuple[str, str]  # (backbone, file: "none_96", "int8_224", ...)


def latencies(files: dict[Key, str], invokes: int) -> dict[Key, float]:
    """Median milliseconds of one invoke (batch 1, one thread) per file; the
    files take turns, in 10 rounds of `invokes / 10` invokes."""
    from ai_edge_litert.interpreter import Interpreter

    runners = {}
    for key, path in files.items():
        interpreter = Interpreter(model_path=path, num_threads=1)
        interpreter.allocate_tensors()
        (inp,) = interpreter.get_input_details()
        x = np.random.default_rng(0).random(inp["shape"]).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        for _ in range(5):
            interpreter.invoke()
        runners[key] = interpreter
    times: dict[Key, list[float]] = {key: [] for key in files}
    for _ in range(10):
        for key, interpreter in runners.items():
            for _ in range(max(1, invokes // 10)):
                start = time.perf_counter()
                interpreter.invoke()
                times[key].append((time.perf_counter() - start) * 1000)
    return {key: statistics.median(t) for key, t in times.items()}


def table(results: dict[str, dict[str, Any]], size: int) -> str:
    """One row per backbone; ms: median milliseconds of one invoke."""
    modes = ("none", "dynamic", "int8")
    times = [f"{m}_{size}" for m in modes] + [f"{m}_{PHONE}" for m in ("none", "int8")]
    head = ["backbone", "params", "float MB", "dynamic MB", "int8 MB", "acc keras"]
    head += ["int8 drop: full → kept", "kept in float"]
    head += [f"ms {k.replace('none', 'float').replace('_', ' ')}" for k in times]
    lines = ["| " + " | ".join([*head, "s"]) + " |", "|---" * (len(head) + 1) + "|"]
    for model, r in results.items():
        if "error" in r:
            lines.append(f"| {model} | failed: {r['error'].splitlines()[0]} |")
            continue
        cells = [model, f"{r['params']:,}"]
        cells += [f"{r[f'{m}_mb']:.2f}" for m in modes]
        cells += [f"{r['keras_accuracy']:.3f}"]
        after = "not met" if r["fallback_failed"] else f"{r['int8_drop']:.3f}"
        cells += [f"{r['int8_drop_full']:.3f} → {after}"]
        cells += [", ".join(r["kept_in_float"]) or "-"]
        cells += [f"{r['ms'][k]:.1f}" for k in times] + [f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure(model: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Build `model` at --size, then convert it at 224 in a TensorFlow process."""
    start = time.perf_counter()
    result = build(model, folder, args)
    result["build_seconds"] = time.perf_counter() - start
    if args.size != PHONE:
        weights = str(folder / f"{model}.weights.h5")
        subprocess.run(
            [sys.executable, __file__, "--convert-phone", model, weights, folder],
            check=True,
            env={**os.environ, "KERAS_BACKEND": "tensorflow"},
        )
        for mode in ("none", "int8"):
            path = folder / f"{model}_{PHONE}.{mode}.tflite"
            result["files"][f"{mode}_{PHONE}"] = str(path)
        dynamic = folder / "build" / "model.dynamic.tflite"
        result["files"][f"dynamic_{args.size}"] = str(dynamic)
        result["dynamic_mb"] = dynamic.stat().st_size / 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--invokes", type=int, default=50)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/backbones.json"))
    parser.add_argument("--convert-phone", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.convert_phone:
        model, weights, out = args.convert_phone
        convert_phone(model, Path(weights), Path(out))
        return
    os.environ.setdefault("KERAS_BACKEND", "jax")
    work = Path(tempfile.mkdtemp(prefix="backbones-"))
    print(f"working in {work}")
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    for model in args.models:
        start = time.perf_counter()
        try:
            results[model] = measure(model, work / model, args)
        except Exception as error:  # one backbone's failure is a result too
            results[model] = {"error": f"{type(error).__name__}: {error}"}
        results[model]["seconds"] = seconds = time.perf_counter() - start
        print(
            f"[{model}] {results[model].get('error', 'done')} ({seconds:.0f} s)",
            flush=True,
        )
    built = {model: r for model, r in results.items() if "error" not in r}
    files = {
        (m, key): path for m, r in built.items() for key, path in r["files"].items()
    }
    for (model, key), value in latencies(files, args.invokes).items():
        results[model].setdefault("ms", {})[key] = value
    elapsed = time.perf_counter() - started
    print(
        f"\nSynthetic shapes (3 classes, {args.per_class} images each, "
        f"{args.size}x{args.size}), stand-in backbone weights (not ImageNet), "
        f"{args.epochs} epochs: the accuracy checks the pipeline, not the "
        f"backbones. ms: median of one image (batch 1), LiteRT, 1 thread, this "
        f"CPU ({PHONE}: same weights, head untrained). s: build + {PHONE} "
        f"conversion. Total {elapsed:.0f} s\n"
    )
    print(table(results, args.size))
    del args.convert_phone
    report = {"args": {**vars(args), "out": str(args.out)}, "results": results}
    args.out.write_text(json.dumps({**report, "elapsed_seconds": elapsed}, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
