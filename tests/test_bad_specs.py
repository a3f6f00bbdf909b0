"""A corpus of bad specs, one file each, beside the exact errors a user sees.

tests/bad_specs/NAME.yaml is the spec and NAME.txt what `l2compile validate
tests/bad_specs/NAME.yaml` prints on stderr, run from the repository root.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from l2compile.cli import EXIT_SPEC_ERROR, main

from .conftest import ROOT

CORPUS = ROOT / "tests" / "bad_specs"
CASES = sorted(CORPUS.glob("*.yaml"))


@pytest.mark.unit
def test_the_corpus_covers_the_cases_users_hit() -> None:
    assert {case.stem for case in CASES} >= {
        "wrong_types", "negative_l2", "nan_l2", "units_zero", "units_huge",
        "unknown_layer", "unknown_activation", "unknown_optimizer",
        "missing_fields", "empty", "not_utf8", "tabs", "list_not_mapping",
        "deep_nesting", "long_string", "duplicate_keys", "alias_bomb",
        "injection_name", "injection_labels", "injection_layer_name",
        "yes_bool", "yaml11_values", "shadow_installed", "many_values_unknown_key",
        "graph_unknown_input", "graph_later_layer", "graph_dead_branch",
        "graph_merge_one_input", "graph_merge_shapes", "graph_two_inputs_not_merged",
        "graph_concatenate", "graph_automatic_name", "graph_embedding",
        "task_binary_softmax", "task_regression_activation",
        "task_loss_metric_mismatch", "task_needs_own_data",
        "task_classification_options", "task_class_weight_values",
        "task_multilabel_counts", "task_multi_worker", "normalization_not_input",
        "task_top_k_default", "csv_data_files_typo", "csv_label_twice",
        "csv_label_is_feature", "csv_fields_elsewhere", "image_folder_channels",
        "backbone_unknown", "backbone_too_small", "backbone_fine_tune_range",
        "backbone_fine_tune_frozen", "backbone_wrong_weights", "backbone_two",
        "early_stopping_on_test", "schedule_warmup_too_long",
        "schedule_field_elsewhere", "backbone_on_table", "number_too_large",
    }  # fmt: skip


@pytest.mark.build
@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_spec_gets_its_exact_errors(
    case: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(main, ["validate", case.relative_to(ROOT).as_posix()])
    assert result.exit_code == EXIT_SPEC_ERROR
    assert result.stderr == case.with_suffix(".txt").read_text(encoding="utf-8")
    assert result.stdout == ""
