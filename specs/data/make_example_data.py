"""Write the data of the example specs beside this file, offline.

    pip install scikit-learn
    python specs/data/make_example_data.py

scikit-learn ships these three public data sets inside its package, so
nothing is downloaded. Each becomes an .npz in the layout of l2compile's npz
recipe (x_train, y_train, x_test, y_test), split 80/20 with a fixed seed
(by class, where there are classes):

- breast_cancer.npz (specs/breast_cancer.yaml, task binary): the Wisconsin
  Diagnostic Breast Cancer table (UCI), 569 tumours, 30 raw features (one
  never above 0.03, another up to 4,254); label 1 is malignant, 0 benign.
- diabetes.npz (specs/diabetes.yaml, task regression): Efron et al.'s
  diabetes table, 442 patients, 10 raw baseline features (age, sex, body
  mass index, blood pressure, six blood serum measurements); the target is a
  measure of disease progression one year after baseline (25 to 346).
- digit_attributes.npz (specs/digit_attributes.yaml, task multilabel): the
  UCI optical-recognition digits, 1,797 8x8 images (pixels 0 to 16), each
  with four labels of the digit drawn: even, prime, at least 5, and drawn
  with a closed loop (0, 6, 8, 9).

It also writes tickets/ (specs/text_classifier.yaml, recipe text_folder):
600 short customer-support messages, 200 in each of billing/, delivery/ and
technical/, one .txt file each. They are made up, from phrases of each
topic and phrases any message may have, seeded; a stand-in for your own
folder of documents, not a benchmark (docs/text.md has one on real text).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

SEED = 20261126
TEST_SHARE = 0.2
HERE = Path(__file__).resolve().parent


def split(
    x: np.ndarray, y: np.ndarray, strata: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """A seeded train/test split, TEST_SHARE of each stratum to the test split."""
    rng = np.random.default_rng(SEED)
    groups = (
        [np.arange(len(x))]
        if strata is None
        else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    )
    test = np.sort(
        np.concatenate(
            [rng.permutation(g)[: round(len(g) * TEST_SHARE)] for g in groups]
        )
    )
    train = np.setdiff1d(np.arange(len(x)), test)
    return {
        "x_train": x[train],
        "y_train": y[train],
        "x_test": x[test],
        "y_test": y[test],
    }


def breast_cancer() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    malignant = (data.target == 0).astype(np.int64)  # scikit-learn: 0 malignant
    return split(data.data.astype(np.float32), malignant, malignant)


def diabetes() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    return split(data.data.astype(np.float32), data.target.astype(np.float32))


def digit_attributes() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    digit = data.target
    labels = np.stack(
        [
            digit % 2 == 0,
            np.isin(digit, (2, 3, 5, 7)),
            digit >= 5,
            np.isin(digit, (0, 6, 8, 9)),
        ],
        axis=1,
    ).astype(np.int64)
    return split(data.data.astype(np.float32), labels, digit)


#: Phrases of each topic of tickets/, and phrases any message may have.
TICKET_TOPICS = {
    "billing": [
        "I was charged twice this month",
        "my invoice shows the wrong amount",
        "please refund the last payment",
        "why did my card get billed again",
        "the subscription price went up without notice",
        "can I get a receipt for my order",
        "cancel my plan and stop the charges",
    ],
    "delivery": [
        "my parcel has not arrived yet",
        "the tracking number does not work",
        "the courier left the box at the wrong address",
        "the package came damaged",
        "when will my order be shipped",
        "can I change the delivery date",
        "the parcel is stuck at the depot",
    ],
    "technical": [
        "the app crashes when I log in",
        "I cannot reset my password",
        "the page shows an error after the update",
        "sync stopped working on my phone",
        "the screen freezes when I upload a photo",
        "notifications no longer show up",
        "the website is very slow today",
    ],
}
TICKET_COMMON = [
    "Hello,",
    "Hi team,",
    "Thanks in advance.",
    "This is urgent!",
    "I've tried twice already.",
    "Could you help me?",
    "Order #4417.",
    "Regards, Sam",
    "It's the third time this week 😞",
]
TICKETS_PER_TOPIC = 200


def tickets(folder: Path) -> int:
    """Write tickets/<topic>/<n>.txt: each message two or three of its
    topic's phrases among two or three common ones, in a seeded order."""
    rng = np.random.default_rng(SEED)
    count = 0
    for topic, phrases in TICKET_TOPICS.items():
        (folder / topic).mkdir(parents=True, exist_ok=True)
        for i in range(TICKETS_PER_TOPIC):
            own = rng.choice(phrases, size=rng.integers(1, 3), replace=False)
            common = rng.choice(TICKET_COMMON, size=rng.integers(1, 4), replace=False)
            parts = [*own, *common]
            order = rng.permutation(len(parts))
            text = " ".join(str(parts[j]) for j in order)
            (folder / topic / f"{i:03d}.txt").write_text(text + "\n", encoding="utf-8")
            count += 1
    return count


def main(folder: Path = HERE) -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        sys.exit(
            "make_example_data.py reads the tables scikit-learn ships: "
            "pip install scikit-learn"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, make in (
        ("breast_cancer", breast_cancer),
        ("diabetes", diabetes),
        ("digit_attributes", digit_attributes),
    ):
        arrays = make()
        path = folder / f"{name}.npz"
        np.savez(path, **arrays)
        print(
            f"wrote {path} ({len(arrays['x_train'])} train, "
            f"{len(arrays['x_test'])} test samples)"
        )
    count = tickets(folder / "tickets")
    print(f"wrote {folder / 'tickets'} ({count} documents in 3 class folders)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
