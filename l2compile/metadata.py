"""TFLite metadata for image and text classifiers, in the form MediaPipe
Tasks reads.

MediaPipe's `ImageClassifier` loads a `.tflite` file only if the file carries
TFLite metadata (a `TFLITE_METADATA` flatbuffer inside the model) describing
the input as an image, with normalization options when the input is float32;
it names the categories from a labels file packed into the model file's zip
part. `image_classifier_metadata` writes both the way MediaPipe's own
`metadata_writers.image_classifier` does, and `read_labels` reads the labels
back. Its `TextClassifier` loads a model of one int32 input of token ids whose
metadata carries a regex tokenizer (the delimiter regex and a vocabulary file
packed beside the labels): `text_classifier_metadata` writes that, as
`metadata_writers.text_classifier.create_for_regex_model` does.

MediaPipe's Python writer can't be used: in every mediapipe release that
installs beside TensorFlow 2.21 (0.10.30 on; 0.10.21 and older need
protobuf<5), its `metadata.py` imports the compiled
`mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`, which those
wheels don't ship. So this module builds the same flatbuffers itself from the
generated schema modules that the wheel does ship
(`mediapipe.tasks.metadata.metadata_schema_py_generated` and
`schema_py_generated`) and ports the rest: the minimum parser version (a C++
function upstream) and the populator's packing of the labels file.

mediapipe is an optional dependency (`pip install "l2compile[mediapipe]"`);
it is imported inside the functions, so importing this module never needs it.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "LABELS_FILE",
    "MetadataUnavailable",
    "image_classifier_metadata",
    "read_labels",
    "text_classifier_metadata",
]

#: The name of the packed labels file, as MediaPipe's writer names it.
LABELS_FILE = "labels.txt"

# What MediaPipe's writer and populator write (metadata_writer.py,
# metadata_info.py, metadata.py in mediapipe/tasks/python/metadata).
_METADATA_FIELD = "TFLITE_METADATA"
_TFLITE_IDENTIFIER = b"TFL3"
_METADATA_IDENTIFIER = b"M001"
_INPUT_NAME = "image"
_INPUT_DESCRIPTION = "Input image to be processed."
_OUTPUT_NAME = "score"
_OUTPUT_DESCRIPTION = "Score of the labels respectively."
_LABELS_DESCRIPTION = "Labels for categories that the model can recognize."
_TEXT_NAME = "input_text"
_TEXT_DESCRIPTION = "Embedding vectors representing the input text to be processed."
_VOCABULARY_DESCRIPTION = (
    "Vocabulary file to convert natural language words to embedding vectors."
)
_MIN_PIXEL, _MAX_PIXEL = 0.0, 255.0
# The populator stamps the packed file with the current time; a fixed stamp
# (the zip format's epoch) keeps the model file reproducible.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)


class MetadataUnavailable(Exception):
    """The optional mediapipe package, whose metadata schema this uses, is
    not installed."""


def _schemas() -> tuple[Any, Any, Any]:
    """flatbuffers, and MediaPipe's generated metadata and TFLite schemas."""
    try:
        import flatbuffers
        from mediapipe.tasks.metadata import metadata_schema_py_generated as md
        from mediapipe.tasks.metadata import schema_py_generated as tfl
    except ImportError as error:
        raise MetadataUnavailable(
            f"TFLite metadata needs the mediapipe package ({error}): "
            'pip install "l2compile[mediapipe]"'
        ) from error
    return flatbuffers, md, tfl


