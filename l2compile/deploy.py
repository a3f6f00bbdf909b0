"""What a phone app gets beside the TFLite files (l2compile.formats.tflite
converts and checks them): the files that say how to feed and read them
(`model.json`, and the task's own, as `labels.txt`), and the metadata that
MediaPipe reads in an image classifier's."""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from l2compile import manifest, text
from l2compile.datasets import Dataset
from l2compile.nodes import ModelPlan

Log = Callable[[str], None]
#: Writes MediaPipe's metadata into a TFLite file's bytes.
Metadata = Callable[[bytes], bytes]

#: How an image classifier's TFLite input is made from RGB pixels in [0, 255]
#: (`(pixel - mean) / std`), as its metadata states it: l2compile feeds images
#: scaled to [0, 1].
METADATA_MEAN, METADATA_STD = 0.0, 255.0


def image_classifier_labels(plan: ModelPlan, dataset: Dataset) -> list[str] | None:
    """The class names an image classifier's TFLite files carry in their
    metadata, or None where the model is not one (MediaPipe's ImageClassifier
    reads one score per class from an RGB image whose pixels were scaled)."""
    shape = plan.input_shape
    if not (plan.task.scores_classes and len(shape) == 3 and shape[-1] == 3):
        return None
    if not _scaled(plan, dataset):
        return None
    return list(dataset.classes or plan.task.names)


def _scaled(plan: ModelPlan, dataset: Dataset) -> bool:
    """Whether the model reads 8-bit pixels scaled to [0, 1]."""
    eight_bit = dataset.x_train.dtype == np.uint8 and not plan.integer_input
    return eight_bit or plan.recipe.streamed


def mediapipe_metadata(plan: ModelPlan, dataset: Dataset) -> Metadata | None:
    """What writes MediaPipe's metadata into the model's TFLite files: an
    image classifier's (its labels and its input's normalization) or a text
    classifier's (its labels and its tokenizer); None where the model is
    neither."""
    from l2compile import metadata

    name = plan.name
    description = plan.description or f"{plan.name}, by l2compile"
    settings = plan.recipe.text
    if plan.recipe.vocabulary_size and plan.task.scores_classes:
        return functools.partial(
            metadata.text_classifier_metadata,
            labels=list(dataset.classes or plan.task.names),
            vocabulary=text.vocabulary_text(dataset.vocabulary),
            regex=(settings or text.TextSettings()).regex,
            name=name,
            description=description,
        )
    labels = image_classifier_labels(plan, dataset)
    if labels is None:
        return None
    return functools.partial(
        metadata.image_classifier_metadata,
        labels=labels,
        mean=[METADATA_MEAN],
        std=[METADATA_STD],
        name=name,
        description=description,
    )


def attach_metadata(file: Path, write: Metadata, log: Log) -> None:
    """Write MediaPipe's metadata into a TFLite file. A file MediaPipe cannot
    read (int8 input or output) is left as it is, and so is every file where
    the optional mediapipe package is missing; model.json says which."""
    from l2compile import metadata

    try:
        file.write_bytes(write(file.read_bytes()))
    except metadata.MetadataUnavailable as error:
        log(f"{file.name}: no TFLite metadata: {error}")
    except ValueError as error:
        log(f"{file.name}: no TFLite metadata, MediaPipe could not read it: {error}")


def _metadata_json(file: Path, text_model: bool) -> dict[str, Any] | None:
    """What model.json says of a TFLite file's metadata (None: it has none)."""
    from l2compile import metadata

    try:
        labels = metadata.read_labels(file.read_bytes())
    except metadata.MetadataUnavailable:
        return None
    if labels is None:
        return None
    found = {
        "writer": "l2compile.metadata (MediaPipe's metadata schema)",
        "labels_file": metadata.LABELS_FILE,
    }
    if text_model:
        return found | {
            "vocabulary_file": text.VOCABULARY_FILE,
            "tokenizer": "RegexTokenizerOptions: the delimiter regex and the "
            "vocabulary, which MediaPipe's TextClassifier tokenizes by",
        }
    return found | {
        "normalization": {"mean": [METADATA_MEAN], "std": [METADATA_STD]},
        "formula": "input = (pixel - mean) / std, for RGB pixels in [0, 255]",
    }


#: Names of the TFLite signature and its input, which apps look up (model.json
#: says them); the output is named by the task (`Task.output_name`).
SIGNATURE = "serving_default"
INPUT_NAME = "input"


