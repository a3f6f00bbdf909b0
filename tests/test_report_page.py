"""report.html read top down: the verdict and the TFLite files first, then the
results per class or target, the curves, and the weights grouped by block.

Fast: each page is built from a compiled plan and a hand-made metrics.json,
with no training."""

from __future__ import annotations

import copy
import re
import struct
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from l2compile import pages, plots
from l2compile.generate import compile_spec
from l2compile.plan import ModelPlan

from .conftest import SPECS, TEST_SPECS

HOSTILE = "<script>alert(1)</script>"


@cache
def _plan(spec: Path) -> ModelPlan:
    compiled = compile_spec(spec)
    assert not isinstance(compiled, list), compiled
    return compiled.plan


def _tflite() -> dict[str, Any]:
    files = {
        "none": "model.tflite",
        "dynamic": "model.dynamic.tflite",
        "float16": "model.float16.tflite",
        "int8": "model.int8.tflite",
    }
    return {
        "keras_test_accuracy": 0.41,
        "files": {
            mode: {
                "file": name,
                "size_bytes": 412_345,
                "test_accuracy": 0.41,
                "accuracy_drop": 0.001,
                "test_data_loss": 0.97,
                "mean_latency_ms": 0.31,
                "latency_batch": 1,
            }
            for mode, name in files.items()
        },
    }


def _metrics(plan: ModelPlan, classes: list[str] | None = None) -> dict[str, Any]:
    """A classifier's metrics.json as a build writes it: a model that did not
    beat the trivial baseline (the kind of build a reader must not miss)."""
    names = plan.task.metric_names
    found: dict[str, Any] = {
        "test_loss": 1.02,
        **{f"test_{n}": 0.31 for n in names},
        "test_loss_split": {"data_loss": 0.97, "l2_penalty": 0.05},
        "validation": {
            "data": "0.1 of the training split, seeded and never trained on",
            "samples": 600,
            "scores": {"loss": 1.05, **{n: 0.31 for n in names}},
        },
        "epochs_trained": 3,
        "history": {
            "loss": [1.5, 1.2, 1.0],
            "val_loss": [1.4, 1.2, 1.05],
            **{k: [0.3, 0.3, 0.31] for n in names for k in (n, f"val_{n}")},
        },
        "history_split": {
            "data_loss": [1.4, 1.1, 0.95],
            "val_data_loss": [1.3, 1.1, 1.0],
            "l2_penalty": [0.1, 0.07, 0.05],
        },
        "l2_norms": {
            path: 1.0 + i for i, path in enumerate(sorted(plan.normed_weights))
        },
        "tflite": _tflite(),
        "learned": False,
        "learning": {
            "metric": "accuracy",
            "higher_is_better": True,
            "val": 0.31,
            "baseline_val": 0.3333,
            "needed": 0.3667,
            "comparison": "val accuracy 0.3100 against the trivial baseline's "
            "0.3333 (it needs at least 0.3667)",
        },
        "baseline": {
            "predicts": "the training split's most frequent class for every "
            "sample, 'b', 40 of 90 samples",
            "val": {"loss": 1.0986, "accuracy": 0.3333},
            "test": {"loss": 1.0986, "accuracy": 0.3333},
        },
    }
    if classes is not None:
        k = len(classes)
        found.update(
            test_balanced_accuracy=0.3,
            test_macro_f1=0.29,
            test_per_class={
                c: {"precision": 0.5, "recall": (i + 1) / k, "f1": 0.4, "support": 9}
                for i, c in enumerate(classes)
            },
            test_confusion={
                "labels": classes,
                "counts": [[5 if i == j else 1 for j in range(k)] for i in range(k)],
            },
        )
    return found


def _mnist() -> tuple[ModelPlan, dict[str, Any]]:
    plan = _plan(SPECS / "mnist.yaml")
    return plan, _metrics(plan, [str(d) for d in range(10)])


def metrics_of_mnist() -> dict[str, Any]:
    return _mnist()[1]


def _section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start : page.index("</section>", start)]


def _visible_rows(html: str) -> int:
    """Table body rows outside any <details>."""
    shown = re.sub(r"<details.*?</details>", "", html, flags=re.DOTALL)
    return sum(b.count("<tr") for b in re.findall(r"<tbody>(.*?)</tbody>", shown, re.S))


def _images(page: str) -> list[str]:
    return re.findall(r'<img src="data:image/png;base64,[^"]*" alt="([^"]*)"', page)


# --- the order ----------------------------------------------------------------------


@pytest.mark.unit
def test_the_verdict_and_tflite_files_come_before_the_rest() -> None:
    page = pages.build_page(*_mnist())
    order = [
        '<section id="verdict">',
        '<section id="tflite">',
        '<section id="per-class">',
        "<h2>Training</h2>",
        '<section id="weights">',
        "<h2>Spec: ",
    ]
    places = [page.index(marker) for marker in order]
    assert places == sorted(places)