def image_classifier_metadata(
    model: bytes,
    *,
    labels: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    name: str,
    description: str,
) -> bytes:
    """`model` (a TFLite flatbuffer, as the converter writes it) with
    MediaPipe image-classifier metadata and its labels file attached.

    `mean` and `std` say how the model's input is made from RGB pixels in
    [0, 255]: `(pixel - mean) / std`, per channel (or one value for all).
    MediaPipe applies them to a float32 input; a uint8 input is fed the
    pixels as they are. `labels` name the output's classes, in order.

    Raises ValueError where MediaPipe could not use the result: a model that
    is not one image in and one score tensor out, an input or output that is
    neither float32 nor uint8 (MediaPipe refuses int8 ones), labels that don't
    match the output, or a model that already has files packed.
    """
    flatbuffers, md, tfl = _schemas()
    graph = _graph(tfl, model)
    image = graph.Tensors(graph.Inputs(0))
    scores = graph.Tensors(graph.Outputs(0))
    if image.Type() not in (tfl.TensorType.FLOAT32, tfl.TensorType.UINT8):
        raise ValueError(
            "MediaPipe's image classifier takes a float32 or uint8 input; this "
            f"model's is {_type_name(tfl, image.Type())}"
        )
    _check_scores(tfl, scores, "image")
    classes = scores.Shape(scores.ShapeLength() - 1) if scores.ShapeLength() else 0
    _check_labels(labels, classes)
    if not mean or len(mean) != len(std):
        raise ValueError(f"mean {list(mean)} and std {list(std)} differ in length")
    if not all(std):
        raise ValueError(f"std {list(std)} has a zero")

    subgraph = md.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [_image_input(md, tfl, image.Type(), mean, std)]
    subgraph.outputTensorMetadata = [_score_output(md, tfl, scores.Type())]
    flat = _with_metadata_buffer(
        flatbuffers, tfl, model, _metadata(flatbuffers, md, subgraph, name, description)
    )
    return _packed(flat, {LABELS_FILE: "\n".join(labels).encode()})


def text_classifier_metadata(
    model: bytes,
    *,
    labels: Sequence[str],
    vocabulary: str,
    regex: str,
    name: str,
    description: str,
) -> bytes:
    """`model` (a TFLite flatbuffer) with MediaPipe text-classifier metadata:
    its input read by a regex tokenizer (`regex`, the delimiter, and
    `vocabulary`, the text of its vocabulary file, `text.VOCABULARY_FILE`),
    and its output's labels file.

    Raises ValueError where MediaPipe could not use the result: a model that
    is not one int32 input and one float32 or uint8 score tensor, labels that
    don't match the output, or a model that already has files packed."""
    from l2compile.text import VOCABULARY_FILE

    flatbuffers, md, tfl = _schemas()
    graph = _graph(tfl, model)
    ids = graph.Tensors(graph.Inputs(0))
    scores = graph.Tensors(graph.Outputs(0))
    if ids.Type() != tfl.TensorType.INT32:
        raise ValueError(
            "MediaPipe's text classifier takes int32 token ids; this model's "
            f"input is {_type_name(tfl, ids.Type())}"
        )
    _check_scores(tfl, scores, "text")
    classes = scores.Shape(scores.ShapeLength() - 1) if scores.ShapeLength() else 0
    _check_labels(labels, classes)
    tokenizer = md.ProcessUnitT()
    tokenizer.optionsType = md.ProcessUnitOptions.RegexTokenizerOptions
    tokenizer.options = md.RegexTokenizerOptionsT()
    tokenizer.options.delimRegexPattern = regex
    vocab = md.AssociatedFileT()
    vocab.name = VOCABULARY_FILE
    vocab.description = _VOCABULARY_DESCRIPTION
    vocab.type = md.AssociatedFileType.VOCABULARY
    tokenizer.options.vocabFile = [vocab]
    text = md.TensorMetadataT()
    text.name = _TEXT_NAME
    text.description = _TEXT_DESCRIPTION
    text.stats = md.StatsT()
    text.content = md.ContentT()
    text.content.contentPropertiesType = md.ContentProperties.FeatureProperties
    text.content.contentProperties = md.FeaturePropertiesT()
    text.processUnits = [tokenizer]
    subgraph = md.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [text]
    subgraph.outputTensorMetadata = [_score_output(md, tfl, scores.Type())]
    flat = _with_metadata_buffer(
        flatbuffers, tfl, model, _metadata(flatbuffers, md, subgraph, name, description)
    )
    return _packed(
        flat,
        {VOCABULARY_FILE: vocabulary.encode(), LABELS_FILE: "\n".join(labels).encode()},
    )


def _graph(tfl: Any, model: bytes) -> Any:
    """The one subgraph of `model`, which must be a TFLite file of one input
    and one output, with nothing packed yet."""
    if not tfl.Model.ModelBufferHasIdentifier(model, 0):
        raise ValueError("not a TFLite model (no TFL3 file identifier)")
    if zipfile.is_zipfile(io.BytesIO(model)):
        raise ValueError("the model already has associated files packed")
    graph = tfl.Model.GetRootAs(model, 0).Subgraphs(0)
    if graph.InputsLength() != 1 or graph.OutputsLength() != 1:
        raise ValueError(
            "a classifier has one input and one output; this model has "
            f"{graph.InputsLength()} and {graph.OutputsLength()}"
        )
    return graph