def write_deploy_files(
    work: Path,
    plan: ModelPlan,
    batch: int | None,
    dataset: Dataset,
    scores: dict[str, Any],
) -> None:
    """model.json and the task's files (labels.txt): what an app needs to
    feed and read the model."""
    from ai_edge_litert.interpreter import Interpreter

    recipe, task = plan.recipe, plan.task
    if dataset.classes:  # an image folder's classes, a csv's text labels
        task = dataclasses.replace(task, names=dataset.classes)
    for name, content in task.output_files(recipe).items():
        (work / name).write_text(content)
    files = {}
    for mode, score in scores["files"].items():
        interpreter = Interpreter(model_path=str(work / score["file"]))
        (inp,) = interpreter.get_input_details()
        (out,) = interpreter.get_output_details()
        files[mode] = {
            "file": score["file"],
            "input": _tensor(inp),
            "output": _tensor(out),
            "metadata": _metadata_json(
                work / score["file"], plan.recipe.vocabulary_size
            ),
        }
        if "int8_fallback" in score:  # the layers an int8 file computes in float
            files[mode]["float_operations"] = [
                kept["layer"] for kept in score["int8_fallback"]["kept_in_float"]
            ]
    model_json = _model_json(plan, batch, dataset, task)
    model_json["files"] = files
    previous = work / "model.json"  # another format's entries stay
    if previous.is_file():
        kept = json.loads(previous.read_text(encoding="utf-8"))
        model_json.update({k: v for k, v in kept.items() if k not in model_json})
    manifest.write_json(work / "model.json", model_json)


def add_to_model_json(
    work: Path, plan: ModelPlan, dataset: Dataset, key: str, entry: dict[str, Any]
) -> None:
    """Add one format's entry to model.json under `key`, writing what the
    model reads and returns first where no format has."""
    path = work / "model.json"
    if path.is_file():
        model_json = json.loads(path.read_text(encoding="utf-8"))
    else:
        task = plan.task
        if dataset.classes:
            task = dataclasses.replace(task, names=dataset.classes)
        model_json = _model_json(plan, None, dataset, task)
    model_json[key] = entry
    manifest.write_json(path, model_json)


def _model_json(
    plan: ModelPlan, batch: int | None, dataset: Dataset, task: Any
) -> dict[str, Any]:
    """What model.json says of the model's input and output."""
    recipe = plan.recipe
    scaled = _scaled(plan, dataset)
    batch = batch if batch is not None else -1
    return {
        "name": plan.name,
        "signature": SIGNATURE,
        "input": {
            "name": INPUT_NAME,
            "shape": [batch, *fed_shape(plan, dataset)],
            "dtype": recipe.input_dtype,
            "source": recipe.sample_text(str(dataset.x_train.dtype), plan.input_shape),
            "pixels": recipe.pixels,
            **recipe.input_json(plan.input_shape, dataset.columns),
            **_normalization(plan),
            **_backbone(plan),
            "preprocessing": {
                "formula": "input = (value * scale - mean) / std, reshaped to shape",
                "scale": 1 / 255 if scaled else 1.0,
                "mean": 0.0,
                "std": 1.0,
            },
        },
        "output": {
            "name": task.output_name,
            "shape": [batch, *task.output_shape],
            **task.output_json(),
        },
    }


def fed_shape(plan: ModelPlan, dataset: Dataset) -> tuple[int, ...]:
    """The shape of one sample as an app feeds the model: a csv's is one value
    per feature column (the model encodes them into input.shape)."""
    if plan.recipe.encodes:
        return (len(dataset.columns),)
    return plan.input_shape


def _normalization(plan: ModelPlan) -> dict[str, Any]:
    """Where the model normalizes its own input: say so, so that an app feeds
    raw features."""
    if not plan.adapted:
        return {}
    return {
        "normalized_in_model": True,
        "normalization": "the model standardizes its input itself, with the mean "
        "and variance of the training split (layers "
        + ", ".join(plan.adapted)
        + "): feed raw features, after the scaling below",
    }


def _backbone(plan: ModelPlan) -> dict[str, Any]:
    """A pretrained backbone's own preprocessing, inside the model: an app
    feeds the input as `preprocessing` says, and nothing more."""
    backbone = plan.backbone
    if backbone is None:
        return {}
    return {
        "backbone": {
            "model": backbone.model,
            "keras_class": f"keras.applications.{backbone.keras_class}",
            "reads": backbone.reads,
            "in_model": f"{backbone.rescaling} takes the input's [0, 1] to "
            f"{backbone.reads}",
            "own_preprocessing": backbone.own_preprocessing,
        }
    }


def _tensor(details: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = details["quantization"]
    tensor: dict[str, Any] = {
        "dtype": np.dtype(details["dtype"]).name,
        "shape": [int(d) for d in details["shape_signature"]],
    }
    if scale:
        tensor["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
    return tensor