# --- the verdict --------------------------------------------------------------------


@pytest.mark.unit
def test_a_model_that_did_not_learn_is_warned_with_both_numbers() -> None:
    page = pages.build_page(*_mnist())
    verdict = _section(page, "verdict")
    warning = re.search(r'<p class="verdict warning"[^>]*>(.*?)</p>', verdict)
    assert warning is not None
    assert warning[1] == (
        "The model did not learn: val accuracy 0.3100 against the trivial "
        "baseline&#39;s 0.3333 (it needs at least 0.3667)"
    )


@pytest.mark.unit
def test_a_model_that_learned_shows_no_warning() -> None:
    plan, metrics = _mnist()
    metrics["learned"] = True
    metrics["learning"]["comparison"] = (
        "val accuracy 0.4100 against the trivial baseline's 0.3333"
    )
    page = pages.build_page(plan, metrics)
    assert '<p class="verdict">Learned: yes: val accuracy 0.4100' in page
    assert 'class="verdict warning"' not in page and "did not learn" not in page


@pytest.mark.unit
def test_a_model_that_could_not_be_judged_says_so() -> None:
    plan, metrics = _mnist()
    metrics["learned"] = None
    metrics["learning"] = {"learned": None, "comparison": "no score to judge by"}
    page = pages.build_page(plan, metrics)
    assert "Learned: not judged (no score to judge by)" in page
    assert 'class="verdict warning"' not in page


@pytest.mark.unit
def test_the_verdict_table_sets_the_model_beside_the_baseline() -> None:
    page = pages.build_page(*_mnist())
    verdict = _section(page, "verdict")
    header = re.findall(r"<th>(.*?)</th>", verdict)
    assert header == [
        "score",
        "model (test)",
        "baseline (test)",
        "model (val)",
        "baseline (val)",
    ]
    assert (
        '<tr><td>accuracy</td><td class="n">0.31</td><td class="n">0.3333</td>'
        '<td class="n">0.31</td><td class="n">0.3333</td></tr>'
    ) in verdict
    # Data losses side by side: the model's without its L2 penalty (the test
    # split's, and the validation split's at its last epoch), as the baseline's.
    data_loss = metrics_of_mnist()["test_loss_split"]["data_loss"]
    assert (
        f'<tr><td>data loss</td><td class="n">{data_loss:.4g}</td>'
        '<td class="n">1.099</td><td class="n">1</td><td class="n">1.099</td></tr>'
    ) in verdict
    # The baseline has no balanced accuracy: "-", not an error.
    assert '<tr><td>balanced accuracy</td><td class="n">0.3</td><td>-</td>' in verdict
    assert "The baseline predicts the training split&#39;s most frequent" in verdict


@pytest.mark.unit
def test_an_older_metrics_file_still_makes_a_page() -> None:
    # A multi-worker build's metrics.json, or one from before baselines.
    plan, metrics = _mnist()
    for key in (
        "learned",
        "learning",
        "baseline",
        "test_per_class",
        "test_confusion",
        "test_balanced_accuracy",
        "test_macro_f1",
        "tflite",
        "validation",
    ):
        del metrics[key]
    page = pages.build_page(plan, metrics)
    verdict = _section(page, "verdict")
    assert re.findall(r"<th>(.*?)</th>", verdict) == ["score", "model (test)"]
    assert "Learned: not measured" in verdict
    assert 'id="tflite"' not in page and 'id="per-class"' not in page
    assert _images(page) == [
        "loss and metrics per epoch",
        "L2 norm of each block&#39;s weights",
    ]


# --- per class, per target ------------------------------------------------------------


@pytest.mark.unit
def test_a_classifier_page_draws_its_confusion_matrix() -> None:
    page = pages.build_page(*_mnist())
    per_class = _section(page, "per-class")
    assert _images(per_class) == ["confusion matrix, test split"]
    assert _visible_rows(per_class) == 10
    assert '<tr><td>3</td><td class="n">0.5</td><td class="n">0.4</td>' in per_class


@pytest.mark.unit
def test_many_classes_show_the_lowest_recall_and_fold_every_class() -> None:
    plan = _plan(SPECS / "mnist.yaml")
    classes = [f"class_{i}" for i in range(300)]
    page = pages.build_page(plan, _metrics(plan, classes))
    per_class = _section(page, "per-class")
    assert _visible_rows(per_class) == pages.MAX_ROWS
    shown = re.sub(r"<details.*?</details>", "", per_class, flags=re.DOTALL)
    # The lowest recall first (recall grows with the class number here).
    assert shown.index("<td>class_0</td>") < shown.index("<td>class_29</td>")
    assert "<td>class_30</td>" not in shown
    assert "<details>\n<summary>All 300 classes</summary>" in per_class
    assert per_class.count("<tr><td>class_") == pages.MAX_ROWS + 300
    # The figure stays a figure, without 90,000 numbers in it.
    match = re.search(
        r'alt="confusion matrix, test split" width="(\d+)" height="(\d+)"', per_class
    )
    assert match is not None and int(match[2]) <= 7.5 * plots.DPI + 1