def _type_name(tfl: Any, tensor_type: int) -> str:
    types = {v: k for k, v in vars(tfl.TensorType).items() if not k.startswith("_")}
    return str(types.get(tensor_type, tensor_type))


def _check_scores(tfl: Any, scores: Any, kind: str) -> None:
    if scores.Type() not in (tfl.TensorType.FLOAT32, tfl.TensorType.UINT8):
        raise ValueError(
            f"MediaPipe's {kind} classifier takes a float32 or uint8 output; this "
            f"model's is {_type_name(tfl, scores.Type())}"
        )


def _metadata(
    flatbuffers: Any, md: Any, subgraph: Any, name: str, description: str
) -> bytes:
    """The metadata flatbuffer of a model of one subgraph."""
    metadata = md.ModelMetadataT()
    metadata.name = name
    metadata.description = description
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = _min_parser_version(md, metadata)
    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), _METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _packed(flat: bytes, files: dict[str, bytes]) -> bytes:
    """The populator's packing: the associated files appended to the
    flatbuffer as a zip archive, stored uncompressed (MediaPipe reads them in
    place), with a fixed time stamp."""
    stream = io.BytesIO(flat)
    with zipfile.ZipFile(stream, "a", zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
            info.external_attr = 0o600 << 16
            archive.writestr(info, data)
    return stream.getvalue()


def read_labels(model: bytes) -> list[str] | None:
    """The labels packed for the output tensor's classes of `model` (a TFLite
    file), or None where it has no metadata or no labels file."""
    _, md, tfl = _schemas()
    buffer = _metadata_buffer(tfl, model)
    if buffer is None:
        return None
    metadata = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(buffer, 0))
    for subgraph in metadata.subgraphMetadata or []:
        for tensor in subgraph.outputTensorMetadata or []:
            for file in tensor.associatedFiles or []:
                if file.type == md.AssociatedFileType.TENSOR_AXIS_LABELS:
                    with zipfile.ZipFile(io.BytesIO(model)) as archive:
                        text = archive.read(file.name.decode()).decode()
                    # Split the way MediaPipe's BuildLabelMapFromFiles does.
                    lines = [line.removesuffix("\r") for line in text.split("\n")]
                    return lines[:-1] if lines and not lines[-1] else lines
    return None


def _check_labels(labels: Sequence[str], classes: int) -> None:
    """Labels that MediaPipe reads back one per line, one per class."""
    if not labels:
        raise ValueError("no labels")
    bad = [label for label in labels if not label or {"\n", "\r"} & set(label)]
    if bad:
        raise ValueError(f"labels must be non-empty single lines: {bad}")
    if classes > 0 and len(labels) != classes:
        raise ValueError(
            f"{len(labels)} labels for an output of {classes} classes: {labels}"
        )


def _image_input(
    md: Any, tfl: Any, tensor_type: int, mean: Sequence[float], std: Sequence[float]
) -> Any:
    """The input tensor's metadata, as `InputImageTensorMd` writes it: an RGB
    image, its normalization, and the value range it makes (as Stats)."""
    tensor = md.TensorMetadataT()
    tensor.name = _INPUT_NAME
    tensor.description = _INPUT_DESCRIPTION
    tensor.stats = md.StatsT()
    if tensor_type == tfl.TensorType.UINT8:
        tensor.stats.min, tensor.stats.max = [0], [255]
    else:
        pairs = list(zip(mean, std, strict=True))
        tensor.stats.min = [(_MIN_PIXEL - m) / s for m, s in pairs]
        tensor.stats.max = [(_MAX_PIXEL - m) / s for m, s in pairs]
    tensor.content = md.ContentT()
    tensor.content.contentPropertiesType = md.ContentProperties.ImageProperties
    tensor.content.contentProperties = md.ImagePropertiesT()
    tensor.content.contentProperties.colorSpace = md.ColorSpaceType.RGB
    normalization = md.ProcessUnitT()
    normalization.optionsType = md.ProcessUnitOptions.NormalizationOptions
    normalization.options = md.NormalizationOptionsT()
    normalization.options.mean = [float(m) for m in mean]
    normalization.options.std = [float(s) for s in std]
    tensor.processUnits = [normalization]
    return tensor


