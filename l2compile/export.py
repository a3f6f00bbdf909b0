"""The export functions' old home: each format's code is its module in
`l2compile.formats` now, and these are its names, kept for callers that
import them from here. Replace one (a test's fault) in its format's module:
that is where the build looks it up.
"""

from __future__ import annotations

from l2compile.deploy import INPUT_NAME, SIGNATURE
from l2compile.formats.keras import save_keras
from l2compile.formats.saved_model import export_saved_model
from l2compile.formats.tflite import (
    TFLITE_FILES,
    TFLiteScore,
    convert_tflite,
    export_tflite_source,
    score_tflite,
    tflite_predict,
)

__all__ = [
    "INPUT_NAME",
    "SIGNATURE",
    "TFLITE_FILES",
    "TFLiteScore",
    "convert_tflite",
    "export_saved_model",
    "export_tflite_source",
    "save_keras",
    "score_tflite",
    "tflite_predict",
]