@pytest.mark.unit
def test_a_multilabel_page_counts_each_label_in_a_table() -> None:
    plan = _plan(TEST_SPECS / "multilabel.yaml")
    metrics = _metrics(plan)
    labels = ["sports", "politics", HOSTILE]
    metrics["test_per_class"] = {
        t: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 14} for t in labels
    }
    metrics["test_confusion"] = {
        "labels": labels,
        "per_label": True,
        "counts": [[[50, 3], [4, 10]] for _ in labels],
    }
    page = pages.build_page(plan, metrics)
    per_class = _section(page, "per-class")
    assert _images(per_class) == []
    assert re.findall(r"<th>(.*?)</th>", per_class)[-5:] == [
        "label",
        "tn",
        "fp",
        "fn",
        "tp",
    ]
    assert (
        '<tr><td>politics</td><td class="n">50</td><td class="n">3</td>'
        '<td class="n">4</td><td class="n">10</td></tr>'
    ) in per_class


@pytest.mark.unit
def test_a_regression_page_draws_predictions_against_true_values() -> None:
    plan = _plan(TEST_SPECS / "regression.yaml")
    metrics = _metrics(plan)
    metrics["test_per_target"] = {
        "progression": {"mae": 0.3, "rmse": 0.4},
        "glucose": {"mae": 0.5, "rmse": 0.7},
    }
    metrics["test_residuals"] = {
        name: {
            "true": [0.1 * i for i in range(2000)],
            "predicted": [0.1 * i + 0.05 for i in range(2000)],
        }
        for name in ("progression", "glucose")
    }
    page = pages.build_page(plan, metrics)
    per_target = _section(page, "per-target")
    assert _images(per_target) == ["predicted against true values, test split"]
    assert (
        '<tr><td>glucose</td><td class="n">0.5</td><td class="n">0.7</td></tr>'
        in per_target
    )
    assert page.index('id="tflite"') < page.index('id="per-target"')


# --- the weights --------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spec", "weights", "blocks", "block"),
    [  # a MobileNetV3-Small and a MobileNetV2, each under a dense head
        (SPECS / "phone_classifier.yaml", 208, 14, "expanded_conv_3"),
        (TEST_SPECS / "fine_tuned_backbone.yaml", 262, 21, "block_3"),
    ],
    ids=["mobilenet_v3_small", "mobilenet_v2"],
)
def test_a_backbones_weights_are_shown_by_block_and_folded(
    spec: Path, weights: int, blocks: int, block: str
) -> None:
    plan = _plan(spec)
    page = pages.build_page(plan, _metrics(plan))
    section = _section(page, "weights")
    assert _visible_rows(section) == blocks <= pages.MAX_ROWS
    assert f"<details>\n<summary>Every weight ({weights})</summary>" in section
    assert section.count("<tr><td>backbone_1</td>") == weights - 2
    assert f"<td>backbone_1/{block}</td>" in section
    chart = re.search(
        r'alt="L2 norm of each block&#39;s weights" width="\d+" height="(\d+)"', section
    )
    assert chart is not None
    assert int(chart[1]) <= (0.6 + 0.28 * pages.MAX_BLOCK_BARS) * plots.DPI + 1


@pytest.mark.unit
def test_a_small_models_weights_are_shown_open() -> None:
    page = pages.build_page(*_mnist())
    section = _section(page, "weights")
    assert "<details open>\n<summary>Every weight (6)</summary>" in section
    # A block's row: its weights, parameters, coefficient and norm, the
    # norm being that of its kernel alone (its bias has none).
    assert (
        '<tr><td>dense_1</td><td class="n">2</td><td class="n">100,480</td>'
        '<td class="n">100,480</td><td class="n">0.01</td><td class="n">1</td></tr>'
    ) in section


def _record(layer: str, weight: str) -> dict[str, Any]:
    return {"layer": layer, "weight": weight}