def _score_output(md: Any, tfl: Any, tensor_type: int) -> Any:
    """The output tensor's metadata, as `ClassificationTensorMd` writes it:
    scores in [0, 1] (or [0, 255] quantized), with the labels file."""
    tensor = md.TensorMetadataT()
    tensor.name = _OUTPUT_NAME
    tensor.description = _OUTPUT_DESCRIPTION
    tensor.stats = md.StatsT()
    if tensor_type == tfl.TensorType.UINT8:
        tensor.stats.min, tensor.stats.max = [0], [255]
    else:
        tensor.stats.min, tensor.stats.max = [0.0], [1.0]
    tensor.content = md.ContentT()
    tensor.content.contentPropertiesType = md.ContentProperties.FeatureProperties
    tensor.content.contentProperties = md.FeaturePropertiesT()
    labels = md.AssociatedFileT()
    labels.name = LABELS_FILE
    labels.description = _LABELS_DESCRIPTION
    labels.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
    tensor.associatedFiles = [labels]
    return tensor


def _min_parser_version(md: Any, metadata: Any) -> str:
    """The oldest metadata parser that reads `metadata` (a ModelMetadataT): a
    port of MediaPipe's C++ `GetMinimumMetadataParserVersion`
    (mediapipe/tasks/cc/metadata/metadata_version.cc), which dates each
    schema member added after 1.0.0. A field counts once it is set, even to an
    empty list, as a field present in the flatbuffer does there."""
    units = md.ProcessUnitOptions
    tokenizers = {
        units.BertTokenizerOptions: (1, 1, 0),
        units.SentencePieceTokenizerOptions: (1, 1, 0),
        units.RegexTokenizerOptions: (1, 2, 1),
    }
    found = [(1, 0, 0)]

    def files(items: Iterable[Any] | None) -> None:
        for file in items or []:
            if file.type == md.AssociatedFileType.VOCABULARY:
                found.append((1, 0, 1))
            if file.type == md.AssociatedFileType.SCANN_INDEX_FILE:
                found.append((1, 4, 0))
            if file.version is not None:
                found.append((1, 4, 1))

    def process_units(items: Iterable[Any] | None) -> None:
        for unit in items or []:
            found.append(tokenizers.get(unit.optionsType, (1, 0, 0)))

    for subgraph in metadata.subgraphMetadata or []:
        for tensor in [
            *(subgraph.inputTensorMetadata or []),
            *(subgraph.outputTensorMetadata or []),
        ]:
            files(tensor.associatedFiles)
            process_units(tensor.processUnits)
            audio = md.ContentProperties.AudioProperties
            if tensor.content and tensor.content.contentPropertiesType == audio:
                found.append((1, 3, 0))
        files(subgraph.associatedFiles)
        for unit_list in (subgraph.inputProcessUnits, subgraph.outputProcessUnits):
            if unit_list is not None:
                found.append((1, 1, 0))
                process_units(unit_list)
        for group_list in (subgraph.inputTensorGroups, subgraph.outputTensorGroups):
            if group_list is not None:
                found.append((1, 2, 0))
        if subgraph.customMetadata is not None:
            found.append((1, 5, 0))
    files(metadata.associatedFiles)
    return ".".join(str(number) for number in max(found))


def _with_metadata_buffer(
    flatbuffers: Any, tfl: Any, model: bytes, metadata: bytes
) -> bytes:
    """`model` with `metadata` as its TFLITE_METADATA buffer, replacing any
    there was: the populator's `_populate_metadata_buffer`, which unpacks the
    whole model and packs it again."""
    tflite = tfl.ModelT.InitFromObj(tfl.Model.GetRootAs(model, 0))
    buffer = tfl.BufferT()
    buffer.data = metadata
    tflite.buffers = tflite.buffers or []
    tflite.metadata = tflite.metadata or []
    for entry in tflite.metadata:
        if entry.name.decode() == _METADATA_FIELD:
            tflite.buffers[entry.buffer] = buffer
            break
    else:
        tflite.buffers.append(buffer)
        entry = tfl.MetadataT()
        entry.name = _METADATA_FIELD
        entry.buffer = len(tflite.buffers) - 1
        tflite.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(tflite.Pack(builder), _TFLITE_IDENTIFIER)
    return bytes(builder.Output())


def _metadata_buffer(tfl: Any, model: bytes) -> bytes | None:
    """The TFLITE_METADATA buffer of `model`, if it has one."""
    root = tfl.Model.GetRootAs(model, 0)
    for index in range(root.MetadataLength()):
        entry = root.Metadata(index)
        if entry.Name().decode() == _METADATA_FIELD:
            data = root.Buffers(entry.Buffer()).DataAsNumpy()
            return bytes(data.tobytes())
    return None
