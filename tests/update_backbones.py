"""The backbone table: every weight of each keras.applications backbone that
l2compile knows, so that `validate` and `inspect` know them without
TensorFlow (l2compile/layers/backbones.json).

Regenerate it after a Keras upgrade changes an application:

    python -m tests.update_backbones

tests/test_backbones.py checks the table against the installed Keras.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from l2compile.layers.backbone import BACKBONES, TABLE

#: Where the table is measured: any size of at least 32x32 gives the same
#: weights (a kernel does not depend on the image's size).
SIZE = (96, 96, 3)


def build_application(model: str, shape: tuple[int, int, int] = SIZE) -> Any:
    """Keras' own model, without its top and with random weights."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    cls = getattr(keras.applications, BACKBONES[model].keras_class)
    return cls(input_shape=shape, include_top=False, weights=None)


def measure(model: str, built: Any = None) -> dict[str, Any]:
    """What the table holds of one backbone, read off Keras' own model (or
    `built`, one of it at another size)."""
    application = built if built is not None else build_application(model)
    weights = [
        [index, variable.path, list(variable.shape)]
        for index, layer in enumerate(application.layers)
        for variable in layer.weights
    ]
    return {
        "layers": len(application.layers),
        "channels": int(application.output_shape[-1]),
        "weights": weights,
    }


def main() -> int:
    table = {model: measure(model) for model in BACKBONES}
    text = json.dumps(table, separators=(",", ":")) + "\n"
    TABLE.write_text(text.replace("],[", "],\n["))
    print(f"wrote {TABLE}: {', '.join(table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