@pytest.mark.unit
def test_blocks_follow_the_names_keras_applications_give() -> None:
    names = {
        "expanded_conv_3_depthwise_bn/gamma": "expanded_conv_3",
        "expanded_conv_3_squeeze_excite_conv_1/kernel": "expanded_conv_3",
        "expanded_conv_10_project/kernel": "expanded_conv_10",
        "expanded_conv_depthwise/depthwise_kernel": "expanded_conv",
        "expanded_conv_project_BN/beta": "expanded_conv",
        "block6a_se_reduce/kernel": "block6a",
        "block6a_bn/gamma": "block6a",
        "stem_conv/kernel": "stem",
        "stem_bn/gamma": "stem",
        "Conv1/kernel": "Conv1",
        "top/kernel": "top",
    }
    records = [_record("backbone_1", n) for n in names]
    records += [_record("dense_1", "kernel"), _record("dense_1", "bias")]
    blocks = pages.weight_blocks(records)
    assert {r["weight"]: b for b, rs in blocks.items() for r in rs} == {
        **{n: f"backbone_1/{b}" for n, b in names.items()},
        "bias": "dense_1",
        "kernel": "dense_1",
    }


# --- safety -------------------------------------------------------------------------


@pytest.mark.unit
def test_hostile_class_names_are_shown_never_run() -> None:
    plan = _plan(SPECS / "mnist.yaml")
    metrics = _metrics(plan, [HOSTILE, "cat $x$", "dog"])
    metrics["learning"]["comparison"] = HOSTILE
    metrics["baseline"]["predicts"] = HOSTILE
    page = pages.build_page(plan, metrics)
    assert "<script" not in page.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"<td>{escaped}</td>" in _section(page, "per-class")
    assert f"The model did not learn: {escaped}" in page
    assert "default-src &#39;none&#39;" in page or "default-src 'none'" in page
    assert "http://" not in page and "https://" not in page


# --- the figures --------------------------------------------------------------------


def _titles_inside(draw: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    drawn: list[Any] = []
    png = plots._png

    def keep(figure: Any) -> bytes:
        drawn.append(figure)
        return png(figure)

    monkeypatch.setattr(plots, "_png", keep)
    draw()
    (figure,) = drawn
    canvas: Any = FigureCanvasAgg(figure)  # untyped in matplotlib's stubs
    renderer = canvas.get_renderer()
    figure.draw(renderer)
    texts = [figure._suptitle] if figure._suptitle else []
    for axes in figure.axes:
        texts += [axes.title, axes.xaxis.label, axes.yaxis.label]
    box = figure.bbox
    for text in texts:
        if text.get_visible() and text.get_text():
            where = text.get_window_extent(renderer)
            assert box.x0 - 1 <= where.x0 and where.x1 <= box.x1 + 1, text.get_text()
            assert box.y0 - 1 <= where.y0 and where.y1 <= box.y1 + 1, text.get_text()


@pytest.mark.unit
@pytest.mark.parametrize(
    "draw",
    [
        lambda: plots.weight_norms(
            {f"backbone_1/expanded_conv_{i}": 1.0 + i for i in range(45)},
            most=30,
            what="each block's weights",
        ),
        lambda: plots.weight_norms({"dense_1": 1.0}, what="each block's weights"),
        lambda: plots.confusion(
            [HOSTILE, "cat $x$", "dog"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
        ),
        lambda: plots.confusion([f"c{i}" for i in range(300)], [[1] * 300] * 300),
        lambda: plots.residuals(
            {
                f"a target with a rather long name, number {i}": {
                    "true": [1.0, 2.0, 3.0],
                    "predicted": [1.1, 2.2, 2.7],
                }
                for i in range(6)
            }
        ),
        lambda: plots.residuals({"y": {"true": [], "predicted": []}}),
    ],
    ids=["blocks", "one_block", "confusion", "300_classes", "six_targets", "empty"],
)
def test_a_figure_holds_its_titles(
    draw: Callable[[], bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    _titles_inside(draw, monkeypatch)


@pytest.mark.unit
def test_a_large_confusion_matrix_stays_drawable() -> None:
    png = plots.confusion([f"c{i}" for i in range(600)], [[1] * 600] * 600)
    width, height = struct.unpack(">II", png[16:24])
    assert height <= 7.5 * plots.DPI + 1 and width <= 8.7 * plots.DPI + 1


# --- in a browser -------------------------------------------------------------------


@pytest.mark.external
@pytest.mark.parametrize(
    ("spec", "classes"),
    [(SPECS / "mnist.yaml", 10), (SPECS / "phone_classifier.yaml", 120)],
    ids=["mnist", "phone_classifier"],
)
def test_the_verdict_and_tflite_files_are_on_the_first_screen(
    spec: Path, classes: int, tmp_path: Path
) -> None:
    from .pagecheck import check_in_chromium

    plan = _plan(spec)
    metrics = _metrics(plan, [f"class_{i}" for i in range(classes)])
    metrics["test_per_class"][HOSTILE] = copy.deepcopy(
        metrics["test_per_class"]["class_0"]
    )
    page = tmp_path / "report.html"
    page.write_text(pages.build_page(plan, metrics), encoding="utf-8")
    check_in_chromium(
        page,
        f"report_first_screen_{spec.stem}.png",
        images=3,
        first_screen=("verdict", "tflite"),
    )
