"""Every mistake a user can make gets one exact, located message."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from l2compile.generate import compile_spec
from l2compile.spec import LoadedSpec, load_spec

from .conftest import SMALL_SPEC, SPECS, compile_errors

pytestmark = pytest.mark.unit

# The article's spec without its first line (the editor schema comment), so
# that the line numbers below count from its `name:` at line 4.
GOOD = (SPECS / "mnist.yaml").read_text(encoding="utf-8").split("\n", 1)[1]
ALL_TYPES = (
    "dense, embedding, rescaling, activation, conv1d, conv2d, "
    "depthwise_conv2d, separable_conv2d, conv2d_transpose, max_pooling2d, "
    "average_pooling2d, global_average_pooling2d, global_max_pooling2d, "
    "global_average_pooling1d, max_pooling1d, batch_normalization, "
    "layer_normalization, normalization, lstm, gru, simple_rnn, dropout, "
    "spatial_dropout2d, gaussian_noise, random_flip, random_rotation, "
    "random_zoom, random_translation, random_contrast, random_brightness, "
    "flatten, reshape, zero_padding2d, "
    "up_sampling2d, add, subtract, multiply, average, maximum, concatenate, backbone"
)


def errors(text: str, tmp_path: Path) -> list[str]:
    """The messages a user sees for this spec text (file shown as spec.yaml)."""
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_spec(path, "spec.yaml")
    assert isinstance(loaded, list), "expected the spec to be rejected"
    return [str(e) for e in loaded]


def test_the_article_spec_is_valid() -> None:
    assert isinstance(load_spec(SPECS / "mnist.yaml"), LoadedSpec)


def test_misspelled_activation_names_line_field_and_closest_value(
    tmp_path: Path,
) -> None:
    text = GOOD.replace("units: 64, activation: relu", "units: 64, activation: rellu")
    assert errors(text, tmp_path) == [
        "spec.yaml:10:42: error: layers[1].activation: unknown value 'rellu'; "
        "did you mean 'relu'?"
    ]


def test_misspelled_layer_type_suggests_the_closest_type(tmp_path: Path) -> None:
    text = GOOD.replace("{type: dense, units: 64", "{type: dense_layer, units: 64")
    assert errors(text, tmp_path) == [
        "spec.yaml:10:12: error: layers[1].type: unknown layer type 'dense_layer'; "
        "did you mean 'dense'?"
    ]


def test_unknown_layer_type_without_a_close_match_lists_the_valid_ones(
    tmp_path: Path,
) -> None:
    text = GOOD.replace("{type: dense, units: 64", "{type: transformer, units: 64")
    assert errors(text, tmp_path) == [
        "spec.yaml:10:12: error: layers[1].type: unknown layer type 'transformer' "
        f"(expected one of: {ALL_TYPES})"
    ]


def test_unknown_field_points_at_the_key_and_suggests_the_field(tmp_path: Path) -> None:
    text = GOOD.replace("batch_size: 32", "batchsize: 32")
    assert errors(text, tmp_path) == [
        "spec.yaml:13:3: error: train.batch_size: required field is missing",
        "spec.yaml:18:3: error: train.batchsize: unknown field 'batchsize'; "
        "did you mean 'batch_size'?",
    ]


def test_layer_without_type_is_reported(tmp_path: Path) -> None:
    text = GOOD.replace("{type: dense, units: 64", "{units: 64")
    assert errors(text, tmp_path) == [
        "spec.yaml:10:5: error: layers[1]: a layer needs a 'type' "
        f"(expected one of: {ALL_TYPES})"
    ]


def test_wrong_types_and_ranges_show_the_value(tmp_path: Path) -> None:
    text = (
        GOOD.replace("units: 128", "units: many")
        .replace("l2: 0.01", "l2: -0.5")
        .replace("epochs: 10", "epochs: 0")
    )
    assert errors(text, tmp_path) == [
        "spec.yaml:7:5: error: l2: must be greater than or equal to 0, got -0.5",
        "spec.yaml:9:26: error: layers[0].units: must be a valid integer, got 'many'",
        "spec.yaml:17:11: error: train.epochs: must be greater than 0, got 0",
    ]


def test_nan_is_not_a_coefficient(tmp_path: Path) -> None:
    assert errors(GOOD.replace("l2: 0.01", "l2: .nan"), tmp_path) == [
        "spec.yaml:7:5: error: l2: must be a finite number, got nan"
    ]


def test_duplicate_key_is_an_error_not_an_overwrite(tmp_path: Path) -> None:
    text = GOOD.replace("l2: 0.01", "l2: 0.01\nl2: 0.0")
    assert errors(text, tmp_path) == [
        "spec.yaml:8:1: error: l2: duplicate key 'l2' (first written at line 7); "
        "each field may appear once"
    ]


def test_duplicate_key_inside_a_flow_mapping(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{type: dense, units: 64,", "{type: dense, units: 64, units: 65,"
    )
    assert errors(text, tmp_path) == [
        "spec.yaml:10:30: error: layers[1].units: duplicate key 'units' "
        "(first written at line 10); each field may appear once"
    ]


def test_all_errors_of_a_file_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        GOOD.replace("name: mnist_mlp", "name: mnist_mlp\nname: again")
        .replace("activation: relu}", "activaton: relu}", 1)
        .replace("recipe: mnist", "recipe: minst")
        .replace("tflite]", "coreml]")
    )
    assert errors(text, tmp_path) == [
        "spec.yaml:5:1: error: name: duplicate key 'name' (first written at line 4); "
        "each field may appear once",
        "spec.yaml:10:31: error: layers[0].activaton: unknown field 'activaton'; "
        "did you mean 'activation'?",
        "spec.yaml:14:11: error: train.recipe: unknown value 'minst'; "
        "did you mean 'mnist'?",
        "spec.yaml:21:40: error: export.formats[2]: unknown value 'coreml' "
        "(expected one of: keras, saved_model, tflite, onnx)",
    ]


def test_repeated_export_format(tmp_path: Path) -> None:
    assert errors(GOOD.replace("tflite]", "keras]"), tmp_path) == [
        "spec.yaml:20:19: error: export.formats: 'keras' is listed more than once"
    ]


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    text = GOOD.replace(
        "{type: dense, units: 64, activation: relu}", "{type: dense, units: 64"
    )
    assert errors(text, tmp_path) == [
        "spec.yaml:11:5: error: invalid YAML: expected ',' or '}', but got '{' "
        "(while parsing a flow mapping at line 10, column 5)"
    ]


def test_tab_indentation_is_located(tmp_path: Path) -> None:
    text = GOOD.replace("  epochs: 10", "\tepochs: 10")
    (message,) = errors(text, tmp_path)
    assert message.startswith(
        "spec.yaml:17:1: error: invalid YAML: found character '\\t'"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "spec.yaml:1:1: error: the spec is empty"),
        ("# only a comment\n", "spec.yaml:1:1: error: the spec is empty"),
        (
            "- a\n- b\n",
            "spec.yaml:1:1: error: a spec must be a mapping of fields "
            "(name:, input:, layers:, ...)",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "spec.yaml:2:1: error: invalid YAML: expected a single document in the "
            "stream, but found another document",
        ),
    ],
)
def test_documents_that_are_not_one_mapping(
    tmp_path: Path, text: str, message: str
) -> None:
    assert errors(text, tmp_path) == [message]


def test_python_tags_are_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = GOOD.replace(
        "description: 784",
        f"description: !!python/object/apply:os.system ['touch {marker}']\nx: 784",
    )
    assert errors(text, tmp_path)[0] == (
        "spec.yaml:5:14: error: description: unsupported YAML tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'; specs are plain data"
    )
    assert not marker.exists()


def test_merge_keys_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("train:\n", "base: &b {epochs: 3}\ntrain:\n  <<: *b\n")
    assert errors(text, tmp_path)[:2] == [
        "spec.yaml:12:1: error: base: unknown field 'base'",
        "spec.yaml:14:3: error: train: YAML merge keys ('<<') are not supported; "
        "write the fields out",
    ]


def test_alias_bomb_fails_fast_with_bounded_memory(tmp_path: Path) -> None:
    # "Billion laughs": 9 levels of 9 aliases each expand to 9**9 values.
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, 10):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    text = "\n".join(lines) + "\n"
    tracemalloc.start()
    try:
        found = errors(text, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == [
        "spec.yaml:5:1: error: a4: the spec expands to more than 10,000 values; YAML "
        "anchors and aliases are nested too deeply (an alias bomb?)"
    ]
    assert peak < 50 * 2**20


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    text = "name: " + "[" * 40 + "]" * 40 + "\n"
    assert errors(text, tmp_path) == [
        "spec.yaml:1:39: error: name: values are nested more than 32 deep"
    ]


def test_name_that_would_inject_code_is_rejected(tmp_path: Path) -> None:
    text = GOOD.replace(
        "name: mnist_mlp", "name: \"x'); __import__('os').system('id') #\""
    )
    assert errors(text, tmp_path) == [
        "spec.yaml:4:7: error: name: must be lowercase letters, digits and "
        "underscores, starting with a letter (it becomes a Python name)"
    ]


def test_name_that_would_shadow_an_import_is_rejected(tmp_path: Path) -> None:
    assert errors(GOOD.replace("name: mnist_mlp", "name: keras"), tmp_path) == [
        "spec.yaml:4:7: error: name: 'keras' would shadow the Python module of the "
        "same name in the generated code; choose another name"
    ]


def test_python_keyword_name_is_rejected(tmp_path: Path) -> None:
    assert errors(GOOD.replace("name: mnist_mlp", "name: lambda"), tmp_path) == [
        "spec.yaml:4:7: error: name: 'lambda' is a Python keyword"
    ]


def test_missing_file(tmp_path: Path) -> None:
    assert [str(e) for e in load_spec(tmp_path / "nope.yaml", "nope.yaml")] == [  # type: ignore[union-attr]
        "nope.yaml: error: no such file"
    ]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(b"name: a\ndescription: caf\xe9\n")
    assert [str(e) for e in load_spec(path, "spec.yaml")] == [  # type: ignore[union-attr]
        "spec.yaml:2: error: the file is not valid UTF-8"
    ]


# --- checks across fields, found while planning ------------------------------


def test_output_units_must_match_the_recipe_classes(tmp_path: Path) -> None:
    text = GOOD.replace(
        "units: 10, activation: softmax", "units: 5, activation: softmax"
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:11:5: error: layers[2]: the model's output shape is (5,), but "
        "recipe 'mnist' has 10 classes: the last layer must output (10,)"
    ]


def test_input_shape_must_hold_the_recipe_images(tmp_path: Path) -> None:
    text = GOOD.replace("shape: [784]", "shape: [28, 27]")
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:6:16: error: input.shape: recipe 'mnist' gives 28x28 images "
        "(784 values each), but this shape holds 756",
        # Dense layers act on the last axis, so the output is (28, 10) too.
        "spec.yaml:11:5: error: layers[2]: the model's output shape is (28, 10), but "
        "recipe 'mnist' has 10 classes: the last layer must output (10,)",
    ]


def test_reshape_that_does_not_multiply_out_is_located(tmp_path: Path) -> None:
    text = GOOD.replace(
        "layers:\n", "layers:\n  - {type: reshape, target_shape: [28, 29]}\n"
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:9:35: error: layers[0].target_shape: cannot reshape (784,) "
        "(784 values) to [28, 29] (812 values)"
    ]


def test_last_dense_layer_must_be_softmax(tmp_path: Path) -> None:
    text = GOOD.replace("activation: softmax", "activation: relu")
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:11:42: error: layers[2].activation: the last dense layer must use "
        "activation 'softmax': loss 'sparse_categorical_crossentropy' expects class "
        "probabilities"
    ]


def test_duplicate_layer_names(tmp_path: Path) -> None:
    text = GOOD.replace("units: 128,", "units: 128, name: hidden,").replace(
        "units: 64,", "units: 64, name: hidden,"
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:10:36: error: layers[1].name: layer name 'hidden' is already "
        "used by layers[0]"
    ]


def test_conv2d_on_a_flat_input_says_what_it_needs(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  - {type: dense, units: 128,",
        "  - {type: conv2d, filters: 8, kernel_size: 3}\n  - {type: dense, units: 128,",
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:9:12: error: layers[0].type: conv2d needs input of shape "
        "(height, width, channels), but its input is (784,); add a reshape layer "
        "before it, e.g. target_shape: [28, 28, 1]"
    ]


def test_lstm_on_a_flat_input_says_what_it_needs(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  - {type: dense, units: 128,",
        "  - {type: lstm, units: 32}\n  - {type: dense, units: 128,",
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:9:12: error: layers[0].type: lstm needs input of shape "
        "(timesteps, features), but its input is (784,); add a reshape layer "
        "before it, e.g. target_shape: [28, 28]"
    ]


def test_kernel_larger_than_its_input(tmp_path: Path) -> None:
    text = GOOD.replace("shape: [784]", "shape: [28, 28, 1]").replace(
        "  - {type: dense, units: 128,",
        "  - {type: conv2d, filters: 8, kernel_size: 5, strides: 4}\n"
        "  - {type: conv2d, filters: 8, kernel_size: [9, 3]}\n"
        "  - {type: flatten}\n"
        "  - {type: dense, units: 128,",
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:10:45: error: layers[1].kernel_size: (9, 3) is larger than the "
        "input (6, 6) with padding 'valid'"
    ]


def test_embedding_needs_a_sequence_of_ids(tmp_path: Path) -> None:
    text = GOOD.replace("shape: [784]", "shape: [28, 28]").replace(
        "  - {type: dense, units: 128,",
        "  - {type: embedding, input_dim: 256, output_dim: 4}\n"
        "  - {type: dense, units: 128,",
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:9:12: error: layers[0].type: embedding needs input of shape "
        "(sequence_length,), but its input is (28, 28)"
    ]


def test_pool_with_a_padding_typo(tmp_path: Path) -> None:
    text = GOOD.replace(
        "  - {type: dense, units: 128,",
        "  - {type: max_pooling2d, padding: smae}\n  - {type: dense, units: 128,",
    )
    assert errors(text, tmp_path) == [
        "spec.yaml:9:36: error: layers[0].padding: unknown value 'smae'; "
        "did you mean 'same'?"
    ]


def test_weight_decay_and_l2_on_the_same_weights_need_consent(tmp_path: Path) -> None:
    text = GOOD.replace(
        "learning_rate: 0.001}", "learning_rate: 0.001, weight_decay: 0.004}"
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:14:63: error: train.optimizer.weight_decay: weight decay and an "
        "L2 penalty would both reach dense_1/kernel, dense_2/kernel, dense_3/kernel; "
        "use one (set l2: 0), or set weight_decay_with_l2: true to use both"
    ]
    both = text.replace(
        "weight_decay: 0.004}", "weight_decay: 0.004, weight_decay_with_l2: true}"
    )
    path = tmp_path / "both.yaml"
    path.write_text(both, encoding="utf-8")
    assert not isinstance(compile_spec(path), list)


def test_npz_recipe_needs_its_classes_for_classification(tmp_path: Path) -> None:
    text = GOOD.replace("recipe: mnist", "recipe: npz\n  data: x.npz")
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:13:3: error: train: the npz recipe needs num_classes for task "
        "'classification'"
    ]


def test_unknown_quantization_mode_suggests_the_closest(tmp_path: Path) -> None:
    text = GOOD.replace(
        "export: {formats: [keras, saved_model, tflite]}",
        "export:\n  tflite: {quantize: [none, int4, float61]}",
    )
    assert errors(text, tmp_path) == [
        "spec.yaml:21:29: error: export.tflite.quantize[1]: unknown value 'int4'; "
        "did you mean 'int8'?",
        "spec.yaml:21:35: error: export.tflite.quantize[2]: unknown value 'float61'; "
        "did you mean 'float16'?",
    ]


def test_int8_needs_representative_samples(tmp_path: Path) -> None:
    text = GOOD.replace(
        "export: {formats: [keras, saved_model, tflite]}",
        "export:\n  tflite: {quantize: [int8], representative_samples: 0}",
    )
    assert errors(text, tmp_path) == [
        "spec.yaml:21:54: error: export.tflite.representative_samples: int8 "
        "quantization calibrates on representative samples; representative_samples "
        "must be at least 1"
    ]


def test_int8_and_dynamic_batch_are_refused_for_recurrent_layers(
    tmp_path: Path,
) -> None:
    text = (
        GOOD.replace("shape: [784]", "shape: [28, 28]")
        .replace(
            "  - {type: dense, units: 128,",
            "  - {type: lstm, units: 32}\n  - {type: dense, units: 128,",
        )
        .replace(
            "export: {formats: [keras, saved_model, tflite]}",
            "export:\n  tflite: {quantize: [none, int8], batch: dynamic}",
        )
    )
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:22:22: error: export.tflite.quantize: int8 cannot quantize "
        "layers[0] (lstm): full-integer conversion of recurrent layers crashes the "
        "TFLite converter; use none, float16 or dynamic",
        "spec.yaml:22:43: error: export.tflite.batch: layers[0] (lstm) converts to "
        "TFLite only with a static batch; use batch: 1",
    ]


def test_a_control_character_is_located(tmp_path: Path) -> None:
    text = GOOD.replace("description: 784", "description: 78\x084")
    assert errors(text, tmp_path) == [
        "spec.yaml:5:16: error: invalid YAML: the character '\\x08' is not allowed "
        "(control characters must be escaped in a quoted string)"
    ]


def test_tflite_options_without_the_tflite_format_are_an_error(
    tmp_path: Path,
) -> None:
    text = SMALL_SPEC + ("export:\n  formats: [keras]\n  tflite: {quantize: [int8]}\n")
    assert compile_errors(text, tmp_path) == [
        "spec.yaml:18:11: error: export.tflite: TFLite options are set, but "
        "export.formats leaves tflite out, so no TFLite file would be made; add "
        "tflite to formats, or remove these options"
    ]


def test_inputs_written_as_one_name_shows_the_list_to_write(tmp_path: Path) -> None:
    text = GOOD.replace(
        "units: 10, activation: softmax", "units: 10, activation: softmax, inputs: d"
    )
    (message,) = errors(text, tmp_path)
    assert message.endswith(
        "layers[2].inputs: must be a list, got 'd' (a list of one: [d])"
    )


def test_gaussian_noise_above_what_keras_takes_is_a_spec_error(tmp_path: Path) -> None:
    text = GOOD.replace(
        "layers:\n", "layers:\n  - {type: gaussian_noise, stddev: 1.5}\n"
    )
    (message,) = errors(text, tmp_path)
    assert message.endswith(
        "layers[0].stddev: must be less than or equal to 1, got 1.5"
    ), message


def test_a_rank_error_in_a_graph_names_where_the_input_comes_from(
    tmp_path: Path,
) -> None:
    text = GOOD.replace(
        "units: 64, activation: relu",
        "units: 64, activation: relu, inputs: [input]}\n"
        "  - {type: conv1d, filters: 2, kernel_size: 1, inputs: [dense_1]",
    )
    messages = compile_errors(text, tmp_path)
    assert any(
        "layers[2].type: conv1d needs input of shape (timesteps, features), but "
        "dense_1 is (128,)" in m
        for m in messages
    ), messages


def test_weight_decay_and_l2_name_a_recurrent_weight_by_its_path(
    tmp_path: Path,
) -> None:
    text = (
        GOOD.replace("shape: [784]", "shape: [28, 28]")
        .replace(
            "  - {type: dense, units: 128,",
            "  - {type: lstm, units: 8}\n  - {type: dense, units: 128,",
        )
        .replace("learning_rate: 0.001}", "learning_rate: 0.001, weight_decay: 0.004}")
    )
    (message,) = compile_errors(text, tmp_path)
    assert "would both reach lstm_1/lstm_cell/kernel, " in message, message


def test_only_the_first_unknown_inputs_get_a_closest_name(tmp_path: Path) -> None:
    """Each search compares a name with every earlier layer's: a spec of
    thousands of wrong names must not take minutes to answer."""
    wrong = ", ".join(f"stme{i}" for i in range(7))
    text = (
        "name: m\ninput: {shape: [4]}\nlayers:\n"
        "  - {type: dense, units: 3, name: stem0}\n"
        f"  - {{type: add, inputs: [{wrong}]}}\n"
        "  - {type: dense, units: 2, activation: softmax}\n"
        "train: {recipe: npz, num_classes: 2, epochs: 1, batch_size: 2}\n"
    )
    messages = compile_errors(text, tmp_path)
    unknown = [m for m in messages if "no layer is named" in m]
    assert len(unknown) == 7
    assert [m.endswith("; did you mean 'stem0'?") for m in unknown] == [True] * 5 + [
        False
    ] * 2
