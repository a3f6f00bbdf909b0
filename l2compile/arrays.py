"""What is wrong with an array's values, for messages: shared by the data
readers (`l2compile.datasets`) and the tasks' label checks
(`l2compile.tasks`), so that the plan stage need not import the build stage
to check labels.

numpy is imported here; the tasks import this module only inside the
functions that check data, which only the build and `eval` call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

#: Values checked per block, so that checking needs little memory beyond the data.
_BLOCK = 2**22


def where(key: str, index: tuple[int, ...]) -> str:
    """`x[i, j]`."""
    return f"{key}[{', '.join(str(i) for i in index)}]"


def count(
    array: npt.NDArray[Any], bad: Callable[[npt.NDArray[Any]], npt.NDArray[np.bool_]]
) -> tuple[int, tuple[int, ...]]:
    """How many values `bad` marks, and the index of the first, checked a
    block of rows at a time."""
    rows = max(1, _BLOCK // max(1, math.prod(array.shape[1:])))
    total, first = 0, tuple[int, ...]()
    for start in range(0, len(array), rows):
        mask = bad(array[start : start + rows])
        found = int(np.count_nonzero(mask))
        if found and not first:
            at = np.unravel_index(int(np.argmax(mask)), mask.shape)
            first = (start + int(at[0]), *(int(i) for i in at[1:]))
        total += found
    return total, first


def _values(count: int, what: str, key: str, first: tuple[int, ...]) -> str:
    """`a value that ... at x[i]`, or `3 values that ..., the first at x[i]`."""
    if count == 1:
        return f"a value {what} at {where(key, first)}"
    return f"{count} values {what}, the first at {where(key, first)}"


def not_finite(key: str, array: npt.NDArray[Any]) -> list[str]:
    """The values of a float array training cannot take: NaN or inf, or
    (float64) beyond float32's range."""
    found, first = count(array, lambda a: ~np.isfinite(a))
    if not found:
        if array.dtype.itemsize <= 4:
            return []
        top = float(np.finfo(np.float32).max)  # float64 beyond it is inf as float32
        big, at = count(array, lambda a: np.abs(a) > top)
        if not big:
            return []
        beyond = f"beyond float32's range (±{top:.1e}), which training sees as inf"
        return [f"{key} holds {_values(big, beyond, key, at)}"]
    nans, _ = count(array, np.isnan)
    kinds = ", ".join(
        f"{n} {what}" for n, what in ((nans, "NaN"), (found - nans, "inf")) if n
    )
    if found == 1:
        kinds = "NaN" if nans else "inf"
    what = f"that {'is' if found == 1 else 'are'} not finite ({kinds})"
    return [f"{key} holds {_values(found, what, key, first)}"]
